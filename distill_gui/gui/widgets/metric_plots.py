"""Live training plots: six pyqtgraph panels redrawn from a MetricsBuffer on a ~10 Hz timer.

Events only append to the buffer; the timer copies whole series into the curves with
``setData`` when the buffer changed since the last draw. That keeps the cost per event tiny and
the redraw rate fixed, however fast the trainer reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGraphicsItem, QGridLayout, QLabel, QWidget

from distill_gui.gui import theme
from distill_gui.gui.metrics_buffer import MetricsBuffer
from distill_gui.gui.plot_ranges import sticky_range


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
FROM_ZERO = {"Tokens / s", "Memory (GiB)"}
FIXED_Y = {"Top-1 agreement (%)": (0.0, 100.0)}


class MetricPlots(QWidget):
    """The Train page's (and the Runs page's) grid of metric plots.

    The pyqtgraph widgets are built the first time the plots are shown (pyqtgraph itself is
    imported then), so the window's first paint does not wait for them. Hidden plots are not
    redrawn: the timer skips them, and showing them draws the newest data at once.
    """

    def __init__(self, buffer: MetricsBuffer | None = None, *, refresh_ms: int = 100, live: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.buffer = buffer if buffer is not None else MetricsBuffer()
        self._drawn_version = -1
        self.total_steps = 0
        self._x_range: tuple[float, float] | None = None
        self._y_ranges: dict[str, tuple[float, float]] = {}
        self.redraws = 0
        self.last_redraw_s = 0.0
        self.view = None
        self._disposed = False
        self.plots: dict[str, object] = {}
        self.curves: dict[str, object] = {}

        self.hint = QLabel("The plots fill in as soon as training reports its first steps.")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setProperty("muted", True)
        self.hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.hint, 0, 0, Qt.AlignmentFlag.AlignCenter)

        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self._tick)
        if live:
            self.timer.start()
        theme.notifier().changed.connect(self.apply_theme)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        self.ensure_built()
        self.refresh()

    def ensure_built(self) -> None:
        if self.view is not None or self._disposed:
            return
        import pyqtgraph as pg

        self.view = pg.GraphicsLayoutWidget()
        self.view.setObjectName("metricPlots")
        self._build(pg)
        self._layout.addWidget(self.view, 0, 0)
        self.hint.raise_()
        self.apply_theme(theme.current_colors())
        if self.total_steps > 0:
            self.set_total_steps(self.total_steps)

    def _build(self, pg) -> None:
        first = None
        for index, (title, series) in enumerate(PANELS):
            row, col = divmod(index, COLUMNS)
            plot = self.view.addPlot(row=row, col=col)
            plot.setObjectName(title)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setMenuEnabled(False)
            plot.getAxis("left").setWidth(52)
            plot.disableAutoRange()               # ranges come from sticky_range (see refresh)
            for axis in ("left", "bottom"):
                # Axes (with their grid lines across the plot) redraw from a pixmap unless their
                # range changed: replaying their text made every curve update ~4x slower.
                plot.getAxis(axis).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            if row == 0:                          # one set of step labels, under the bottom row
                plot.getAxis("bottom").setStyle(showValues=False)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            for s in series:
                self.curves[s.name] = plot.plot(name=s.label)
            self.plots[title] = plot

    def dispose_plots(self) -> None:
        """Empty the scene while its items are alive (see teardown.py); the plots are dead after."""
        if self._disposed:
            return
        self.timer.stop()
        theme.notifier().changed.disconnect(self.apply_theme)
        if self.view is not None:
            self.view.scene().clear()
            self.view, self.plots, self.curves = None, {}, {}
        self._disposed = True

    def apply_theme(self, colors: theme.ThemeColors) -> None:
        if self.view is None:
            return
        import pyqtgraph as pg

        self.view.setBackground(colors.surface)
        for title, series in PANELS:
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

    def set_buffer(self, buffer: MetricsBuffer, total_steps: int = 0) -> None:
        self.buffer = buffer
        self._drawn_version = -1
        self._y_ranges.clear()
        self._x_range = None
        self.set_total_steps(total_steps)
        self.refresh()

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the x axis to the whole run (0..total), so it never moves while the run fills it."""
        self.total_steps = total_steps
        if total_steps > 0 and self.view is not None:
            self._x_range = (0.0, float(total_steps))
            self.plots[PANELS[0][0]].setXRange(0, total_steps, padding=0.02)

    def _tick(self) -> None:
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        """Copy the buffer into the curves if it changed since the last draw."""
        self.hint.setVisible(len(self.buffer) == 0)
        if self.view is None or self.buffer.version == self._drawn_version:
            return
        started = time.perf_counter()
        self._drawn_version = self.buffer.version
        last_step = 0.0
        for title, series in PANELS:
            low, high = math.inf, -math.inf
            for s in series:
                xs, ys = self.buffer.arrays(s.name)
                ys = ys * s.scale
                self.curves[s.name].setData(xs, ys)
                if ys.size:
                    low, high = min(low, float(ys.min())), max(high, float(ys.max()))
                    last_step = max(last_step, float(xs[-1]))
            if high >= low:
                self._fit_y(title, low, high)
        if self.total_steps <= 0 and last_step > 0:
            new = sticky_range(self._x_range, 0.0, last_step, from_zero=True)
            if new != self._x_range:
                self._x_range = new
                self.plots[PANELS[0][0]].setXRange(*new, padding=0)
        self.redraws += 1
        self.last_redraw_s = time.perf_counter() - started

    def _fit_y(self, title: str, low: float, high: float) -> None:
        new = FIXED_Y.get(title) or sticky_range(self._y_ranges.get(title), low, high, from_zero=title in FROM_ZERO)
        if new != self._y_ranges.get(title):
            self._y_ranges[title] = new
            self.plots[title].setYRange(*new, padding=0)

    def curve_data(self, name: str):
        """(x, y) currently drawn for a series (tests and screenshots read it)."""
        if self.view is None:
            self.ensure_built()
            self.refresh()
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
