"""The PySide6 desktop app (the only layer that imports Qt). Entry point: :func:`distill_gui.gui.app.main`."""

from distill_gui.gui import _pyside_fix  # noqa: F401  - first: PySide6 6.12 abi3 wheels free None on Python < 3.12
