"""The main window: pages, shortcuts, remembered state, themes, settings, crash handling, fast start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from distill_gui.gui import theme
from distill_gui.gui.main_window import PAGE_NAMES
from distill_gui.settings import load_settings

from .conftest import error_dialogs


def test_sidebar_lists_every_page_and_ctrl_digits_switch_pages(window, qtbot):
    names = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert names == ["Models", "Data", "Train", "Export", "Chat", "Runs", "Settings"] == list(PAGE_NAMES)
    for digit, name in ((Qt.Key.Key_3, "Train"), (Qt.Key.Key_6, "Runs"), (Qt.Key.Key_1, "Models")):
        qtbot.keyClick(window, digit, Qt.KeyboardModifier.ControlModifier)
        assert window.current_page_name() == name
        assert window.stack.currentWidget() is window.pages[PAGE_NAMES.index(name)]
    qtbot.mouseClick(window.sidebar.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.sidebar.visualItemRect(window.sidebar.item(6)).center())
    assert window.current_page_name() == "Settings"


def test_geometry_page_and_last_config_survive_a_restart(qtbot, close_dialogs):
    from distill_gui.gui.app import create_window

    first = create_window(QApplication.instance())
    first.show()
    qtbot.waitExposed(first)
    first.resize(900, 533)           # the offscreen screen is 800 px wide: restoring clamps the width
    first.show_page("Runs")
    first.store.set_many({"name": "remembered", "train.lr": 3e-4, "distill.loss": "jsd"})
    first.close()

    second = create_window(QApplication.instance())
    qtbot.addWidget(second)
    assert second.height() == 533                 # not the default 860
    assert second.current_page_name() == "Runs"
    cfg = second.store.config
    assert (cfg.name, cfg.train.lr, cfg.distill.loss) == ("remembered", 3e-4, "jsd")
    assert second.train_page.forms["Distillation"].editor("distill.loss").currentText() == "jsd"
    ini = second.qsettings.fileName()
    assert ini.startswith(os.environ["DISTILL_GUI_HOME"])      # the test's private folder, not ~/.config
    second.close()


def test_damaged_remembered_config_falls_back_to_defaults(qtbot):
    from distill_gui.gui.app import create_window, open_qsettings

    settings = open_qsettings()
    settings.setValue("last_config", "[train]\nmax_steps = 'many'\n")
    settings.sync()
    win = create_window(QApplication.instance())
    qtbot.addWidget(win)
    assert win.store.config.train.max_steps == 1000
    win.close()


def test_theme_choice_restyles_the_app_and_is_saved(window, qtbot):
    page = window.settings_page
    window.show_page("Settings")
    page.theme.setCurrentIndex(page.theme.findData("dark"))
    palette = QApplication.instance().palette()
    assert palette.color(QPalette.ColorRole.Window).name() == theme.DARK.window
    assert theme.current_colors() is theme.DARK
    assert load_settings().theme == "dark"
    window.show_page("Train")
    plots = window.train_page.plots
    assert plots.view.backgroundBrush().color().name() == theme.DARK.surface
    page.theme.setCurrentIndex(page.theme.findData("light"))
    assert QApplication.instance().palette().color(QPalette.ColorRole.Window).name() == theme.LIGHT.window
    assert plots.view.backgroundBrush().color().name() == theme.LIGHT.surface
    assert load_settings().theme == "light"


def test_settings_page_writes_settings_json_and_runs_folder_moves(window, tmp_path):
    page = window.settings_page
    page.ollama_host.setText("http://10.0.0.7:11434")
    page.ollama_host.editingFinished.emit()
    page.runs_dir.line.setText(str(tmp_path / "my-runs"))
    page.runs_dir.line.editingFinished.emit()
    page.hf_cache.line.setText(str(tmp_path / "hf"))
    page.hf_cache.line.editingFinished.emit()
    saved = json.loads((tmp_path / "home" / "settings.json").read_text())
    assert saved["ollama_host"] == "http://10.0.0.7:11434"
    assert saved["runs_dir"] == str(tmp_path / "my-runs")
    assert saved["hf_cache_dir"] == str(tmp_path / "hf")
    assert window.runs_page.runs_dirs()[0] == tmp_path / "my-runs"
    assert window.store.config.run_dir() == tmp_path / "my-runs" / window.store.config.name


def test_unhandled_exception_is_logged_and_shown_once(window, qtbot):
    from distill_gui.gui.crash import CrashHandler, log_file

    handler = CrashHandler(lambda: window)
    try:
        raise ZeroDivisionError("a bug in a slot")
    except ZeroDivisionError:
        handler.handle(*sys.exc_info())
        handler.handle(*sys.exc_info())       # a second one while the first dialog is open
    qtbot.waitUntil(lambda: len(error_dialogs()) == 1)
    qtbot.wait(50)
    dialogs = error_dialogs()
    assert len(dialogs) == 1
    assert "ZeroDivisionError: a bug in a slot" in dialogs[0].text()
    assert "Traceback" in dialogs[0].detailedText()
    assert str(log_file()) in dialogs[0].text()
    logged = log_file().read_text()
    assert "ZeroDivisionError: a bug in a slot" in logged and "Traceback" in logged
    assert window.isVisible()                  # the app goes on


def test_window_shows_before_torch_or_transformers_load(tmp_path):
    code = textwrap.dedent("""
        import sys
        from PySide6.QtWidgets import QApplication
        from distill_gui.gui.app import create_application, create_window
        app = create_application([])
        window = create_window(app)
        window.show()
        app.processEvents()
        print(window.isVisible(), 'torch' in sys.modules, 'transformers' in sys.modules,
              'distill_gui.gui.pages.export_page' in sys.modules)   # pages load when first shown
        window.close()
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DISTILL_GUI_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False", "False"]


def test_many_qt_calls_do_not_free_none(tmp_path):
    """PySide6 6.12's abi3 wheels drop a reference to None per void call on Python < 3.12 (see _pyside_fix)."""
    code = textwrap.dedent("""
        import sys
        import distill_gui.gui  # applies the fix where needed
        from PySide6.QtWidgets import QApplication, QLabel
        app = QApplication([])
        label = QLabel()
        for _ in range(200_000):
            label.setText("x")
        print(sys.getrefcount(None) > 0)
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
