"""Training metrics as growing series, fed from engine events or a run's metrics.jsonl (Qt-free).

The plots never read events directly: events append here (cheap, any rate), and a ~10 Hz timer
copies the series into the plot curves (Friture's pattern).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any, Iterable

from distill_gui.events import EvalMetrics, StepMetrics

# series name -> (event kind, attribute)
STEP_SERIES = {
    "loss": "loss", "kd": "kd", "ce": "ce", "agreement": "agreement", "lr": "lr",
    "tokens_per_s": "tokens_per_s", "memory_gib": "memory_bytes", "grad_norm": "grad_norm",
}
EVAL_SERIES = {"eval_loss": "loss", "eval_kd": "kd", "eval_ce": "ce", "eval_agreement": "agreement",
               "eval_perplexity": "perplexity"}
_STEP_FIELDS = {f.name for f in fields(StepMetrics)}
_EVAL_FIELDS = {f.name for f in fields(EvalMetrics)}


class MetricsBuffer:
    """x = optimizer step, y = metric; one pair of lists per series."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[list[float], list[float]]] = {}
        self.version = 0                      # bumps on every change; the plot timer compares it
        self.last_step: StepMetrics | None = None
        self.last_eval: EvalMetrics | None = None

    def clear(self) -> None:
        self._data.clear()
        self.last_step = self.last_eval = None
        self.version += 1

    def _append(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(y):
            return
        xs, ys = self._data.setdefault(name, ([], []))
        xs.append(float(x))
        ys.append(float(y))

    def add(self, event: Any) -> bool:
        """Append a StepMetrics or EvalMetrics; returns False for any other event."""
        if isinstance(event, StepMetrics):
            for name, attr in STEP_SERIES.items():
                value = getattr(event, attr)
                if name == "memory_gib":
                    value = value / (1 << 30)
                self._append(name, event.step, value)
            self.last_step = event
        elif isinstance(event, EvalMetrics):
            for name, attr in EVAL_SERIES.items():
                self._append(name, event.step, getattr(event, attr))
            self.last_eval = event
        else:
            return False
        self.version += 1
        return True

    def arrays(self, name: str):
        """(steps, values) of a series as float arrays (numpy loads on first use, not at startup)."""
        import numpy as np

        xs, ys = self._data.get(name, ([], []))
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def names(self) -> list[str]:
        return sorted(self._data)

    def __len__(self) -> int:
        return len(self._data.get("loss", ((), ()))[0])


def event_from_record(record: dict[str, Any]) -> StepMetrics | EvalMetrics | None:
    """Rebuild a StepMetrics / EvalMetrics from one metrics.jsonl object (unknown records -> None).

    A record is an eval record when it says so (``"type"``/``"kind"``/``"event"`` of "eval") or
    carries ``perplexity``; a step record carries ``tokens_per_s``.
    """
    kind = str(record.get("type") or record.get("kind") or record.get("event") or "").lower()
    if "eval" in kind or ("perplexity" in record and "tokens_per_s" not in record):
        cls, names = EvalMetrics, _EVAL_FIELDS
    elif "step" in kind or "tokens_per_s" in record:
        cls, names = StepMetrics, _STEP_FIELDS
    else:
        return None
    values = {name: record.get(name) for name in names}
    if values.get("step") is None:
        return None
    for name in names:
        if values[name] is None:
            values[name] = _default_for(cls, name)
    try:
        return cls(**values)
    except TypeError:
        return None


def _default_for(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return 0 if name in ("step", "total_steps", "memory_bytes") else float("nan")


def buffer_from_records(records: Iterable[dict[str, Any]]) -> MetricsBuffer:
    buffer = MetricsBuffer()
    for record in records:
        event = event_from_record(record)
        if event is not None:
            buffer.add(event)
    return buffer
