"""The memory panel: the engine's planner, in plain words, at the chosen batch, length and precision."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from distill_gui.formatting import human_bytes
from distill_gui.gui import tasks, theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo
from distill_gui.gui.widgets.config_form import ConfigForm
from distill_gui.gui.workers import TaskRunner

PLAN_KEYS = ("train.batch_size", "data.max_length", "train.precision")
# Every key that changes the plan (the form shows only the three above).
REPLAN_ON = {"", "teacher.model", "student.model", "student.keep_layers", "teacher.load_in", "teacher.dtype",
             "student.dtype", "student.lora_rank", "train.batch_size", "data.max_length", "train.precision",
             "train.device", "train.optimizer", "train.gradient_checkpointing", "distill.top_k",
             "distill.chunk_tokens", "distill.loss", "teacher.cache_top_k", "teacher.generate",
             "teacher.gen_max_tokens", "teacher.gen_parallel"}


class MemoryPanel(QGroupBox):
    """Re-plans (debounced) whenever a key that matters changes and both models are set."""

    def __init__(self, store: ConfigStore, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__("Memory", parent)
        self.store, self.runner = store, runner
        self.plan: Any = None
        self.teacher_info: Any = None
        self.student_info: Any = None
        self.form = ConfigForm(store, list(PLAN_KEYS))
        self.badge = QLabel()
        theme.set_badge(self.badge, "idle", "no plan yet")
        self.badge.setObjectName("memoryBadge")
        self.summary = QLabel("Choose a teacher and a student to see whether they fit.")
        self.items = QLabel()
        self.items.setObjectName("memoryItems")
        self.items.setVisible(False)
        self.summary.setObjectName("memorySummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.advice = QLabel()
        self.advice.setWordWrap(True)
        self.advice.setObjectName("memoryAdvice")
        self.advice.setVisible(False)
        self.replan_button = QPushButton("Plan again")
        self.replan_button.setToolTip("Estimate teacher, student, optimizer, activations and loss memory again.")
        self.replan_button.clicked.connect(self.replan)

        top = QHBoxLayout()
        top.addWidget(self.badge)
        top.addStretch(1)
        top.addWidget(self.replan_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.items)
        layout.addWidget(self.advice)
        layout.addStretch(1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(300)
        self._debounce.timeout.connect(self.replan)
        store.changed.connect(self._changed)

    def set_infos(self, teacher: Any, student: Any) -> None:
        """The models as the pickers checked them (None while unknown); re-plans."""
        self.teacher_info, self.student_info = teacher, student
        self._debounce.start()

    def _changed(self, key: str) -> None:
        if key in REPLAN_ON:
            self._debounce.start()

    def ready(self) -> bool:
        cfg = self.store.config
        return bool(cfg.teacher.model and cfg.student.model and
                    (cfg.student.model != "teacher" or cfg.student.keep_layers))

    def replan(self) -> None:
        if not self.ready():
            self.plan = None
            theme.set_badge(self.badge, "idle", "no plan yet")
            self.summary.setText("Choose a teacher and a student to see whether they fit.")
            self.advice.setVisible(False)
            self.items.setVisible(False)
            return
        theme.set_badge(self.badge, "idle", "planning…")
        self.runner.run("plan", tasks.plan, self.store.snapshot(), self.teacher_info, self.student_info,
                        on_done=self._planned, on_error=self._failed)

    def _planned(self, plan: Any) -> None:
        self.plan = plan
        if plan.fits:
            theme.set_badge(self.badge, "ok", "fits")
        else:
            theme.set_badge(self.badge, "error", "does not fit")
        where = f"{human_bytes(plan.available_bytes)} free on {plan.device}" if plan.available_bytes else \
            f"unknown free memory on {plan.device}"
        verdict = "it fits" if plan.fits else ("it does not fit" if plan.available_bytes else "cannot tell")
        self.summary.setText(f"Needs about <b>{human_bytes(plan.needed_bytes)}</b> of {where}: {verdict}.")
        c = theme.current_colors()
        rows = "".join(f'<tr><td>{html.escape(item.name)}</td><td align="right" style="padding:0 10px">'
                       f'{human_bytes(item.bytes)}</td><td style="color:{c.muted}">{html.escape(item.note)}</td></tr>'
                       for item in plan.items)
        phase = getattr(plan, "teacher_phase", [])  # a cached / answering teacher runs alone first
        if phase:
            rows += (f'<tr><td colspan="3" style="padding-top:6px">Before training, the teacher alone: '
                     f'{human_bytes(sum(item.bytes for item in phase))}</td></tr>')
            rows += "".join(f'<tr><td>{html.escape(item.name)}</td><td align="right" style="padding:0 10px">'
                            f'{human_bytes(item.bytes)}</td><td></td></tr>' for item in phase)
        self.items.setText(f"<table>{rows}</table>")
        self.items.setVisible(True)
        advice = list(getattr(plan, "advice", []) or [])
        heading = "To make it fit:" if not plan.fits else "To save memory:"
        self.advice.setText(heading + "\n" + "\n".join(f"• {a}" for a in advice) if advice else "")
        self.advice.setVisible(bool(advice))

    def _failed(self, error: ErrorInfo) -> None:
        self.plan = None
        theme.set_badge(self.badge, "warn", "cannot plan")
        self.summary.setText(error.message)
        self.advice.setVisible(False)
        self.items.setVisible(False)
