"""Models page: teacher and student pickers, both sizes, the tokenizer verdict, the memory plan, the demo."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from distill_gui.config import ollama_model
from distill_gui.formatting import human_count
from distill_gui.gui import tasks, theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo
from distill_gui.gui.pages.common import page_header, scrollable
from distill_gui.gui.widgets.demo_box import DemoBox
from distill_gui.gui.widgets.memory_panel import MemoryPanel
from distill_gui.gui.widgets.model_picker import ModelPicker
from distill_gui.gui.widgets.ollama_teachers import OllamaTeacherBox, TeacherCacheBox
from distill_gui.gui.workers import TaskRunner


class PairPanel(QGroupBox):
    """Both sizes side by side and the engine's tokenizer-compatibility verdict."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Teacher and student", parent)
        self.sizes = QLabel("Check both models to compare their sizes.")
        self.sizes.setObjectName("pairSizes")
        self.sizes.setWordWrap(True)
        self.badge = QLabel()
        self.badge.setObjectName("tokenizerBadge")
        theme.set_badge(self.badge, "idle", "tokenizers not compared yet")
        self.verdict = QLabel("The tokenizers must match for token-level distillation; the check runs when "
                              "both models are known.")
        self.verdict.setObjectName("tokenizerVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.sizes)
        layout.addSpacing(6)
        layout.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.verdict)
        layout.addStretch(1)

    def show_sizes(self, teacher: Any, student: Any) -> None:
        if teacher is None or student is None:
            known = teacher or student
            self.sizes.setText("Check both models to compare their sizes." if known is None else
                               f"{'Teacher' if teacher else 'Student'}: {human_count(known.parameters)} parameters.")
            return
        t, s = teacher.parameters, student.parameters
        ratio = s / t if t else float("nan")
        approx = "" if getattr(student, "parameters_exact", True) else "≈ "
        self.sizes.setText(
            f"Teacher {human_count(t)} parameters → student {approx}{human_count(s)} parameters: the student "
            f"has {100 * ratio:.0f} % of the teacher's size ({t / s:.1f}× smaller)." if s else
            f"Teacher {human_count(t)} parameters.")

    def show_verdict(self, verdict: Any) -> None:
        if verdict is None:
            theme.set_badge(self.badge, "idle", "tokenizers not compared yet")
            self.verdict.setText("The tokenizers must match for token-level distillation; the check runs when "
                                 "both models are known.")
            return
        theme.set_badge(self.badge, "ok" if verdict.compatible else "error",
                        "same tokenizer" if verdict.compatible else "tokenizers differ")
        self.verdict.setText(verdict.message)

    def show_checking(self) -> None:
        theme.set_badge(self.badge, "idle", "comparing tokenizers…")

    def show_black_box(self) -> None:
        theme.set_badge(self.badge, "idle", "black-box teacher")
        self.verdict.setText("An Ollama teacher: the student learns its answers (any tokenizer), and its "
                             "log-probabilities where its tokens line up with the student's (checked on the "
                             "first answer).")

    def show_error(self, error: ErrorInfo) -> None:
        theme.set_badge(self.badge, "warn", "cannot compare")
        self.verdict.setText(error.message)


class ModelsPage(QWidget):
    def __init__(self, store: ConfigStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.runner = TaskRunner(self)
        self.verdict: Any = None
        self.teacher = ModelPicker("teacher", store, self.runner)
        self.student = ModelPicker("student", store, self.runner)
        self.pair = PairPanel()
        self.memory = MemoryPanel(store, self.runner)
        self.ollama = OllamaTeacherBox(store, self.runner)
        self.cache = TeacherCacheBox(store)
        self.demo = DemoBox(TaskRunner(self))  # its own runner: the demo never cancels a model check
        self.teacher.info_changed.connect(self._teacher_changed)
        self.student.info_changed.connect(self._student_changed)

        body = QWidget()
        grid = QGridLayout(body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(10)
        grid.addWidget(self.teacher, 0, 0)
        grid.addWidget(self.student, 0, 1)
        # Below the pickers each column stacks at its own height (no box stretched to match its
        # neighbour): sizes, verdict and the Ollama teacher left; memory and the teacher cache right.
        for column, widgets in ((0, (self.pair, self.ollama)), (1, (self.memory, self.cache))):
            stack = QVBoxLayout()
            stack.setSpacing(10)
            for widget in widgets:
                stack.addWidget(widget)
            stack.addStretch(1)
            grid.addLayout(stack, 1, column)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Models", "Pick the big teacher to learn from and the small student to "
                                     "train. Both must share a tokenizer; the memory plan says whether they fit."))
        layout.addWidget(self.demo)  # above the pickers: the first thing a new user runs
        layout.addWidget(scrollable(body), 1)
        self._cached_requested = False

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        if not self._cached_requested:
            self._cached_requested = True
            self.refresh_cached_models()
            self.ollama.refresh()

    def refresh_cached_models(self) -> None:
        self.runner.run("cached", tasks.cached_models, on_done=self._cached, on_error=lambda _e: None, heavy=False)

    def _cached(self, models: list) -> None:
        self.teacher.set_cached_models(models)
        self.student.set_cached_models(models)

    def _teacher_changed(self, info: Any) -> None:
        self.student.set_teacher_info(info)
        self._pair_changed()

    def _student_changed(self, _info: Any) -> None:
        self._pair_changed()

    def _pair_changed(self) -> None:
        teacher, student = self.teacher.info, self.student.info
        self.memory.set_infos(teacher, student)
        self.pair.show_sizes(teacher, student)
        self.verdict = None
        if teacher is None or student is None:
            self.runner.cancel("verdict")
            self.pair.show_verdict(None)
            if ollama_model(self.store.config.teacher.model) is not None:
                self.pair.show_black_box()
            return
        cfg = self.store.config
        self.pair.show_checking()
        self.runner.run("verdict", tasks.tokenizer_verdict, cfg.teacher.model, cfg.student.model,
                        trust_remote_code=cfg.teacher.trust_remote_code or cfg.student.trust_remote_code,
                        on_done=self._verdict, on_error=self.pair.show_error)

    def _verdict(self, verdict: Any) -> None:
        self.verdict = verdict
        self.pair.show_verdict(verdict)

    def shutdown(self) -> None:
        self.demo.stop()
        self.demo.runner.wait_all()
        self.runner.wait_all()
