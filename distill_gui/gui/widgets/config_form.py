"""Form editors bound to RunConfig keys, built from the field metadata in config.py.

``ConfigForm(store, ["train.lr", "train.batch_size", ...])`` makes one row per key: the label
from LABELS, the editor from the field's type and ``choices`` / ``min`` / ``max``, and the field's
one-sentence ``help`` as the tooltip. An edit goes through ``ConfigStore.set``; a value the
config rejects marks the editor red with the config's own message as its tooltip.
"""

from __future__ import annotations

import math
from dataclasses import Field, fields
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit, QSpinBox, QWidget

from distill_gui.config import SECTIONS, TOP_LEVEL
from distill_gui.errors import ConfigError
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.theme import set_invalid

LABELS = {
    "name": "Run name", "output_dir": "Runs folder",
    "distill.loss": "Loss", "distill.temperature": "Temperature", "distill.alpha": "Alpha (KD weight)",
    "distill.beta": "Beta (JSD)", "distill.skew": "Skew", "distill.top_k": "Top-k",
    "distill.top_k_mode": "Top-k mode", "distill.chunk_tokens": "Loss chunk (tokens)",
    "train.max_steps": "Steps", "train.epochs": "Epochs", "train.batch_size": "Batch size",
    "train.grad_accum": "Accumulation", "train.lr": "Learning rate", "train.warmup_steps": "Warm-up steps",
    "train.scheduler": "Schedule", "train.weight_decay": "Weight decay", "train.max_grad_norm": "Clip grad norm",
    "train.optimizer": "Optimizer", "train.seed": "Seed", "train.device": "Device", "train.precision": "Precision",
    "train.gradient_checkpointing": "Gradient checkpointing", "train.log_every": "Log every",
    "train.eval_every": "Evaluate every", "train.save_every": "Checkpoint every",
    "train.keep_checkpoints": "Keep checkpoints",
    "student.lora_rank": "LoRA rank", "student.lora_alpha": "LoRA alpha",
    "data.max_length": "Max length", "data.loss_on": "Learn on", "data.eval_fraction": "Eval fraction",
    "teacher.dtype": "Teacher dtype", "teacher.load_in": "Teacher loading",
    "export.type": "GGUF type", "export.ollama_name": "Ollama name", "export.quantize": "Quantize",
}
# Free-text keys offered with common values (any other value is still accepted).
SUGGESTIONS = {"train.device": ("auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps")}
SPIN_MAX = 10_000_000


def field_of(key: str) -> Field | None:
    """The dataclass field behind a dotted key (None for the top-level keys)."""
    section, _, name = key.rpartition(".")
    if not section:
        return None
    return next(f for f in fields(SECTIONS[section]) if f.name == name)


def help_of(key: str) -> str:
    f = field_of(key)
    return TOP_LEVEL[key] if f is None else f.metadata["help"]


def label_of(key: str) -> str:
    return LABELS.get(key) or key.rpartition(".")[2].replace("_", " ").capitalize()


# ---- editors: each has value_edited(object) and set_value(value) ---------------------------


class BoolEditor(QCheckBox):
    value_edited = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.toggled.connect(lambda on: self.value_edited.emit(bool(on)))

    def set_value(self, value: Any) -> None:
        self.blockSignals(True)
        self.setChecked(bool(value))
        self.blockSignals(False)


class ChoiceEditor(QComboBox):
    value_edited = Signal(object)

    def __init__(self, choices: tuple) -> None:
        super().__init__()
        for choice in choices:
            self.addItem(choice if choice != "" else "(none)", choice)
        self.currentIndexChanged.connect(lambda i: self.value_edited.emit(self.itemData(i)))

    def set_value(self, value: Any) -> None:
        self.blockSignals(True)
        self.setCurrentIndex(max(0, self.findData(value)))
        self.blockSignals(False)


class IntEditor(QSpinBox):
    value_edited = Signal(object)

    def __init__(self, meta: dict) -> None:
        super().__init__()
        self.setRange(int(meta.get("min", -SPIN_MAX)), int(meta.get("max", SPIN_MAX)))
        self.setKeyboardTracking(False)        # one edit per finished number, not per keystroke
        self.setAccelerated(True)
        self.valueChanged.connect(lambda v: self.value_edited.emit(int(v)))

    def set_value(self, value: Any) -> None:
        self.blockSignals(True)
        self.setValue(int(value))
        self.blockSignals(False)


class FloatSpinEditor(QDoubleSpinBox):
    """Bounded floats (alpha, beta, skew, eval fraction): a spin box with 0.05 steps."""

    value_edited = Signal(object)

    def __init__(self, meta: dict) -> None:
        super().__init__()
        self.setDecimals(3)
        self.setSingleStep(0.05)
        self.setRange(float(meta.get("min", 0.0)), float(meta.get("max", 1.0)))
        self.setKeyboardTracking(False)
        self.valueChanged.connect(lambda v: self.value_edited.emit(float(v)))

    def set_value(self, value: Any) -> None:
        self.blockSignals(True)
        self.setValue(float(value))
        self.blockSignals(False)


class FloatTextEditor(QLineEdit):
    """Unbounded floats (learning rate, temperature): typed, scientific notation allowed."""

    value_edited = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        validator = QDoubleValidator(self)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.setValidator(validator)
        self.editingFinished.connect(self._finish)

    def _finish(self) -> None:
        try:
            value = float(self.text().strip().replace(",", "."))
        except ValueError:
            set_invalid(self, True)
            self.setToolTip(f"'{self.text()}' is not a number.")
            return
        if math.isfinite(value):
            self.value_edited.emit(value)

    def set_value(self, value: Any) -> None:
        self.setText(f"{float(value):g}")


class TextEditor(QLineEdit):
    value_edited = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.editingFinished.connect(lambda: self.value_edited.emit(self.text().strip()))

    def set_value(self, value: Any) -> None:
        if self.text() != str(value):
            self.setText(str(value))


class SuggestEditor(QComboBox):
    """Free text with a list of common values (device: auto, cpu, cuda:0...)."""

    value_edited = Signal(object)

    def __init__(self, suggestions: tuple) -> None:
        super().__init__()
        self.setEditable(True)
        self.addItems(list(suggestions))
        self.lineEdit().editingFinished.connect(lambda: self.value_edited.emit(self.currentText().strip()))
        self.activated.connect(lambda _i: self.value_edited.emit(self.currentText().strip()))

    def set_value(self, value: Any) -> None:
        self.blockSignals(True)
        self.setCurrentText(str(value))
        self.blockSignals(False)


class IntListEditor(QLineEdit):
    """Lists of layer indices, typed as ``0, 2, 4``."""

    value_edited = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.setPlaceholderText("e.g. 0, 2, 4")
        self.editingFinished.connect(self._finish)

    def _finish(self) -> None:
        try:
            values = [int(part) for part in self.text().replace(";", ",").split(",") if part.strip()]
        except ValueError:
            set_invalid(self, True)
            self.setToolTip("Write whole numbers separated by commas, e.g. 0, 2, 4.")
            return
        self.value_edited.emit(values)

    def set_value(self, value: Any) -> None:
        self.setText(", ".join(str(v) for v in value))


def make_editor(key: str) -> QWidget:
    """The editor that fits the field's type and metadata."""
    f = field_of(key)
    if f is None:
        return TextEditor()
    meta, typ = dict(f.metadata), f.type if isinstance(f.type, str) else f.type.__name__
    if key in SUGGESTIONS:
        return SuggestEditor(SUGGESTIONS[key])
    if typ == "bool":
        return BoolEditor()
    if meta.get("choices"):
        return ChoiceEditor(meta["choices"])
    if typ == "int":
        return IntEditor(meta)
    if typ == "float":
        return FloatSpinEditor(meta) if "max" in meta else FloatTextEditor()
    if typ == "list":
        return IntListEditor()
    return TextEditor()


# ---- binding ---------------------------------------------------------------------------------


class BoundField:
    """Keeps one editor and one config key in step, both ways."""

    def __init__(self, store: ConfigStore, key: str, editor: QWidget | None = None) -> None:
        self.store, self.key = store, key
        self.editor = editor or make_editor(key)
        self.help = help_of(key)
        self.editor.setToolTip(self.help)
        self.editor.setObjectName(f"field:{key}")
        self.editor.value_edited.connect(self._edited)
        store.changed.connect(self._changed)
        self.editor.set_value(store.get(key))

    def _edited(self, value: Any) -> None:
        try:
            self.store.set(self.key, value)
        except ConfigError as exc:
            set_invalid(self.editor, True)
            self.editor.setToolTip(f"{exc.message}\n\n{self.help}")
            return
        set_invalid(self.editor, False)
        self.editor.setToolTip(self.help)

    def _changed(self, key: str) -> None:
        if key in ("", self.key):
            self.editor.set_value(self.store.get(self.key))
            set_invalid(self.editor, False)
            self.editor.setToolTip(self.help)


class ConfigForm(QWidget):
    """A form of labelled, bound editors for the given dotted keys."""

    def __init__(self, store: ConfigStore, keys: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields: dict[str, BoundField] = {}
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.setLabelAlignment(layout.labelAlignment())
        layout.setContentsMargins(4, 4, 4, 4)
        for key in keys:
            bound = BoundField(store, key)
            label = QLabel(label_of(key))
            label.setToolTip(bound.help)
            label.setBuddy(bound.editor)
            layout.addRow(label, bound.editor)
            self.fields[key] = bound

    def editor(self, key: str) -> QWidget:
        return self.fields[key].editor
