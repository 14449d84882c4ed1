"""Live training plots: six pyqtgraph panels redrawn from a MetricsBuffer on a ~10 Hz timer.

Events only append to the buffer; the timer copies whole series into the curves with
``setData`` when the buffer changed since the last draw. That keeps the cost per event tiny and
the redraw rate fixed, however fast the trainer reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from .. import theme
from ..metrics_buffer import MetricsBuffer


@dataclass(frozen=True)
class Series:
    name: str          # MetricsBuffer series name
    label: str         # legend text
    color: int         # index into the theme's series colours
    eval: bool = False  # eval series: dashed with dots
    scale: float = 1.0  # shown value = stored value * scale (agreement 0..1 -> %)


PANELS: tuple[tuple[str, tuple[Series, ...]], ...] = (
    ("Loss", (Series("loss", "total", 0), Series("kd", "KD", 1), Series("ce", "CE", 2),
              Series("eval_loss", "eval total", 0, True), Series("eval_kd", "eval KD", 1, True),
              Series("eval_ce", "eval CE", 2, True))),
    ("Top-1 agreement (%)", (Series("agreement", "train", 3, scale=100.0),
                             Series("eval_agreement", "eval", 3, True, scale=100.0))),
    ("Learning rate", (Series("lr", "lr", 4),)),
    ("Tokens / s", (Series("tokens_per_s", "tokens/s", 5),)),
    ("Memory (GiB)", (Series("memory_gib", "memory", 1),)),
    ("Gradient norm", (Series("grad_norm", "grad norm", 2),)),
)
COLUMNS = 3
# Panels whose y axis starts at zero (a flat memory line should look flat, not like a cliff).
FROM_ZERO = {"Tokens / s", "Memory (GiB)", "Top-1 agreement (%)"}


class MetricPlots(QWidget):
    """The Train page's (and the Runs page's) grid of metric plots."""

    def __init__(self, buffer: MetricsBuffer | None = None, *, refresh_ms: int = 100, live: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.buffer = buffer if buffer is not None else MetricsBuffer()
        self._drawn_version = -1
        self.redraws = 0
        self.last_redraw_s = 0.0
        self.view = pg.GraphicsLayoutWidget()
        self.view.setObjectName("metricPlots")
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._build()

        self.hint = QLabel("The plots fill in as soon as training reports its first steps.")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setProperty("muted", True)
        self.hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 0, 0)
        layout.addWidget(self.hint, 0, 0, Qt.AlignmentFlag.AlignCenter)

        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        if live:
            self.timer.start()
        theme.notifier().changed.connect(self.apply_theme)
        self.apply_theme(theme.current_colors())

    def _build(self) -> None:
        first: pg.PlotItem | None = None
        for index, (title, series) in enumerate(PANELS):
            row, col = divmod(index, COLUMNS)
            plot = self.view.addPlot(row=row, col=col)
            plot.setObjectName(title)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setMenuEnabled(False)
            plot.getAxis("left").setWidth(52)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            for s in series:
                self.curves[s.name] = plot.plot(name=s.label)
            self.plots[title] = plot

    def apply_theme(self, colors: theme.ThemeColors) -> None:
        self.view.setBackground(colors.surface)
        for index, (title, series) in enumerate(PANELS):
            plot = self.plots[title]
            plot.setTitle(_title_html(title, series, colors), color=colors.text, size="9pt")
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setPen(pg.mkPen(colors.grid))
                plot.getAxis(axis).setTextPen(pg.mkPen(colors.muted))
            for s in series:
                color = colors.series[s.color % len(colors.series)]
                curve = self.curves[s.name]
                if s.eval:
                    curve.setPen(pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine))
                    curve.setSymbol("o")
                    curve.setSymbolSize(6)
                    curve.setSymbolBrush(pg.mkBrush(color))
                    curve.setSymbolPen(pg.mkPen(color))
                else:
                    curve.setPen(pg.mkPen(color, width=2))

    def set_buffer(self, buffer: MetricsBuffer) -> None:
        self.buffer = buffer
        self._drawn_version = -1
        self.refresh()

    def refresh(self) -> None:
        """Copy the buffer into the curves if it changed since the last draw."""
        if self.buffer.version == self._drawn_version:
            return
        started = time.perf_counter()
        self._drawn_version = self.buffer.version
        for title, series in PANELS:
            top = 0.0
            for s in series:
                xs, ys = self.buffer.arrays(s.name)
                ys = ys * s.scale
                self.curves[s.name].setData(xs, ys)
                if ys.size:
                    top = max(top, float(ys.max()))
            if title in FROM_ZERO and top > 0:
                self.plots[title].setYRange(0.0, top * 1.08, padding=0)
        self.hint.setVisible(len(self.buffer) == 0)
        self.redraws += 1
        self.last_redraw_s = time.perf_counter() - started

    def curve_data(self, name: str):
        """(x, y) currently drawn for a series (tests and screenshots read it)."""
        return self.curves[name].getData()


def _title_html(title: str, series: tuple[Series, ...], colors: theme.ThemeColors) -> str:
    """The panel title with its own legend ("━ total ━ KD …"), so no legend box covers the lines."""
    if len(series) == 1:
        return title
    keys = []
    for s in series:
        if s.eval and any(o.label == s.label.removeprefix("eval ") for o in series if not o.eval) and len(series) > 2:
            continue  # "eval KD" etc.: one note for all eval series below
        color = colors.series[s.color % len(colors.series)]
        mark = "┅●" if s.eval else "━"
        keys.append(f'<span style="color:{color}">{mark} {s.label}</span>')
    if len(series) > 2:
        keys.append(f'<span style="color:{colors.muted}">┅● eval</span>')
    return f"{title} &nbsp; " + " &nbsp;".join(keys)
