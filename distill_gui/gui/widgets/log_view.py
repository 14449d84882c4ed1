"""A read-only log panel that batches appends (events can arrive faster than text can render)."""

from __future__ import annotations

import html
import time

from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from distill_gui.gui import theme


class LogView(QPlainTextEdit):
    """Lines are queued by ``append`` and written every ``flush_ms`` in one go."""

    def __init__(self, parent: QWidget | None = None, *, max_lines: int = 5000, flush_ms: int = 100) -> None:
        super().__init__(parent)
        self.setObjectName("logView")
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setPlaceholderText("Messages from the run appear here.")
        self._pending: list[tuple[str, str]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(flush_ms)
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    def append(self, message: str, level: str = "info") -> None:
        stamp = time.strftime("%H:%M:%S")
        self._pending.append((f"{stamp}  {message}", level))

    def flush(self) -> None:
        if not self._pending:
            return
        colors = theme.current_colors()
        at_bottom = self.verticalScrollBar().value() >= self.verticalScrollBar().maximum() - 2
        for text, level in self._pending:
            escaped = html.escape(text).replace("\n", "<br>")
            if level == "error":
                escaped = f'<span style="color:{colors.error}">{escaped}</span>'
            elif level == "warning":
                escaped = f'<span style="color:{colors.warn}">{escaped}</span>'
            self.appendHtml(escaped)
        self._pending.clear()
        if at_bottom:
            self.moveCursor(QTextCursor.MoveOperation.End)
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def text(self) -> str:
        """Everything logged so far, pending lines included."""
        self.flush()
        return self.toPlainText()
