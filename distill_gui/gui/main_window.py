"""The main window: a sidebar of pages, the menus that carry the shortcuts, remembered geometry.

Pages are built when first shown (``page(name)``; ``window.export_page`` etc. build on access), so
the window paints before the modules of pages nobody has opened are even imported. The Train and
Runs pages are built at once: the Run menu carries the Train page's actions, and the Runs page
follows the active run.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from distill_gui import __version__
from distill_gui.errors import ConfigError
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import log_file
from distill_gui.gui.icons import app_icon
from distill_gui.gui.pages.runs_page import RunsPage
from distill_gui.gui.pages.train_page import TrainPage
from distill_gui.gui.teardown import clear_plot_scenes
from distill_gui.gui.workers import TaskRunner

PAGE_NAMES = ("Models", "Data", "Train", "Export", "Chat", "Runs", "Settings")
SHORTCUTS_HELP = """<table>
<tr><td><b>F5</b> or <b>Ctrl+Enter</b></td><td>Start training</td></tr>
<tr><td><b>F6</b></td><td>Pause / resume</td></tr>
<tr><td><b>Shift+F5</b></td><td>Stop (saves a checkpoint and the final model)</td></tr>
<tr><td><b>Ctrl+Shift+R</b></td><td>Resume an interrupted run</td></tr>
<tr><td><b>Ctrl+1</b> … <b>Ctrl+7</b></td><td>Models, Data, Train, Export, Chat, Runs, Settings</td></tr>
<tr><td><b>Ctrl+O</b> / <b>Ctrl+S</b> / <b>Ctrl+Shift+S</b></td><td>Open / save / save as a run config</td></tr>
<tr><td><b>Ctrl+Q</b></td><td>Quit</td></tr></table>"""


class MainWindow(QMainWindow):
    theme_requested = Signal(str)

    def __init__(self, qsettings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.qsettings = qsettings
        self.setWindowTitle("distill-gui")
        self.setWindowIcon(app_icon())
        self.store = ConfigStore(parent=self)
        self._restore_config()

        self._built: dict[str, QWidget] = {}
        self.train_page = self._built["Train"] = TrainPage(self.store)
        self.runs_page = self._built["Runs"] = RunsPage(self.store)
        self._build()
        self._make_menus()
        self._connect()
        self._restore_geometry()
        # torch + transformers load in the background right after the window shows, so the first
        # Check or Start does not wait for them (and the window never does).
        self.runner = TaskRunner(self)
        self._warmed_up = False

        # The last config is kept in QSettings shortly after every change, so a crash loses nothing.
        self._save_config_timer = QTimer(self)
        self._save_config_timer.setSingleShot(True)
        self._save_config_timer.setInterval(800)
        self._save_config_timer.timeout.connect(self.save_last_config)
        self.store.changed.connect(lambda _k: self._save_config_timer.start())

    # ---- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(170)
        self.sidebar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for index, name in enumerate(PAGE_NAMES, start=1):
            item = QListWidgetItem(name)
            item.setToolTip(f"{name} (Ctrl+{index})")
            self.sidebar.addItem(item)
        self.stack = QStackedWidget()
        for name in PAGE_NAMES:   # an empty stand-in until the page is first shown
            self.stack.addWidget(self._built.get(name) or QWidget())
        self.sidebar.currentRowChanged.connect(self._switch)

        brand = QWidget()
        brand.setObjectName("brand")
        brand_layout = QHBoxLayout(brand)
        brand_layout.setContentsMargins(14, 12, 8, 6)
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(28, 28))
        name = QLabel("distill-gui")
        name.setObjectName("appName")
        brand_layout.addWidget(icon)
        brand_layout.addWidget(name, 1)
        side = QWidget()
        side.setObjectName("sideColumn")
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.setSpacing(0)
        side_layout.addWidget(brand)
        side_layout.addWidget(self.sidebar, 1)
        side.setFixedWidth(170)

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(side)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.run_status = QLabel("Idle")
        self.statusBar().addPermanentWidget(self.run_status)

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        tp = self.train_page
        for act in (tp.open_action, tp.save_action, tp.save_as_action):
            file_menu.addAction(act)
        file_menu.addSeparator()
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        run_menu = bar.addMenu("&Run")
        for act in (tp.start_action, tp.pause_action, tp.stop_action):
            run_menu.addAction(act)
        run_menu.addSeparator()
        run_menu.addAction(tp.resume_run_action)

        view_menu = bar.addMenu("&View")
        self.page_actions = []
        for index, name in enumerate(PAGE_NAMES):
            act = QAction(name, self)
            act.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))
            act.triggered.connect(lambda _=False, i=index: self.show_page(i))
            view_menu.addAction(act)
            self.page_actions.append(act)

        help_menu = bar.addMenu("&Help")
        shortcuts = QAction("Keyboard shortcuts", self)
        shortcuts.setShortcut(QKeySequence("F1"))
        shortcuts.triggered.connect(self.show_shortcuts)
        about = QAction("About distill-gui", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(shortcuts)
        help_menu.addAction(about)

    def _connect(self) -> None:
        tp = self.train_page
        tp.status_text.connect(self._run_status)
        tp.run_started.connect(self.runs_page.set_active_run)
        tp.run_ended.connect(lambda _d: self.runs_page.set_active_run(None))
        tp.state_changed.connect(lambda state: self.run_status.setText("Idle") if state == "idle" else None)
        self.runs_page.resume_requested.connect(self._resume_from_runs)
        self.runs_page.load_config_requested.connect(self._load_from_runs)

    # ---- pages, built on first use -----------------------------------------------------------
    def _make_page(self, name: str) -> QWidget:
        # Imports here, not at the top: a page's module loads when the page is first needed.
        if name == "Models":
            from distill_gui.gui.pages.models_page import ModelsPage

            return ModelsPage(self.store)
        if name == "Data":
            from distill_gui.gui.pages.data_page import DataPage

            return DataPage(self.store)
        if name == "Export":
            from distill_gui.gui.pages.export_page import ExportPage

            page = ExportPage()
            # Export -> Chat: a freshly registered student goes into pane B; "Chat with it" opens the page.
            page.registered.connect(lambda name_: self.chat_page.select_student(name_))
            page.chat_requested.connect(lambda _name: self.show_page("Chat"))
            page.status_text.connect(lambda text: self.statusBar().showMessage(text, 8000))
            return page
        if name == "Chat":
            from distill_gui.gui.pages.chat_page import ChatPage

            page = ChatPage(self.store)
            page.status_text.connect(lambda text: self.statusBar().showMessage(text, 8000))
            return page
        if name == "Settings":
            from distill_gui.gui.pages.settings_page import SettingsPage

            page = SettingsPage()
            page.theme_changed.connect(self.theme_requested)
            return page
        raise KeyError(name)

    def page(self, name: str) -> QWidget:
        """The page called ``name``, built (and put into the stack) the first time it is asked for."""
        if name not in self._built:
            page = self._built[name] = self._make_page(name)
            index = PAGE_NAMES.index(name)
            stand_in = self.stack.widget(index)
            current = self.stack.currentIndex()
            self.stack.insertWidget(index, page)
            self.stack.removeWidget(stand_in)
            stand_in.deleteLater()
            self.stack.setCurrentIndex(current)
        return self._built[name]

    @property
    def pages(self) -> list[QWidget]:
        return [self.page(name) for name in PAGE_NAMES]

    @property
    def models_page(self):
        return self.page("Models")

    @property
    def data_page(self):
        return self.page("Data")

    @property
    def export_page(self):
        return self.page("Export")

    @property
    def chat_page(self):
        return self.page("Chat")

    @property
    def settings_page(self):
        return self.page("Settings")

    def _switch(self, index: int) -> None:
        self.page(PAGE_NAMES[index])
        self.stack.setCurrentIndex(index)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().paintEvent(event)
        if not self._warmed_up:  # after the first paint, so the import never delays the window
            self._warmed_up = True
            self._warm_up_timer = QTimer(self)          # owned by the window: gone if the window is
            self._warm_up_timer.setSingleShot(True)     # closed first
            self._warm_up_timer.timeout.connect(self._warm_up)
            self._warm_up_timer.start(200)

    def _warm_up(self) -> None:
        self.runner.run("warm-up", _nothing)

    def _run_status(self, text: str) -> None:
        """Live training progress sits in the corner; other news shows for a few seconds."""
        if text.startswith("Training:"):
            self.run_status.setText(text)
        else:
            self.statusBar().showMessage(text, 8000)

    # ---- navigation ---------------------------------------------------------------------------
    def show_page(self, index_or_name: int | str) -> None:
        index = PAGE_NAMES.index(index_or_name) if isinstance(index_or_name, str) else index_or_name
        self.sidebar.setCurrentRow(index)

    def current_page_name(self) -> str:
        return PAGE_NAMES[self.stack.currentIndex()]

    def _resume_from_runs(self, run_dir: str) -> None:
        self.show_page("Train")
        self.train_page.resume_run_folder(run_dir)

    def _load_from_runs(self, config_path: str) -> None:
        if self.train_page.load_config_file(config_path):
            self.show_page("Train")

    def show_shortcuts(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(SHORTCUTS_HELP)
        box.open()

    def show_about(self) -> None:
        QMessageBox.about(self, "About distill-gui",
                          f"<b>distill-gui {__version__}</b><br>Knowledge distillation of local LLMs: teacher → "
                          f"student → GGUF → Ollama.<br><br>Log file: {log_file()}")

    # ---- persistence ---------------------------------------------------------------------------
    def _restore_config(self) -> None:
        text = self.qsettings.value("last_config", "", type=str)
        if not text:
            return
        try:
            self.store.load_toml_text(text, source="the last session's config")
        except ConfigError:
            pass  # a config from an older version: start from the defaults rather than fail

    def save_last_config(self) -> None:
        self.qsettings.setValue("last_config", self.store.to_toml())

    def _restore_geometry(self) -> None:
        geometry = self.qsettings.value("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1320, 860)
        self.show_page(int(self.qsettings.value("page", 0, type=int)) % len(PAGE_NAMES))

    def save_state(self) -> None:
        self.qsettings.setValue("geometry", self.saveGeometry())
        self.qsettings.setValue("page", self.stack.currentIndex())
        self.save_last_config()
        self.qsettings.sync()

    def confirm_quit_while_training(self) -> bool:
        """Ask before closing during a run (tests replace this)."""
        answer = QMessageBox.question(self, "Training is running",
                                      "A run is in progress. Stop it (a checkpoint and the final model are "
                                      "saved) and quit?")
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt name
        if self.train_page.is_running():
            if not self.confirm_quit_while_training():
                event.ignore()
                return
            self.statusBar().showMessage("Stopping the run and saving…")
            QApplication.processEvents()
            self.train_page.shutdown()
        self.save_state()
        for page in self._built.values():     # only the pages that were ever built
            if page is not self.train_page and callable(getattr(page, "shutdown", None)):
                page.shutdown()
        self.runner.wait_all()
        clear_plot_scenes(self)     # see teardown.py: plots go before the widgets that hold them
        event.accept()


def _nothing() -> None:
    """The warm-up task: the worker imports torch and transformers before running it."""
