"""The "Try the demo" box: runs engine.demo in a worker with progress, Stop, and the summary when done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from distill_gui.gui.crash import ErrorInfo, show_error
from distill_gui.gui.workers import TaskRunner

INTRO = ("New here? The demo builds a small teacher from dialogues it writes itself, distills a student from it, "
         "trains plain fine-tuning at equal steps to compare, writes the report, exports GGUF and registers both "
         "models into Ollama when it runs. Offline; a few minutes on a CPU.")


class DemoBox(QGroupBox):
    """Try the demo / Stop, a progress bar for the stages and training steps, then the summary table."""

    finished = Signal(object)          # engine.demo.DemoResult

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__("Offline demo", parent)
        self.setObjectName("demoBox")
        self.runner = runner
        self.size: Any = "full"        # "full" | "small" | an engine.demo.DemoSize (tests use a tiny one)
        self.out_dir: str | None = None
        self.ollama_host: str | None = None
        self.control: Any = None
        self.result: Any = None
        self.stage = (0, 0, "")        # the current demo stage: (index, count, message)
        self.intro = QLabel(INTRO)
        self.intro.setWordWrap(True)
        self.intro.setProperty("muted", True)
        self.start_button = QPushButton("Try the demo")
        self.start_button.setObjectName("tryDemo")
        self.start_button.setToolTip("Run the whole pipeline on a model pair the app builds itself.")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.report_button = QPushButton("Open report")
        self.report_button.setVisible(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.report_button.clicked.connect(self.open_report)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setObjectName("demoStatus")
        self.summary = QLabel()
        self.summary.setObjectName("demoSummary")
        self.summary.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setVisible(False)
        self.notes = QLabel()
        self.notes.setObjectName("demoNotes")
        self.notes.setWordWrap(True)
        self.notes.setVisible(False)

        buttons = QHBoxLayout()
        buttons.addWidget(self.intro, 1)
        for button in (self.start_button, self.stop_button, self.report_button):
            buttons.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(self.notes)

    @property
    def running(self) -> bool:
        return self.runner.busy("demo")

    def start(self) -> None:
        if self.running:
            return
        from distill_gui.events import Control
        from distill_gui.workflows.demo import run_demo

        self.control, self.result = Control(), None
        self.summary.setVisible(False)
        self.notes.setVisible(False)
        self.report_button.setVisible(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText("Starting the demo…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.runner.run("demo", run_demo, self.out_dir, size=self.size, ollama_host=self.ollama_host,
                        control=self.control, on_done=self._done, on_error=self._failed,
                        on_progress=self._progress)

    def stop(self) -> None:
        if self.control is not None and self.running:
            self.control.stop()
            self.stop_button.setEnabled(False)
            self.status.setText("Stopping after the current step…")

    def _progress(self, event: Any) -> None:
        phase, message = getattr(event, "phase", ""), getattr(event, "message", "")
        if phase == "demo" and event.total:
            self.stage = (int(event.done), int(event.total), message)
            self.progress.setRange(0, int(event.total) * 100)
            self.progress.setValue(int(event.done) * 100)
            self.status.setText(f"Step {min(int(event.done) + 1, int(event.total))} of {int(event.total)}: "
                                f"{message}…")
        elif phase == "train" and event.total and self.stage[1]:
            done, total, _ = self.stage
            self.progress.setValue(done * 100 + int(100 * event.done / event.total))
            self.status.setText(f"Step {done + 1} of {total}: {message}, step {int(event.done)} of "
                                f"{int(event.total)}…")

    def _done(self, result: Any) -> None:
        from distill_gui.workflows.demo import format_summary

        self.result = result
        self._idle()
        self.progress.setVisible(False)
        kd, ce = result.task_accuracy.get("after"), result.task_accuracy.get("control")
        self.status.setText(f"Done in {result.seconds:.0f} s: the distilled student answers {100 * kd:.0f} % of new "
                            f"questions right, plain fine-tuning at equal steps {100 * ce:.0f} %.")
        self.summary.setText(format_summary(result).split("\n\n", 1)[0])  # the table; the rest is for the terminal
        self.notes.setText(f"{result.ollama_note} The demo's runs and their reports are on the Runs page; everything "
                           f"is in {result.out_dir}.")
        self.summary.setVisible(True)
        self.notes.setVisible(True)
        self.report_button.setVisible(True)
        self.finished.emit(result)

    def _failed(self, error: ErrorInfo) -> None:
        stopped = self.control is not None and self.control.stop_requested
        self._idle()
        self.progress.setVisible(False)
        if stopped:
            self.status.setText("The demo was stopped. Try it again to start over.")
        else:
            self.status.setText(f"The demo failed: {error.message}")
            show_error(self, error)

    def _idle(self) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def open_report(self) -> None:
        if self.result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.result.report_path))))
