"""The Qt-free layers never import PySide6, directly or through anything they import."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

QT_FREE = ["distill_gui.config", "distill_gui.errors", "distill_gui.paths", "distill_gui.cli",
           "distill_gui.engine", "distill_gui.export", "distill_gui.ollama", "distill_gui.commands",
           "distill_gui.chatlog"]


def _all_modules() -> list[str]:
    names = []
    for name in QT_FREE:
        names.append(name)
        module = __import__(name, fromlist=["_"])
        if hasattr(module, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(module.__path__, prefix=name + ".")]
    return names


def test_qt_free_layers_never_import_pyside6():
    modules = _all_modules()
    assert len(modules) > len(QT_FREE)  # the walk found the packages' modules
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"Qt imported by the Qt-free layers: {result.stdout.strip()}"


def test_the_check_detects_a_qt_import(tmp_path):
    """Guard against a check that cannot fail: the same probe sees PySide6 when it is imported."""
    code = "import PySide6.QtCore, sys; print(any(m.startswith('PySide6') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True"
