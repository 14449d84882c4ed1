"""Token-length histogram with the max-length cut-off drawn as a line (pyqtgraph, built on first use)."""

from __future__ import annotations

from typing import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from distill_gui.gui import theme


class LengthHistogram(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot_widget = None
        self.bars = None
        self.counts = ()                   # numpy arrays once set_lengths ran (numpy loads lazily)
        self.edges = ()
        self._lengths: list[int] = []
        self._max_length: int | None = None
        self._disposed = False
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        theme.notifier().changed.connect(self.apply_theme)

    def dispose_plots(self) -> None:
        """Empty the scene while its items are alive (see teardown.py); the histogram is dead after."""
        if self._disposed:
            return
        theme.notifier().changed.disconnect(self.apply_theme)
        if self.plot_widget is not None:
            self.plot_widget.scene().clear()
            self.plot_widget = None
        self._disposed = True

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        if self.plot_widget is None and not self._disposed:
            self._build()
            self._draw()

    def _build(self) -> None:
        import pyqtgraph as pg

        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.setLabel("bottom", "tokens per row")
        self.plot.setLabel("left", "rows")
        self.cutoff = pg.InfiniteLine(angle=90, movable=False)
        self.cutoff_label = pg.TextItem(anchor=(1.05, 0))
        self.plot.addItem(self.cutoff)
        self.plot.addItem(self.cutoff_label)
        self.cutoff.setVisible(False)
        self._layout.addWidget(self.plot_widget)
        self.apply_theme(theme.current_colors())

    def apply_theme(self, colors: theme.ThemeColors) -> None:
        if self.plot_widget is None:
            return
        import pyqtgraph as pg

        self.plot_widget.setBackground(colors.surface)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setPen(pg.mkPen(colors.grid))
            self.plot.getAxis(axis).setTextPen(pg.mkPen(colors.muted))
        self.cutoff.setPen(pg.mkPen(colors.error, width=1.5, style=Qt.PenStyle.DashLine))
        self.cutoff_label.setColor(colors.error)
        if self.bars is not None:
            self.bars.setOpts(brush=pg.mkBrush(colors.accent), pen=pg.mkPen(colors.surface))

    def set_lengths(self, lengths: Sequence[int], max_length: int | None = None) -> None:
        """Histogram of ``lengths``; ``max_length`` draws the truncation line."""
        import numpy as np

        self._lengths, self._max_length = list(lengths), max_length
        values = np.asarray(self._lengths, dtype=float)
        if values.size:
            top = max(values.max(), float(max_length or 0))
            bins = int(min(40, max(5, np.sqrt(values.size) * 2)))
            self.counts, self.edges = np.histogram(values, bins=bins, range=(0, max(top, 1.0)))
        else:
            self.counts, self.edges = np.zeros(0), np.zeros(0)
        if self.plot_widget is not None:
            self._draw()

    def _draw(self) -> None:
        import pyqtgraph as pg

        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        if len(self.counts) == 0:
            self.cutoff.setVisible(False)
            self.cutoff_label.setText("")
            return
        colors = theme.current_colors()
        width = self.edges[1] - self.edges[0]
        self.bars = pg.BarGraphItem(x0=self.edges[:-1], width=width * 0.92, height=self.counts,
                                    brush=pg.mkBrush(colors.accent), pen=pg.mkPen(colors.surface))
        self.plot.addItem(self.bars)
        top = float(self.edges[-1])
        if self._max_length:
            self.cutoff.setPos(self._max_length)
            self.cutoff.setVisible(True)
            self.cutoff_label.setText(f"max length {self._max_length}")
            self.cutoff_label.setPos(self._max_length, float(self.counts.max()) * 1.05)
        self.plot.setXRange(0, top * 1.04, padding=0)
        self.plot.setYRange(0, float(self.counts.max()) * 1.15, padding=0)
