"""The CE control: the run's config with ``loss = "ce"`` for the same steps, trained next to the run.

It trains a second run, so it lives above the engine: the trainer never imports it. The report
(``engine/evaluation/report.py``) shows a finished control that matches the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from distill_gui.config import RunConfig
from distill_gui.engine.evaluation.report import (
    CONTROL_DIR,
    control_config,
    control_matches,
    read_run_config,
    steps_done,
)
from distill_gui.engine.evaluation.report import report_run as report_without_training
from distill_gui.engine.trainer import train
from distill_gui.errors import DistillError
from distill_gui.events import Control, EventCallback, PhaseProgress, StepMetrics, ignore_events


def run_control(run_dir: Path, cfg: RunConfig, *, steps: int | None = None, on_event: EventCallback = ignore_events,
                control: Control | None = None) -> Path:
    """Train the CE control (unless a finished one with the same settings exists); returns its final/."""
    run_dir = Path(run_dir)
    steps = steps_done(run_dir, cfg) if steps is None else steps
    folder = run_dir / CONTROL_DIR
    if (folder / "final" / "config.json").is_file() and control_matches(run_dir, cfg, steps):
        return folder / "final"
    shutil.rmtree(folder, ignore_errors=True)  # our own subfolder: an unfinished or outdated control
    on_event(PhaseProgress("control", 0, 1, "", f"training the CE control ({steps} steps, same data)"))
    result = train(control_config(run_dir, cfg, steps), on_event=_control_events(on_event), control=control)
    if result.stopped_early:
        raise DistillError("The CE control was stopped before its last step; the report shows no control.")
    return result.final_dir


def _control_events(on_event: EventCallback) -> EventCallback:
    """Forward the control run's progress as phase events (its step metrics are not the main run's)."""
    def forward(event) -> None:
        if isinstance(event, StepMetrics):
            on_event(PhaseProgress("control", event.step, event.total_steps, "steps", "training the CE control"))
        elif isinstance(event, PhaseProgress):
            on_event(event)

    return forward



def report_run(run_dir: str | Path, *, control: bool = False, data_file: str | None = None,
               on_event: EventCallback = ignore_events, stop: Control | None = None) -> Path:
    """Write a finished run's report, training its CE control first when ``control`` asks for it."""
    if control:
        run_control(Path(run_dir), read_run_config(Path(run_dir)), on_event=on_event, control=stop)
    return report_without_training(run_dir, data_file=data_file, on_event=on_event, stop=stop)
