"""What the report shows: one line per model (``ModelResult``) and the whole evaluation (``RunEvaluation``).

Plain dataclasses, so both the evaluation that fills them and the Markdown that renders them import this
module and not each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distill_gui.engine.evaluation.evaluate import Sample, TokenScores
from distill_gui.paths import json_safe

ROLE_LABELS = {"teacher": "Teacher", "before": "Student before", "after": "Student after", "control": "CE control"}


@dataclass
class ModelResult:
    """One model's line in the report."""

    role: str                          # "teacher" | "before" | "after" | "control"
    label: str
    path: str
    parameters: int
    weights_bytes: int
    gguf_bytes: int | None = None
    scores: TokenScores | None = None
    tokens_per_s: float | None = None


@dataclass
class RunEvaluation:
    """Everything the report shows, measured now."""

    run_dir: str
    name: str
    teacher: str
    student: str
    loss: str
    temperature: float
    alpha: float
    steps: int
    device: str
    data: str                          # where the scored examples come from
    examples: int
    models: list[ModelResult] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, dict[str, float]] = field(default_factory=dict)   # metric -> role -> value (e.g. the demo's)

    def model(self, role: str) -> ModelResult | None:
        return next((m for m in self.models if m.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))

