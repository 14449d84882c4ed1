"""Settings page: Ollama host, runs folder, HF cache folder, theme (saved to settings.json at once)."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.gui.crash import ErrorInfo, log_file, show_error
from distill_gui.gui.pages.common import muted_label, page_header
from distill_gui.gui.widgets.path_edit import PathEdit
from distill_gui.paths import user_data_dir
from distill_gui.settings import THEMES, AppSettings, load_settings, save_settings

THEME_LABELS = {"system": "Follow the system", "dark": "Dark", "light": "Light"}


class SettingsPage(QWidget):
    theme_changed = Signal(str)
    settings_changed = Signal(object)     # AppSettings

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = load_settings()
        self._build()

    def _build(self) -> None:
        self.ollama_host = QLineEdit(self.settings.ollama_host)
        self.ollama_host.setObjectName("ollamaHost")
        self.ollama_host.setPlaceholderText("http://127.0.0.1:11434 (or OLLAMA_HOST when set)")
        self.ollama_host.setToolTip("Where the Ollama server runs. Empty: OLLAMA_HOST, else http://127.0.0.1:11434.")
        self.ollama_host.editingFinished.connect(lambda: self._update(ollama_host=self.ollama_host.text().strip()))
        self.runs_dir = PathEdit(folder=True, placeholder=str(user_data_dir() / "runs"),
                                 dialog_title="Choose the folder for runs")
        self.runs_dir.set_text(self.settings.runs_dir)
        self.runs_dir.setToolTip("Where new runs are written (a run's config may name another output_dir).")
        self.runs_dir.path_edited.connect(lambda p: self._update(runs_dir=p))
        self.hf_cache = PathEdit(folder=True, placeholder="the normal Hugging Face cache (HF_HOME)",
                                 dialog_title="Choose the Hugging Face cache folder")
        self.hf_cache.set_text(self.settings.hf_cache_dir)
        self.hf_cache.setToolTip("Where hub models are downloaded and looked up. Empty: the normal HF cache.")
        self.hf_cache.path_edited.connect(lambda p: self._update(hf_cache_dir=p))
        self.theme = QComboBox()
        self.theme.setObjectName("themeChoice")
        for name in THEMES:
            self.theme.addItem(THEME_LABELS[name], name)
        self.theme.setCurrentIndex(max(0, self.theme.findData(self.settings.theme)))
        self.theme.setToolTip("Dark or light; 'Follow the system' switches with your desktop.")
        self.theme.currentIndexChanged.connect(self._theme_chosen)

        general = QGroupBox("General")
        form = QFormLayout(general)
        form.addRow("Ollama host", self.ollama_host)
        form.addRow("Runs folder", self.runs_dir)
        form.addRow("HF cache folder", self.hf_cache)
        form.addRow("Theme", self.theme)

        files = QGroupBox("Files of the app")
        files_form = QFormLayout(files)
        for label, path in (("Data folder", user_data_dir()), ("Log file", log_file())):
            row = QHBoxLayout()
            text = QLabel(str(path))
            text.setProperty("muted", True)
            button = QPushButton("Open")
            target = path if path.is_dir() else path.parent
            button.clicked.connect(lambda _=False, t=target: QDesktopServices.openUrl(QUrl.fromLocalFile(str(t))))
            row.addWidget(text, 1)
            row.addWidget(button)
            holder = QWidget()
            row.setContentsMargins(0, 0, 0, 0)
            holder.setLayout(row)
            files_form.addRow(label, holder)

        body = QWidget()
        body.setMaximumWidth(900)                  # paths and hosts do not need the whole screen
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        body_layout.addWidget(general)
        body_layout.addWidget(files)
        body_layout.addWidget(muted_label("Window size and the last run config are remembered separately, "
                                          "per user."))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Settings", "Saved as you change them, in settings.json in the app's data "
                                     "folder; the command line uses them too."))
        layout.addWidget(body)
        layout.addStretch(1)

    def _theme_chosen(self, index: int) -> None:
        choice = self.theme.itemData(index)
        self._update(theme=choice)
        self.theme_changed.emit(choice)

    def _update(self, **changes: str) -> None:
        new = replace(self.settings, **changes)
        if new == self.settings:
            return
        try:
            save_settings(new)
        except OSError as exc:
            show_error(self, ErrorInfo(f"Cannot save the settings: {exc}. Check that the data folder "
                                       f"{user_data_dir()} is writable.", title="Cannot save settings"))
            return
        self.settings = new
        self.settings_changed.emit(new)

    def current(self) -> AppSettings:
        return self.settings
