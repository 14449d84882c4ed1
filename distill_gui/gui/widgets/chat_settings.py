"""System prompt and sampling settings for a chat pane (or for both panes at once)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QWidget

DEFAULTS = {"system": "", "temperature": 0.7, "num_ctx": 4096, "seed": -1, "num_predict": 1024}


class ChatSettingsForm(QWidget):
    """One row: system prompt, temperature, context window, seed, max tokens; ``changed`` on any edit."""

    changed = Signal()

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.system = QLineEdit()
        self.system.setObjectName(f"{name}System")
        self.system.setPlaceholderText("System prompt (empty: the model's own)")
        self.system.setToolTip("Sent as the first message; empty keeps the SYSTEM of the model's Modelfile.")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setToolTip("Sampling temperature; 0 always picks the most likely token.")
        self.num_ctx = QSpinBox()
        self.num_ctx.setRange(256, 1_048_576)
        self.num_ctx.setSingleStep(1024)
        self.num_ctx.setToolTip("Context window (num_ctx). Keep it the same across messages: changing it "
                                "makes Ollama reload the model.")
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2_147_483_647)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("Sampling seed; with a fixed seed the same prompt gives the same reply.")
        self.num_predict = QSpinBox()
        self.num_predict.setRange(-1, 1_000_000)
        self.num_predict.setSingleStep(256)
        self.num_predict.setSpecialValueText("unlimited")
        self.num_predict.setToolTip("Longest reply in tokens (num_predict); a model that never stops is cut here.")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.system, 3)
        for text, widget in (("Temp", self.temperature), ("Context", self.num_ctx), ("Seed", self.seed),
                             ("Max tokens", self.num_predict)):
            label = QLabel(text)
            label.setProperty("muted", True)
            label.setBuddy(widget)
            layout.addWidget(label)
            layout.addWidget(widget)
        self.set_values(DEFAULTS)
        self.system.textChanged.connect(self.changed)
        for spin in (self.temperature, self.num_ctx, self.seed, self.num_predict):
            spin.valueChanged.connect(self.changed)

    def values(self) -> dict[str, Any]:
        return {"system": self.system.text(), "temperature": round(self.temperature.value(), 4),
                "num_ctx": self.num_ctx.value(), "seed": self.seed.value(), "num_predict": self.num_predict.value()}

    def set_values(self, values: dict[str, Any]) -> None:
        merged = {**DEFAULTS, **{k: v for k, v in values.items() if k in DEFAULTS}}
        self.system.setText(str(merged["system"]))
        self.temperature.setValue(float(merged["temperature"]))
        self.num_ctx.setValue(int(merged["num_ctx"]))
        self.seed.setValue(int(merged["seed"]))
        self.num_predict.setValue(int(merged["num_predict"]))

    def options(self) -> dict[str, Any]:
        """Ollama request options: temperature and num_ctx always; seed and num_predict when set."""
        return request_options(self.values())


def request_options(values: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"temperature": values["temperature"], "num_ctx": values["num_ctx"]}
    if values["seed"] >= 0:
        options["seed"] = values["seed"]
    if values["num_predict"] > 0:
        options["num_predict"] = values["num_predict"]
    return options
