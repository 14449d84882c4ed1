"""Numbers, sizes and durations as people read them (Qt-free, shared by the pages)."""

from __future__ import annotations

import math


def human_count(n: float | int | None) -> str:
    """Parameter or token counts: 1.54 B, 494 M, 12.3 k, 512."""
    if n is None:
        return "–"
    n = float(n)
    for limit, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= limit:
            value = n / limit
            return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return f"{n:.0f}"


def human_bytes(n: float | int | None) -> str:
    """Memory and file sizes in binary units: 3.2 GiB, 512 MiB."""
    if n is None:
        return "–"
    n = float(n)
    for limit, suffix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= limit:
            return f"{n / limit:.3g} {suffix}" if n / limit < 100 else f"{n / limit:.0f} {suffix}"
    return f"{n:.0f} B"


def human_duration(seconds: float | None) -> str:
    """Elapsed time and ETA: 42 s, 3 min 05 s, 2 h 07 min."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def metric(value: float | None, digits: int = 4) -> str:
    """A metric value with a few significant digits; NaN and None show as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    """A 0..1 share as a percentage: 0.734 -> 73.4 %."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * value:.1f} %"
