"""The Train page during a real CPU run: the longest stall of the GUI event loop, next to an idle window.

Run: ``python benchmarks/train_page.py [--runs 3] [--steps 150]`` (offscreen). Each round opens the app's
window, starts a run of tiny local models from the Train page (Start, as a user would) and measures the
worst lateness of a 5 ms timer on the GUI thread until the run ends; the ``idle`` row measures the same
window for the same time with nothing running, so the table shows what training adds. Target: the
longest stall during training under 100 ms (the Train page's test checks behaviour only: a wall-clock
limit there would fail on a busy machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from benchmarks.chat_page import StallMeter  # noqa: E402


def _pair_and_data(folder: Path) -> tuple[Path, Path, Path]:
    from distill_gui.workflows.tiny import build_tiny_pair, sample_text

    teacher, student = build_tiny_pair(folder / "models", texts=sample_text(1500, 0))
    rows = "".join('{"messages": [{"role": "user", "content": "What is %d + %d?"}, '
                   '{"role": "assistant", "content": "%d."}]}\n' % (a, a + 1, 2 * a + 1) for a in range(60))
    data = folder / "train.jsonl"
    data.write_text(rows, encoding="utf-8")
    return teacher, student, data


def _settings(teacher: Path, student: Path, data: Path, out: Path, name: str, steps: int) -> dict:
    return {"name": name, "output_dir": str(out), "teacher.model": str(teacher), "student.model": str(student),
            "data.train": str(data), "data.max_length": 48, "train.max_steps": steps, "train.batch_size": 2,
            "train.grad_accum": 1, "train.lr": 1e-3, "train.warmup_steps": 1, "train.log_every": 1,
            "train.eval_every": 25, "train.save_every": 50, "train.device": "cpu", "train.report": False}


def _wait(app: QApplication, done, limit_s: float = 600.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit("the run did not end in time")
        app.processEvents()
        time.sleep(0.002)


def one_round(app: QApplication, window, settings: dict) -> tuple[float, float, float]:
    """(training stall ms, idle stall ms, seconds) for one run started from the Train page."""
    page = window.train_page
    window.store.set_many(settings)
    window.show_page("Train")
    meter = StallMeter()
    meter.start()
    started = time.monotonic()
    page.start()
    _wait(app, lambda: page.state == "idle" and page.worker is None)
    seconds = time.monotonic() - started
    training_ms = meter.stop()
    idle = StallMeter()
    idle.start()
    _wait(app, lambda: time.monotonic() - started > 2 * seconds)
    return training_ms, idle.stop(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DISTILL_GUI_HOME"] = str(Path(tmp) / "home")
        from distill_gui.gui.app import create_application, create_window

        app = create_application([])
        window = create_window(app)
        window.show()
        teacher, student, data = _pair_and_data(Path(tmp))
        rows = [one_round(app, window, _settings(teacher, student, data, Path(tmp) / "runs", f"bench-{i}",
                                                 args.steps)) for i in range(args.runs)]
        window.close()
    print(f"| window | longest GUI stall ms (median of {args.runs}) | worst | run s (median) |")
    print("|---|---|---|---|")
    for label, index in (("training", 0), ("idle", 1)):
        values = [r[index] for r in rows]
        print(f"| {label} | {statistics.median(values):.0f} | {max(values):.0f} | "
              f"{statistics.median(r[2] for r in rows):.1f} |")


if __name__ == "__main__":
    main()
