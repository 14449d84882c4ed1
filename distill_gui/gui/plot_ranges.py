"""Axis ranges for live plots that change rarely (Qt-free).

Every change of a pyqtgraph axis range rebuilds that axis's ticks and text, which costs far more
than drawing the curves. Ranges here snap outward to round numbers and stay put while the data
fits and fills enough of them, so a growing series moves its axes only now and then.
"""

from __future__ import annotations

import math

MIN_FILL = 0.35          # re-fit when the data uses less than this share of the range


def nice_step(span: float) -> float:
    """A round tick step (1, 2 or 5 x 10^k) that cuts ``span`` into about five parts."""
    raw = span / 5.0
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if raw <= mult * power:
            return mult * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def sticky_range(current: tuple[float, float] | None, low: float, high: float, *,
                 from_zero: bool = False) -> tuple[float, float]:
    """The range to show for data spanning [low, high], keeping ``current`` when it still fits."""
    if from_zero:
        low = min(low, 0.0)
    if current is not None:
        cur_low, cur_high = current
        if cur_low <= low and high <= cur_high and (high - low) >= MIN_FILL * (cur_high - cur_low):
            return current
    span = high - low
    if span <= 0:
        span = abs(high) * 0.2 or 1.0
        low, high = low - span / 2, high + span / 2
    step = nice_step(span * 1.2)
    new_low = math.floor((low - 0.05 * span) / step) * step
    if low >= 0 and (from_zero or new_low < 0):   # non-negative data (losses): the axis stops at 0
        new_low = 0.0
    new_high = math.ceil((high + 0.05 * span) / step) * step
    return new_low, new_high
