"""Errors never crash the app: readable dialogs, and a log file for the unexpected.

- A :class:`~distill_gui.errors.DistillError` (or an engine ``Failed`` event) is shown with its
  user-facing message; the traceback or server reply sits behind "Show Details...".
- An unhandled exception (a bug) is written to ``<user data>/logs/distill-gui.log`` and opens a
  dialog that says so; the app keeps running.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from distill_gui.errors import DistillError, UserInputError
from distill_gui.paths import log_dir

LOG_NAME = "distill-gui.log"
log = logging.getLogger("distill_gui.gui")


@dataclass
class ErrorInfo:
    """What a dialog shows: a message for people, details on demand."""

    message: str
    details: str | None = None
    title: str = "Something went wrong"
    user_error: bool = False          # the user's input is wrong (vs. a failure while working)

    @classmethod
    def from_exception(cls, exc: BaseException) -> "ErrorInfo":
        if isinstance(exc, DistillError):
            return cls(exc.message, exc.details, title=_title_for(exc),
                       user_error=isinstance(exc, UserInputError))
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(f"Unexpected {type(exc).__name__}: {exc}\n\nThis is a bug; the details are in the "
                   f"log file {log_file()}.", tb, title="Unexpected error")


def _title_for(exc: DistillError) -> str:
    name = type(exc).__name__
    return {"ConfigError": "Config problem", "DataError": "Data problem", "ModelError": "Model problem",
            "TrainingError": "Training failed", "ExportError": "Export failed"}.get(name, "Error")


def log_file() -> Path:
    return log_dir() / LOG_NAME


def setup_logging() -> Path:
    """Log warnings and errors of the app to a rotating file in the user data folder."""
    path = log_file()
    root = logging.getLogger("distill_gui")
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == path
               for h in root.handlers):
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return path


def show_error(parent: QWidget | None, info: ErrorInfo) -> QMessageBox:
    """Open a non-blocking error dialog (window-modal) and return it."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning if info.user_error else QMessageBox.Icon.Critical)
    box.setWindowTitle(info.title)
    box.setText(info.message)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if info.details:
        box.setDetailedText(info.details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setObjectName("errorDialog")
    box.open()
    return box


class _CrashRelay(QObject):
    """Moves reports of exceptions in other threads onto the GUI thread before any dialog opens."""

    report = Signal(object)


class CrashHandler:
    """The process-wide hook for exceptions nobody caught (main thread and Python threads)."""

    def __init__(self, parent_getter=lambda: None) -> None:
        self._parent_getter = parent_getter
        self._relay = _CrashRelay()
        self._relay.report.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self._open_dialog: QMessageBox | None = None
        self.count = 0

    def install(self) -> None:
        sys.excepthook = self.handle
        threading.excepthook = lambda args: self.handle(args.exc_type, args.exc_value, args.exc_traceback)

    def handle(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        """Write the traceback to the log, then show a dialog on the GUI thread."""
        if issubclass(exc_type, KeyboardInterrupt):
            QApplication.quit()
            return
        self.count += 1
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            setup_logging()
            log.error("unhandled exception\n%s", text)
        except OSError:  # a full or read-only disk must not turn one error into two
            pass
        if isinstance(exc, DistillError):
            info = ErrorInfo.from_exception(exc)
            info.details = info.details or text
        else:
            info = ErrorInfo(f"An unexpected error happened: {exc_type.__name__}: {exc}\n\n"
                             f"The app keeps running. The details were written to {log_file()}; "
                             f"please include them when you report the problem.",
                             text, title="Unexpected error")
        self._relay.report.emit(info)

    def _show(self, info: ErrorInfo) -> None:
        # One dialog at a time: an error inside a timer would otherwise open one per tick.
        if self._open_dialog is not None:
            return
        self._open_dialog = show_error(self._parent_getter(), info)
        self._open_dialog.finished.connect(self._forget_dialog)

    def _forget_dialog(self, _result: int = 0) -> None:
        self._open_dialog = None
