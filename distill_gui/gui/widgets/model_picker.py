"""Teacher / student picker: a hub id, a local folder, a cached model, or (student) derived layers.

The model field is an editable combo box: type a hub id or a path, pick a model from the local
HF cache in its list, or Browse... for a folder. Check resolves the reference in a worker
(``engine.models.inspect_model``, downloading config and tokenizer with progress when needed) and
shows what it found. Local folders are checked as soon as they are entered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.config import ollama_model
from distill_gui.errors import ConfigError
from distill_gui.formatting import human_bytes, human_count
from distill_gui.gui import tasks, theme
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo
from distill_gui.gui.widgets.layer_chooser import LayerChooser
from distill_gui.gui.workers import TaskRunner

INFO_ROWS = ("Architecture", "Parameters", "Layers", "Vocabulary", "Chat template", "Location")


class ModelPicker(QGroupBox):
    """Edits ``<role>.model`` (and for the student ``keep_layers``); reports ``info_changed``."""

    info_changed = Signal(object)         # ModelInfo, or None when unknown / failed

    def __init__(self, role: str, store: ConfigStore, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__("Teacher" if role == "teacher" else "Student", parent)
        self.role, self.store, self.runner = role, store, runner
        self.info: Any = None
        self.teacher_info: Any = None      # the student picker needs it for derived students
        self._checked_ref: str | None = None
        self._build()
        store.changed.connect(self._config_changed)
        self._config_changed("")

    # ---- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.ref = QComboBox()
        self.ref.setEditable(True)
        self.ref.setObjectName(f"{self.role}Ref")
        self.ref.setMinimumContentsLength(24)
        self.ref.lineEdit().setPlaceholderText("hub id (Qwen/Qwen2.5-1.5B-Instruct) or a local folder")
        self.ref.setToolTip(tasks_help(self.role))
        self.ref.lineEdit().editingFinished.connect(self._ref_edited)
        self.ref.activated.connect(lambda _i: self._ref_edited())
        self.browse = QPushButton("Folder…")
        self.browse.setToolTip("Choose a local Hugging Face model folder (with config.json).")
        self.browse.clicked.connect(self._browse)
        self.check = QPushButton("Check")
        self.check.setObjectName(f"{self.role}Check")
        self.check.setToolTip("Resolve the model (downloading its config and tokenizer if needed) and show "
                              "its size, architecture, vocabulary and chat template.")
        self.check.clicked.connect(self.check_now)
        row = QHBoxLayout()
        row.addWidget(self.ref, 1)
        row.addWidget(self.browse)
        row.addWidget(self.check)

        self.derive = QCheckBox("Derive from the teacher (keep some of its layers)")
        self.derive.setToolTip("Make the student from a subset of the teacher's decoder layers, "
                               "initialised with the teacher's weights (DistilBERT-style).")
        self.derive.toggled.connect(self._derive_toggled)
        self.layers = LayerChooser()
        self.layers.selection_changed.connect(self._layers_edited)

        self.status = QLabel()
        theme.set_badge(self.status, "idle", "not checked")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setTextVisible(True)
        self.values: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 4, 0, 0)
        for name in INFO_ROWS:
            value = QLabel("–")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(name, value)
            self.values[name] = value
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setProperty("muted", True)
        self.notes.setVisible(False)

        status_row = QHBoxLayout()
        status_row.addWidget(self.status)
        status_row.addWidget(self.progress, 1)
        status_row.addStretch(0)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        if self.role == "student":
            layout.addWidget(self.derive)
            layout.addWidget(self.layers)
        layout.addLayout(status_row)
        layout.addLayout(form)
        layout.addWidget(self.notes)
        layout.addStretch(1)
        self.layers.setVisible(False)

    # ---- config <-> widgets --------------------------------------------------------------------
    def _config_changed(self, key: str) -> None:
        model_key = f"{self.role}.model"
        if key not in ("", model_key, "student.keep_layers"):
            return
        ref = self.store.get(model_key)
        derived = self.role == "student" and ref == "teacher"
        self.derive.blockSignals(True)
        self.derive.setChecked(derived)
        self.derive.blockSignals(False)
        self._show_derived(derived)
        if derived:
            self.layers.set_selected(self.store.get("student.keep_layers"))
            self._show_derived_info()
        elif self.ref.currentText() != ref:
            self.ref.setEditText(ref)
        if not derived and key in ("", model_key) and ref and ref != self._checked_ref:
            self._forget_info()
            if Path(ref).expanduser().is_dir() or ollama_model(ref) is not None:
                self.check_now()

    def _ref_edited(self) -> None:
        ref = self.ref.currentText().strip()
        index = self.ref.currentIndex()
        if index >= 0 and self.ref.itemText(index) == ref and self.ref.itemData(index):
            ref = self.ref.itemData(index)  # a cached model: keep its hub id
        try:
            self.store.set(f"{self.role}.model", ref)
        except ConfigError as exc:
            self._show_error(ErrorInfo(exc.message))

    def _browse(self) -> None:
        start = self.ref.currentText() if Path(self.ref.currentText()).is_dir() else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, f"Choose the {self.role} model folder", start)
        if folder:
            self.ref.setEditText(folder)
            self._ref_edited()

    def _derive_toggled(self, on: bool) -> None:
        if on:
            keep = self.layers.selected() or self.store.get("student.keep_layers")
            self.store.set_many({"student.model": "teacher", "student.keep_layers": list(keep)})
        else:
            self.store.set_many({"student.model": "", "student.keep_layers": []})
            self.ref.setEditText("")

    def _layers_edited(self, layers: list[int]) -> None:
        self.store.set("student.keep_layers", layers)

    def _show_derived(self, derived: bool) -> None:
        for widget in (self.ref, self.browse, self.check):
            widget.setEnabled(not derived)
        self.layers.setVisible(derived)

    # ---- the teacher's info, for derived students ---------------------------------------------
    def set_teacher_info(self, info: Any) -> None:
        self.teacher_info = info
        count = int(getattr(info, "layers", 0) or 0) if info is not None else 0
        if count != self.layers.layer_count():
            self.layers.set_layer_count(count, self.store.get("student.keep_layers"))
        if self.role == "student" and self.store.get("student.model") == "teacher":
            self._show_derived_info()

    def _show_derived_info(self) -> None:
        keep = self.store.get("student.keep_layers")
        teacher = self.teacher_info
        if teacher is None:
            theme.set_badge(self.status, "idle", "check the teacher")
            self._fill({"Architecture": "–", "Parameters": "–", "Layers": f"{len(keep)} (from the teacher)",
                        "Vocabulary": "the teacher's", "Chat template": "the teacher's", "Location": "–"})
            self.info_changed.emit(None)
            return
        params = tasks.derived_parameters(teacher, len(keep))
        theme.set_badge(self.status, "ok" if keep else "warn", "derived" if keep else "choose layers")
        self._fill({
            "Architecture": teacher.architecture,
            "Parameters": f"≈ {human_count(params)} (estimated)",
            "Layers": f"{len(keep)} of the teacher's {teacher.layers}: {', '.join(map(str, keep)) or 'none yet'}",
            "Vocabulary": _vocab_text(teacher),
            "Chat template": "yes (the teacher's)" if teacher.chat_template else "no",
            "Location": "made from the teacher when training starts",
        })
        self.info = _DerivedInfo(params, len(keep), teacher)
        self.info_changed.emit(self.info)

    # ---- checking -----------------------------------------------------------------------------
    def check_now(self) -> None:
        ref = self.store.get(f"{self.role}.model")
        if not ref or ref == "teacher":
            return
        self._checked_ref = ref
        if ollama_model(ref) is not None:  # served by Ollama: nothing local to inspect
            from distill_gui.gui.widgets.ollama_teachers import describe_ollama_teacher

            theme.set_badge(self.status, "ok", "Ollama teacher")
            self._fill(describe_ollama_teacher(ref))
            return
        theme.set_badge(self.status, "idle", "checking…")
        self.check.setEnabled(False)
        trust = self.store.get(f"{self.role}.trust_remote_code")
        self.runner.run(f"inspect:{self.role}", tasks.inspect, ref, trust_remote_code=trust,
                        on_done=self._checked, on_error=self._check_failed, on_progress=self._progress)

    def _progress(self, event: Any) -> None:
        done, total = getattr(event, "done", 0), getattr(event, "total", None)
        self.progress.setVisible(True)
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.progress.setFormat(f"{getattr(event, 'phase', '')} {human_bytes(done)} / {human_bytes(total)}")
        else:
            self.progress.setRange(0, 0)

    def _checked(self, info: Any) -> None:
        self.check.setEnabled(True)
        self.progress.setVisible(False)
        self.info = info
        theme.set_badge(self.status, "ok", "ready")
        exact = "" if getattr(info, "parameters_exact", True) else " (estimated)"
        self._fill({
            "Architecture": f"{info.architecture} ({info.model_type})",
            "Parameters": f"{human_count(info.parameters)}{exact}",
            "Layers": f"{info.layers} × hidden {info.hidden_size}, {info.attention_heads} heads "
                      f"({info.kv_heads} KV)",
            "Vocabulary": _vocab_text(info),
            "Chat template": "yes" if info.chat_template else "no (plain text only)",
            "Location": info.path,
        })
        self.notes.setText("\n".join(info.notes))
        self.notes.setVisible(bool(info.notes))
        self.info_changed.emit(info)

    def _check_failed(self, error: ErrorInfo) -> None:
        self.check.setEnabled(True)
        self.progress.setVisible(False)
        self._show_error(error)

    def _show_error(self, error: ErrorInfo) -> None:
        self.info = None
        theme.set_badge(self.status, "error", "problem")
        self.notes.setText(error.message)
        self.notes.setVisible(True)
        self.info_changed.emit(None)

    def _forget_info(self) -> None:
        self.info = None
        self._checked_ref = None
        theme.set_badge(self.status, "idle", "not checked")
        self._fill({name: "–" for name in INFO_ROWS})
        self.notes.setVisible(False)
        self.info_changed.emit(None)

    def _fill(self, values: dict[str, str]) -> None:
        for name, text in values.items():
            self.values[name].setText(text)

    # ---- cached models ------------------------------------------------------------------------
    def set_cached_models(self, models: list) -> None:
        """Offer the local HF cache's models in the combo's list (the typed text stays)."""
        text = self.ref.currentText()
        self.ref.blockSignals(True)
        self.ref.clear()
        for model in models:
            size = human_bytes(model.size_bytes) if getattr(model, "size_bytes", 0) else ""
            label = f"{model.repo_id}" + (f"   ({size})" if size else "")
            self.ref.addItem(label, model.repo_id)
        self.ref.setEditText(text)
        self.ref.blockSignals(False)


class _DerivedInfo:
    """What the pair panel needs to know about a derived student (no folder exists yet)."""

    def __init__(self, parameters: int, layers: int, teacher: Any) -> None:
        self.parameters = parameters
        self.parameters_exact = False
        self.layers = layers
        self.derived = True
        self.tokenizer_vocab = getattr(teacher, "tokenizer_vocab", None)


def _vocab_text(info: Any) -> str:
    tokens = info.tokenizer_vocab
    rows = info.vocab_rows
    if tokens is None:
        return f"{rows:,} embedding rows (no tokenizer found)"
    if rows and rows != tokens:
        return f"{tokens:,} tokens ({rows:,} embedding rows)"
    return f"{tokens:,} tokens"


def tasks_help(role: str) -> str:
    if role == "teacher":
        return ("The big model to learn from: a Hugging Face hub id, a local model folder, a model "
                "from your HF cache (open the list), or ollama:<name> for a model served by Ollama.")
    return ("The small model to train: a hub id, a local folder, a cached model, or derive it from the "
            "teacher's layers below.")
