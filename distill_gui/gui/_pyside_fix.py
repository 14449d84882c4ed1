"""Keep PySide6's abi3 wheels from freeing ``None`` on Python < 3.12.

PySide6 6.12.0 ships ``cp310-abi3`` wheels whose generated wrappers return ``None`` from every
void method without taking a reference (correct only where ``None`` is immortal, Python >= 3.12,
PEP 683). On Python 3.10 / 3.11 each ``label.setText(...)``, ``painter.drawLine(...)``...
therefore drops one reference to ``None``; after a few thousand calls (a few seconds of live
plotting) the interpreter aborts with "Fatal Python error: none_dealloc: deallocating None".

The same wrappers drop references to ``True`` and ``False`` on some paths (pyqtgraph's painting
hits one). The cure here does what Python 3.12 does: it gives these three singletons reference
counts so large that no run of the app can ever count them down to zero. It is applied only when
a probe shows the leak.
"""

from __future__ import annotations

import ctypes
import sys

PROBE_CALLS = 64
# 2**48 leaked references at a million void calls per second last about nine years.
HEADROOM = 1 << 48


def void_calls_leak_none() -> bool:
    """True when a PySide6 void method returns None without a new reference."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")
    return before - sys.getrefcount(None) >= PROBE_CALLS // 2


def pin_none() -> bool:
    """Pin None, True and False when the leak shows; returns True when it was applied."""
    if sys.version_info >= (3, 12) or not void_calls_leak_none():
        return False
    for singleton in (None, True, False):
        # ob_refcnt is the first field of every PyObject (release builds of CPython < 3.12).
        refcount = ctypes.c_ssize_t.from_address(id(singleton))
        refcount.value += HEADROOM
    return True


APPLIED = pin_none()
