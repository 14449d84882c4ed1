"""A line edit with a Browse... button for files or folders."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


class PathEdit(QWidget):
    """Emits ``path_edited(str)`` when the user finishes typing or picks a path."""

    path_edited = Signal(str)

    def __init__(self, *, folder: bool = False, file_filter: str = "", placeholder: str = "",
                 dialog_title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder, self.file_filter = folder, file_filter
        self.dialog_title = dialog_title or ("Choose a folder" if folder else "Choose a file")
        self.line = QLineEdit()
        self.line.setPlaceholderText(placeholder)
        self.line.setClearButtonEnabled(True)
        self.button = QPushButton("Browse…")
        self.button.setToolTip(self.dialog_title)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.line, 1)
        layout.addWidget(self.button)
        self.line.editingFinished.connect(lambda: self.path_edited.emit(self.text()))
        self.button.clicked.connect(self.browse)

    def text(self) -> str:
        return self.line.text().strip()

    def set_text(self, text: str) -> None:
        if self.line.text() != text:
            self.line.setText(text)

    def browse(self) -> None:
        start = self.text() or str(Path.home())
        if self.folder:
            chosen = QFileDialog.getExistingDirectory(self, self.dialog_title, start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self.dialog_title, start, self.file_filter)
        if chosen:
            self.line.setText(chosen)
            self.path_edited.emit(chosen)
