"""Render every page of the app to PNG (README screenshots), with real data from tiny local models.

Builds a tiny teacher / student pair offline, previews a small chat data set, runs a real CPU
distillation and photographs the Train page mid-run, then the Runs page with the finished runs.

    python benchmarks/screenshots.py [--out docs/screenshots] [--xvfb] [--size 1440x900]

``--xvfb`` renders on an Xvfb X server (real window system); default is Qt's offscreen platform.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CITIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
          ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"), ("India", "New Delhi")]


def write_data(folder: Path) -> tuple[Path, Path]:
    """A clean training file, and a copy with one broken line (to show the Problems table)."""
    rng = random.Random(0)
    rows = []
    for _ in range(160):
        if rng.random() < 0.5:
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            rows.append({"prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."})
        else:
            country, city = rng.choice(CITIES)
            rows.append({"messages": [
                {"role": "system", "content": "You answer in one short sentence."},
                {"role": "user", "content": f"What is the capital of {country}?"},
                {"role": "assistant", "content": f"The capital of {country} is {city}."}]})
    clean = folder / "capitals-and-sums.jsonl"
    clean.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lines = clean.read_text(encoding="utf-8").splitlines()
    lines.insert(41, '{"prompt": "What is 2 plus 2?", "response": ')
    broken = folder / "capitals-and-sums-draft.jsonl"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return clean, broken


def start_xvfb(size: str) -> subprocess.Popen:
    if shutil.which("Xvfb") is None:
        raise SystemExit("Xvfb is not installed (apt-get install -y xvfb); run without --xvfb for offscreen.")
    server = subprocess.Popen(["Xvfb", ":98", "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    os.environ.update(DISPLAY=":98", QT_QPA_PLATFORM="xcb")
    return server


class Shooter:
    def __init__(self, out: Path, size: tuple[int, int]) -> None:
        from PySide6.QtWidgets import QApplication

        from distill_gui.gui.app import create_application, create_window

        self.out = out
        self.app: QApplication = create_application([])
        self.window = create_window(self.app)
        self.window.resize(*size)
        self.window.show()
        self.spin(0.5)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents()
            time.sleep(0.01)

    def wait(self, condition, what: str, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for {what}")
            self.spin(0.05)

    def shoot(self, page: str, name: str, settle: float = 0.6) -> Path:
        self.window.show_page(page)
        self.spin(settle)
        path = self.out / f"{name}.png"
        self.window.grab().save(str(path))
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--xvfb", action="store_true")
    parser.add_argument("--size", default="1440x900")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="dg-shots-"))
    os.environ["DISTILL_GUI_HOME"] = str(work / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    server = start_xvfb(f"{width + 80}x{height + 80}") if args.xvfb else None
    if server is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run(work, out, (width, height))
    finally:
        if server is not None:
            server.terminate()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def teach(model: Path, data: Path, out: Path) -> Path:
    """Fine-tune the random tiny teacher on the data first (loss = "ce"), so it has something to teach."""
    from distill_gui.config import RunConfig
    from distill_gui.engine.trainer import train

    cfg = RunConfig()
    for key, value in {"name": "teacher", "student.model": str(model), "data.train": str(data),
                       "distill.loss": "ce", "data.max_length": 64, "train.max_steps": 150, "train.batch_size": 8,
                       "train.grad_accum": 1, "train.lr": 3e-3, "train.warmup_steps": 10, "train.log_every": 50,
                       "train.eval_every": 0, "train.save_every": 0, "train.device": "cpu"}.items():
        cfg.set(key, value)
    cfg.output_dir = str(out)
    return Path(train(cfg).final_dir)


def run(work: Path, out: Path, size: tuple[int, int]) -> None:
    from distill_gui.config import RunConfig
    from distill_gui.engine.trainer import train
    from distill_gui.workflows.tiny import build_tiny_pair, sample_text

    teacher, student = build_tiny_pair(work / "models", texts=sample_text(1500) + [
        f"What is the capital of {c}? The capital of {c} is {city}." for c, city in CITIES] * 20,
        teacher_layers=4, student_layers=2, hidden=64)
    clean, broken = write_data(work)
    runs_dir = work / "home" / "runs"
    teacher = teach(teacher, clean, work / "teacher-runs")

    # An earlier finished run, so the Runs page has history.
    earlier = RunConfig()
    for key, value in {"name": "capitals-quick-test", "teacher.model": str(teacher), "student.model": str(student),
                       "data.train": str(clean), "data.max_length": 64, "train.max_steps": 40, "train.batch_size": 4,
                       "train.grad_accum": 1, "train.lr": 1e-3, "train.warmup_steps": 4, "train.log_every": 2,
                       "train.eval_every": 10, "train.save_every": 20, "train.device": "cpu"}.items():
        earlier.set(key, value)
    earlier.output_dir = str(runs_dir)
    train(earlier)

    shots = Shooter(out, size)
    store, win = shots.window.store, shots.window
    store.set_many({"name": "capitals-balanced", "teacher.model": str(teacher), "student.model": str(student),
                    "data.train": str(broken), "data.max_length": 64, "train.device": "cpu"})
    shots.wait(lambda: win.models_page.memory.plan is not None and win.models_page.verdict is not None,
               "the Models page checks")
    shots.shoot("Models", "models")
    shots.window.show_page("Data")
    shots.wait(lambda: win.data_page.preview is not None, "the data preview")
    shots.shoot("Data", "data")

    store.set("data.train", str(clean))
    page = win.train_page
    page.preset.setCurrentText("Balanced")
    page.preset.activated.emit(page.preset.currentIndex())
    store.set_many({"name": "capitals-balanced", "data.max_length": 64, "train.max_steps": 400, "train.batch_size": 4,
                    "train.grad_accum": 1, "train.lr": 1e-3, "train.warmup_steps": 20, "train.log_every": 2,
                    "train.eval_every": 25, "train.save_every": 100})
    shots.window.show_page("Train")
    page.start()
    shots.wait(lambda: page.buffer.last_step is not None and page.buffer.last_step.step >= 150,
               "the run to reach step 150", timeout=600)
    shots.shoot("Train", "train", settle=0.3)
    from distill_gui.gui import theme

    theme.apply_theme(shots.app, "dark")
    shots.shoot("Train", "train-dark", settle=0.3)
    theme.apply_theme(shots.app, "light")
    page.stop()
    shots.wait(lambda: page.state == "idle", "the run to stop")

    shots.window.show_page("Runs")
    shots.spin(0.3)
    win.runs_page.select_run(runs_dir / "capitals-balanced")
    shots.shoot("Runs", "runs")
    shots.shoot("Settings", "settings")
    # Export (a verified registration), Chat mid-stream and blind mode, against the Ollama test server.
    sys.path.insert(0, str(ROOT))
    from benchmarks.screenshots_export_chat import shoot_export_and_chat

    shoot_export_and_chat(shots, runs_dir / "capitals-balanced")
    win.close()


if __name__ == "__main__":
    sys.exit(main())
