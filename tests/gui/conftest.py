"""GUI test setup: a real main window per test (offscreen), tiny models, small data files, real runs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")


def write_chat_rows(path: Path, n: int, *, bad_line_after: int | None = None) -> Path:
    """``n`` prompt/response rows (simple arithmetic), optionally one malformed JSON line after row k."""
    lines = []
    for i in range(n):
        lines.append(json.dumps({"prompt": f"What is {i} plus {i + 1}?", "response": f"It is {2 * i + 1}."}))
        if bad_line_after is not None and i + 1 == bad_line_after:
            lines.append('{"prompt": "broken", ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def _orderly_qt_exit():
    """Delete the windows before the interpreter exits (else a random exit crash, rc 134/139)."""
    yield
    from PySide6.QtWidgets import QApplication

    from distill_gui.gui.teardown import release_widgets

    if QApplication.instance() is not None:
        release_widgets(QApplication.instance())


@pytest.fixture(scope="session")
def train_jsonl(tmp_path_factory) -> Path:
    return write_chat_rows(tmp_path_factory.mktemp("gui_data") / "train.jsonl", 40)


def small_run_values(teacher: Path, student: Path, data: Path, name: str, steps: int = 12) -> dict:
    """Config keys of a quick CPU run on the tiny models."""
    return {
        "name": name, "teacher.model": str(teacher), "student.model": str(student), "data.train": str(data),
        "data.max_length": 48, "train.max_steps": steps, "train.batch_size": 2, "train.grad_accum": 1,
        "train.lr": 1e-3, "train.warmup_steps": 1, "train.log_every": 1, "train.eval_every": 6,
        "train.save_every": 4, "train.device": "cpu", "train.report": False,  # report: tests/gui/test_report_gui.py
    }


@pytest.fixture(scope="session")
def engine_runs(tmp_path_factory, tiny_pair, train_jsonl) -> dict[str, Path]:
    """Run folders made by the real engine, headless: a finished run and a run stopped at step 4.

    Tests copy them into their own runs folder (``copy_run``), so each test may change them.
    """
    from distill_gui.config import RunConfig
    from distill_gui.engine.trainer import train
    from distill_gui.events import Control, StepMetrics

    out = tmp_path_factory.mktemp("engine_runs")
    runs = {}
    for name, stop_at in (("finished-run", None), ("stopped-run", 4)):
        cfg = RunConfig()
        for key, value in small_run_values(*tiny_pair, train_jsonl, name, steps=8).items():
            cfg.set(key, value)
        cfg.output_dir = str(out)
        control = Control()

        def on_event(event, control=control, stop_at=stop_at):
            if stop_at is not None and isinstance(event, StepMetrics) and event.step >= stop_at:
                control.stop()

        train(cfg, on_event, control)
        runs[name] = out / name
    return runs


def copy_run(source: Path, runs_dir: Path, name: str | None = None) -> Path:
    target = runs_dir / (name or source.name)
    shutil.copytree(source, target)
    return target


def wait_until(qtbot, condition, timeout_s: float = 60.0, what: str = "condition") -> None:
    """Process Qt events until ``condition()`` is true (fails the test with ``what`` on timeout)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        qtbot.wait(20)


def error_dialogs():
    from PySide6.QtWidgets import QApplication, QMessageBox

    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "errorDialog" and w.isVisible()]


@pytest.fixture
def close_dialogs():
    """Close error dialogs a test left open (they are window-modal, never blocking)."""
    yield
    for box in error_dialogs():
        box.close()


@pytest.fixture
def window(qtbot, close_dialogs):
    """The real main window, shown offscreen, with its settings in the test's private home."""
    from PySide6.QtWidgets import QApplication

    from distill_gui.gui.app import create_window

    win = create_window(QApplication.instance())
    win.resize(1280, 820)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.train_page.shutdown()
    win.confirm_quit_while_training = lambda: True
    win.close()
    win.deleteLater()           # closed windows would pile up and slow every later restyle
    qtbot.wait(1)
