"""Run folders as the Runs page lists them (Qt-free).

A run folder (distill_gui/runfolder.py) holds ``config.toml``, ``metrics.jsonl``, ``checkpoints/step-N/`` and, once
the run ended, ``final/``. Its status is read from what is there:

- finished:    ``final/`` exists and the last logged step reached the run's total
- stopped:     ``final/`` exists but fewer steps ran (the user pressed Stop; resumable)
- interrupted: checkpoints but no ``final/`` (a crash, a kill, a closed app): resumable
- running:     the folder the app is training into right now
- not started: no checkpoint and no final model
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from distill_gui import runfolder
from distill_gui.config import read_toml
from distill_gui.errors import ConfigError
from distill_gui.paths import read_jsonl_objects
from distill_gui.runfolder import RunFolder, has_final_model

SPARK_POINTS = 60


@dataclass
class RunSummary:
    path: Path
    name: str
    status: str
    teacher: str = ""
    student: str = ""
    loss_name: str = ""
    total_steps: int = 0
    last_step: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    perplexity: float | None = None
    agreement: float | None = None
    modified: float = 0.0
    checkpoints: list[int] = field(default_factory=list)
    has_final: bool = False
    has_report: bool = False
    loss_series: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def resumable(self) -> bool:
        return bool(self.checkpoints) and self.status in ("interrupted", "stopped")

    def config_summary(self) -> str:
        student = f"{self.student} (derived)" if self.student == "teacher" else self.student
        parts = [f"{short_model(self.teacher) or '?'} → {short_model(student) or '?'}"]
        if self.loss_name:
            parts.append(self.loss_name)
        return ", ".join(parts)


def short_model(ref: str) -> str:
    """The last part of a path or the hub id, for narrow table cells."""
    if not ref:
        return ""
    path = Path(ref)
    if "/" in ref and path.is_absolute():
        # A run's final/ (or a checkpoint) says little alone: keep the run's name with it.
        return f"{path.parent.name}/{path.name}" if path.name in ("final", "student-init") else path.name
    return ref


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl; a damaged line (a killed write) is skipped."""
    return read_jsonl_objects(path)


def _kind(record: dict[str, Any]) -> str:
    kind = str(record.get("type") or record.get("kind") or record.get("event") or "").lower()
    if kind:
        return kind
    if "tokens_per_s" in record:
        return "step"
    if "perplexity" in record:
        return "eval"
    return ""


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def downsample(values: list[float], points: int = SPARK_POINTS) -> list[float]:
    """At most ``points`` values, keeping the first and the last (for sparklines)."""
    if len(values) <= points:
        return list(values)
    step = (len(values) - 1) / (points - 1)
    return [values[round(i * step)] for i in range(points)]


def read_run(path: Path, *, active: str | None = None) -> RunSummary | None:
    """Summarise one run folder; None when ``path`` is no run folder (no config.toml)."""
    folder = RunFolder(path)
    config_file = folder.config
    if not config_file.is_file():
        return None
    try:
        config = read_toml(config_file)[0]
    except ConfigError:
        config = {}
    summary = RunSummary(path=path, name=path.name, status="not started", config=config)
    summary.teacher = str(config.get("teacher", {}).get("model", ""))
    summary.student = str(config.get("student", {}).get("model", ""))
    summary.loss_name = str(config.get("distill", {}).get("loss", ""))
    summary.total_steps = int(config.get("train", {}).get("max_steps", 0) or 0)
    summary.checkpoints = [step for step, _ in folder.complete_checkpoints()]
    summary.has_final = has_final_model(path)
    summary.has_report = (path / runfolder.REPORT_MD).is_file()
    losses: list[float] = []
    for record in read_records(folder.metrics):
        kind = _kind(record)
        if "step" in record and isinstance(record["step"], int):
            summary.last_step = max(summary.last_step, record["step"])
        if kind.startswith("step") or kind == "train":
            summary.total_steps = int(record.get("total_steps") or summary.total_steps)
            loss = _finite(record.get("loss"))
            if loss is not None:
                losses.append(loss)
                summary.train_loss = loss
            summary.agreement = _finite(record.get("agreement")) if summary.eval_loss is None else summary.agreement
        elif kind.startswith("eval"):
            summary.eval_loss = _finite(record.get("loss"))
            summary.perplexity = _finite(record.get("perplexity"))
            summary.agreement = _finite(record.get("agreement"))
    summary.loss_series = downsample(losses)
    summary.modified = max((p.stat().st_mtime for p in (config_file, folder.metrics) if p.exists()),
                           default=0.0)
    # finish() always checkpoints the last step, so the newest checkpoint says how far a run got.
    summary.last_step = max([summary.last_step, *summary.checkpoints])
    if active and Path(active).resolve() == path.resolve():
        summary.status = "running"
    elif summary.has_final:
        stopped = bool(summary.checkpoints) and summary.last_step < summary.total_steps
        summary.status = "stopped" if stopped else "finished"
    elif summary.checkpoints:
        summary.status = "interrupted"
    return summary


def scan_runs(runs_dir: Path, *, active: str | None = None) -> list[RunSummary]:
    """Every run folder directly under ``runs_dir``, newest first."""
    if not runs_dir.is_dir():
        return []
    runs = [s for p in runs_dir.iterdir() if p.is_dir() and (s := read_run(p, active=active)) is not None]
    return sorted(runs, key=lambda s: s.modified, reverse=True)


def delete_run(path: Path, runs_dir: Path) -> None:
    """Delete a run folder; refuses anything that is not a run folder inside ``runs_dir``."""
    path, runs_dir = path.resolve(), runs_dir.resolve()
    if path.parent != runs_dir or not RunFolder(path).config.is_file():
        raise ValueError(f"{path} is not a run folder inside {runs_dir}; nothing was deleted.")
    shutil.rmtree(path)
