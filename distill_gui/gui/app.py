"""Entry point of the desktop app: ``distill-gui`` with no command calls :func:`main`.

Only Qt, pyqtgraph and the Qt-free config / settings modules load before the window shows;
torch and transformers are imported later, inside worker threads.
"""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from distill_gui.gui import theme
from distill_gui.gui.crash import CrashHandler, setup_logging
from distill_gui.gui.icons import app_icon
from distill_gui.gui.main_window import MainWindow
from distill_gui.gui.teardown import release_widgets
from distill_gui.paths import user_data_dir
from distill_gui.settings import load_settings

APP_NAME = "distill-gui"


def open_qsettings() -> QSettings:
    """Window geometry and the last config, in an INI file in the user data folder.

    Keeping it next to settings.json (instead of the registry / ~/.config) means DISTILL_GUI_HOME
    moves it too: tests and portable installs get their own.
    """
    return QSettings(str(user_data_dir() / "window.ini"), QSettings.Format.IniFormat)


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName(APP_NAME)
    app.setWindowIcon(app_icon())
    return app  # type: ignore[return-value]


def create_window(app: QApplication) -> MainWindow:
    """Theme, crash handling and the main window (not shown yet)."""
    settings = load_settings()
    theme.apply_theme(app, settings.theme)
    window = MainWindow(open_qsettings())
    window.theme_requested.connect(lambda choice: theme.apply_theme(app, choice))
    return window


def main(argv: list[str] | None = None) -> int:
    """Open the app; returns the exit code when the window closes."""
    # Idle OpenMP threads sleep instead of spinning, leaving the CPU to the window. Set before
    # torch loads (it loads later, in a worker thread).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app = create_application(argv)
    setup_logging()
    crash_handler = CrashHandler(lambda: app.activeWindow())
    crash_handler.install()
    window = create_window(app)
    window.show()
    code = int(app.exec())
    del window
    release_widgets(app)
    return code

