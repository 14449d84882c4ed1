"""Teacher options beyond a local Hugging Face model: Ollama models as black-box teachers, the cache.

``OllamaTeacherBox`` lists the models of the Ollama server (the app settings' host) in a worker;
"Use as teacher" (or a double click) sets ``teacher.model = "ollama:<name>"``. Its form holds the
generation keys (``teacher.gen_*``, ``teacher.top_logprobs``): with an Ollama teacher the data file
holds prompts, and the teacher's answers are generated, and stored in the run folder, before training.

``TeacherCacheBox`` edits ``teacher.cache_top_k`` / ``cache_dtype``: an HF teacher that runs once
over the data before training, so that it never shares the GPU with the student.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.config import ollama_model, ollama_ref
from distill_gui.formatting import human_bytes
from distill_gui.gui import theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo
from distill_gui.gui.widgets.config_form import BoundField
from distill_gui.gui.workers import TaskRunner

GENERATION_KEYS = (("teacher.top_logprobs", "Log-probabilities (0-20)"),
                   ("teacher.gen_temperature", "Answer temperature"), ("teacher.gen_max_tokens", "Max answer tokens"),
                   ("teacher.gen_num_ctx", "Context window (num_ctx)"), ("teacher.gen_parallel", "Prompts at once"),
                   ("teacher.gen_seed", "Answer seed"), ("teacher.gen_think", "Let it think first"))
CACHE_KEYS = (("teacher.cache_top_k", "Cache top-k (0 = live teacher)"), ("teacher.cache_dtype", "Cache storage"))


def list_teacher_models() -> list:
    """The Ollama server's models that can write answers (embedding-only models left out); worker side."""
    from distill_gui.ollama import OllamaClient

    with OllamaClient() as client:
        return [m for m in client.list_models() if not m.capabilities or "completion" in m.capabilities]


def _form(store: ConfigStore, keys: tuple[tuple[str, str], ...]) -> tuple[QFormLayout, dict[str, BoundField]]:
    layout = QFormLayout()
    layout.setContentsMargins(0, 4, 0, 0)
    fields = {}
    for key, label_text in keys:
        bound = BoundField(store, key)
        label = QLabel(label_text)
        label.setToolTip(bound.help)
        label.setBuddy(bound.editor)
        layout.addRow(label, bound.editor)
        fields[key] = bound
    return layout, fields


class OllamaTeacherBox(QGroupBox):
    """The Ollama server's models as teachers, and how the teacher answers."""

    def __init__(self, store: ConfigStore, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__("Ollama teacher (black-box)", parent)
        self.store, self.runner = store, runner
        self.models = QListWidget()
        self.models.setObjectName("ollamaModels")
        self.models.setMaximumHeight(140)
        self.models.itemDoubleClicked.connect(lambda _item: self.use_selected())
        self.models.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.status = QLabel()
        theme.set_badge(self.status, "idle", "not listed yet")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("List the models of the Ollama server (Settings: Ollama address).")
        self.refresh_button.clicked.connect(self.refresh)
        self.use_button = QPushButton("Use as teacher")
        self.use_button.setObjectName("useOllamaTeacher")
        self.use_button.setToolTip("The student learns from this model's answers to the prompts in the data file, "
                                   "and from its log-probabilities when its tokens line up with the student's.")
        self.use_button.clicked.connect(self.use_selected)
        explain = QLabel("With an Ollama teacher the data file holds prompts ({\"prompt\"} or {\"messages\"} rows). "
                         "The teacher answers them before training; the answers are kept in the run folder, so a "
                         "stopped run never asks twice.")
        explain.setWordWrap(True)
        explain.setProperty("muted", True)
        form, self.fields = _form(store, GENERATION_KEYS)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.models)
        layout.addLayout(buttons)
        layout.addWidget(explain)
        layout.addLayout(form)
        store.changed.connect(self._config_changed)
        self._update_buttons()

    def refresh(self) -> None:
        theme.set_badge(self.status, "idle", "listing…")
        self.refresh_button.setEnabled(False)
        self.runner.run("ollama-models", list_teacher_models, on_done=self._listed, on_error=self._failed,
                        heavy=False)

    def _listed(self, models: list) -> None:
        self.refresh_button.setEnabled(True)
        current = self._current_name()
        self.models.clear()
        for model in models:
            details = " · ".join(x for x in (model.parameter_size, model.quantization_level, model.family,
                                             human_bytes(model.size) if model.size else "") if x)
            item = QListWidgetItem(f"{model.name}   {details}".rstrip())
            item.setData(Qt.ItemDataRole.UserRole, model.name)
            item.setToolTip(f"{model.name}: {details}; capabilities: {', '.join(model.capabilities) or '?'}")
            self.models.addItem(item)
            if model.name == current:
                self.models.setCurrentItem(item)
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        theme.set_badge(self.status, "ok" if models else "warn", count if models else "no models: ollama pull …")
        self._update_buttons()

    def _failed(self, error: ErrorInfo) -> None:
        self.refresh_button.setEnabled(True)
        self.models.clear()
        theme.set_badge(self.status, "error", "Ollama not reachable")
        self.status.setToolTip(error.message)
        self._update_buttons()

    def use_selected(self) -> None:
        item = self.models.currentItem()
        if item is not None:
            self.store.set("teacher.model", ollama_ref(item.data(Qt.ItemDataRole.UserRole)))

    def _current_name(self) -> str:
        ref = self.store.get("teacher.model")
        return ollama_model(ref) or ""

    def _config_changed(self, key: str) -> None:
        if key in ("", "teacher.model"):
            name = self._current_name()
            for row in range(self.models.count()):
                item = self.models.item(row)
                if item.data(Qt.ItemDataRole.UserRole) == name:
                    self.models.setCurrentItem(item)
            self._update_buttons()

    def _update_buttons(self) -> None:
        item = self.models.currentItem()
        chosen = item is not None and ollama_ref(item.data(Qt.ItemDataRole.UserRole)) == \
            self.store.get("teacher.model")
        self.use_button.setEnabled(item is not None and not chosen)
        self.use_button.setText("Teacher ✓" if chosen else "Use as teacher")
        ollama = bool(self._current_name())
        for bound in self.fields.values():
            bound.editor.setEnabled(ollama or bool(self.store.get("teacher.generate")))


class TeacherCacheBox(QGroupBox):
    """``teacher.cache_top_k``: run an HF teacher once, alone, and train from its cached top-k."""

    def __init__(self, store: ConfigStore, parent: QWidget | None = None) -> None:
        super().__init__("Teacher cache (small GPUs)", parent)
        self.store = store
        explain = QLabel("Instead of running next to the student, the teacher runs once over the data, stores its "
                         "top-k log-probabilities on disk (about 6 bytes per entry and token) and is freed; "
                         "training reads the cache. The Memory plan shows both phases.")
        explain.setWordWrap(True)
        explain.setProperty("muted", True)
        form, self.fields = _form(store, CACHE_KEYS)
        layout = QVBoxLayout(self)
        layout.addWidget(explain)
        layout.addLayout(form)
        store.changed.connect(self._config_changed)
        self._config_changed("")

    def _config_changed(self, key: str) -> None:
        if key in ("", "teacher.model"):
            hf_teacher = ollama_model(self.store.get("teacher.model")) is None
            for bound in self.fields.values():
                bound.editor.setEnabled(hf_teacher)


def describe_ollama_teacher(ref: str) -> dict[str, Any]:
    """The picker's info rows for an ``ollama:`` teacher (nothing to inspect locally)."""
    return {"Architecture": "served by Ollama (black-box: answers and log-probabilities)",
            "Parameters": "–", "Layers": "–", "Vocabulary": "the teacher's own (compared answer by answer)",
            "Chat template": "the model's, applied by Ollama", "Location": ref}
