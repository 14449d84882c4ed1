"""``distill-gui eval MODEL_DIR --data FILE [--teacher DIR]``: evaluation numbers as JSON on stdout.

- A model folder (or hub id) with ``--data``: its held-out perplexity, and with ``--teacher`` the
  teacher's, top-1 agreement and KL(teacher || model); parameters, weight bytes, tokens/s; greedy
  samples (``--samples``).
- A run folder (``config.toml`` + ``final/``): its teacher, the student before and after (and the CE
  control when there is one, or ``--control`` to train it) on the run's held-out rows or ``--data``;
  ``--report`` also writes ``report.md`` with plots into the run folder.

Progress goes to stderr, so stdout stays valid JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill_gui.errors import UserInputError
from distill_gui.events import PhaseProgress
from distill_gui.paths import json_safe


def run(args: argparse.Namespace) -> int:
    from distill_gui.commands.train import _quiet_libraries

    path = Path(args.model_dir).expanduser()
    run_folder = (path / "config.toml").is_file() and (path / "final").is_dir()
    if (args.report or args.control) and not run_folder:
        raise UserInputError(f"{args.model_dir} is not a run folder (config.toml + final/): --report and --control "
                             f"need the folder a run was trained in.")
    if args.samples < 0:
        raise UserInputError("--samples must be 0 or more.")
    _quiet_libraries()
    progress = _progress_printer()
    if run_folder and not args.teacher:
        result = _evaluate_run(path, args, progress)
    else:
        if not args.data:
            raise UserInputError(f"--data is needed to evaluate the model folder {args.model_dir}: give a .txt or "
                                 f".jsonl file of held-out text (or pass a run folder).")
        from distill_gui.engine.evaluation.evaluate import evaluate_model_dir

        result = evaluate_model_dir(str(path / "final") if run_folder else args.model_dir, args.data,
                                    teacher_dir=args.teacher, max_length=args.max_length, samples=args.samples,
                                    on_event=progress)
    print(json.dumps(json_safe(result), indent=2, ensure_ascii=False, allow_nan=False))
    return 0


def _evaluate_run(path: Path, args: argparse.Namespace, progress) -> dict:
    from distill_gui.engine.evaluation import report
    from distill_gui.workflows.control import run_control

    if args.control:
        run_control(path, report.read_run_config(path), on_event=progress)
    evaluation = report.evaluate_run(path, data_file=args.data, on_event=progress)
    evaluation.samples = evaluation.samples[:args.samples]
    result = evaluation.to_dict()
    if args.report:
        result["report"] = str(report.write_report(path, evaluation, on_event=progress))
    return result


def _progress_printer():
    """Phase messages on stderr, one line each (steps of a CE control: every 25 %)."""
    last: dict[str, int] = {}

    def show(event) -> None:
        if not isinstance(event, PhaseProgress) or not event.message:
            return
        if event.unit == "steps" and event.total:
            quarter = int(4 * event.done / event.total)
            if last.get(event.phase) == quarter:
                return
            last[event.phase] = quarter
            print(f"{event.message}: step {int(event.done)}/{int(event.total)}", file=sys.stderr)
        elif event.unit != "B":
            print(event.message, file=sys.stderr)

    return show
