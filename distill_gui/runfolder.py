"""The run folder: its layout, and the one rule for which checkpoints count.

::

    <output_dir>/<name>/
      config.toml            the exact RunConfig used
      metrics.jsonl          one JSON object per logged step / eval
      checkpoints/step-N/    student weights, trainer_state.pt, state.json (complete ones only, see below)
      final/                 the distilled student as a Hugging Face folder
      student-init/          a student derived from teacher layers (where it started)
      teacher-answers.jsonl  answers a teacher wrote before training
      teacher-cache/         the teacher's top-k rows on disk
      control-ce/            the CE control run (a run folder of its own)
      export/                <name>.gguf, Modelfile
      report.md, report.json, *.png   the evaluation report

The engine, the GUI and the CLI all ask this module: none of them spells a folder name or decides on
its own what a checkpoint is. Qt-free and torch-free.

A checkpoint is **complete** when its folder is named ``step-N`` and holds ``state.json`` and
``trainer_state.pt`` (both written last, inside a temporary folder that is renamed when done). A folder
a kill left half-written is therefore either a ``.step-N.tmp`` (not a checkpoint name) or lacks one of
the two files: it is never offered for resume or export, and the previous complete one is used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FINAL = "final"
DERIVED = "student-init"
TEACHER_ANSWERS = "teacher-answers.jsonl"
TEACHER_CACHE = "teacher-cache"
CONTROL = "control-ce"
EXPORT = "export"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"

CHECKPOINT_STATE = "state.json"          # step, data position, config: written last
TRAINER_STATE = "trainer_state.pt"       # optimizer, scheduler, scaler and RNG states
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step}"


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    """N for a folder named ``step-N``; None for any other name (a temp folder, ``final``)."""
    match = _STEP_DIR.match(Path(folder).name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """The one rule (module docstring): a ``step-N`` folder with both state files."""
    folder = Path(folder)
    return (checkpoint_step(folder) is not None and (folder / CHECKPOINT_STATE).is_file()
            and (folder / TRAINER_STATE).is_file())


def has_final_model(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / FINAL / "config.json").is_file()


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder (nothing is created by asking)."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def final(self) -> Path:
        return self.path / FINAL

    @property
    def export(self) -> Path:
        return self.path / EXPORT

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, folder), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(checkpoint_step(child), child) for child in self.checkpoints.iterdir()
                 if is_complete_checkpoint(child)]
        return sorted((step, child) for step, child in found if step is not None)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint: what ``--resume`` continues from."""
        found = self.complete_checkpoints()
        return found[-1][1] if found else None

    def holds_run(self) -> bool:
        """Whether a run already trained here (a complete checkpoint or a final model): starting over is refused."""
        return bool(self.complete_checkpoints()) or has_final_model(self.path)

    def exportable(self) -> list[str]:
        """``final`` (when present) then ``step-N`` of complete checkpoints, newest first."""
        choices = [FINAL] if has_final_model(self.path) else []
        return choices + [checkpoint_name(step) for step, _ in reversed(self.complete_checkpoints())]
