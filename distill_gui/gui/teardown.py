"""Orderly teardown of Qt objects (pyqtgraph scenes first, then the windows).

Left to the interpreter's exit, Python frees Qt objects in no particular order; a pyqtgraph
scene deleted by its view's C++ destructor then calls into items whose Python side is already
gone, and the process crashes on its way out (seen as exit code 134 / 139 after all went well).
"""

from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication, QWidget


def clear_plot_scenes(root: QWidget) -> None:
    """Empty every pyqtgraph scene under ``root`` while all its items are still alive.

    Widgets with a ``dispose_plots()`` method (ours) clear their own scenes and stop reacting to
    theme changes; any other pyqtgraph view's scene is cleared directly.
    """
    if "pyqtgraph" not in sys.modules:     # never imported: there is no plot to clear
        return
    from pyqtgraph import GraphicsView

    for widget in root.findChildren(QWidget):
        if callable(getattr(widget, "dispose_plots", None)):
            widget.dispose_plots()
    for view in root.findChildren(GraphicsView):
        scene = view.scene()
        if scene is not None:
            scene.clear()


def release_widgets(app: QApplication) -> None:
    """Clear plots and delete every window while Qt is still whole."""
    for widget in app.topLevelWidgets():
        if widget.parentWidget() is None:   # popups and menus are windows too, owned by their widget
            clear_plot_scenes(widget)
            widget.close()
            widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
    gc.collect()
