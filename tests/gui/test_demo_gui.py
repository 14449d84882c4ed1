"""Models page: "Try the demo" runs the real demo pipeline in a worker (a tiny size), with progress and Stop."""

from __future__ import annotations

import pytest

from distill_gui.workflows.demo import DemoSize

from .conftest import error_dialogs, wait_until

# The pipeline of the real demo at a size that runs in a few seconds (its numbers mean nothing).
TINY = DemoSize("tiny", hidden=32, teacher_layers=2, keep_layers=(0,), vocab=300, teacher_rows=120, teacher_steps=6,
                teacher_batch=8, teacher_lr=3e-3, transfer_rows=16, student_steps=3, student_batch=4, student_lr=3e-3,
                eval_rows=8, question_rows=14)


def _demo_box(window, tmp_path):
    window.show_page("Models")
    box = window.models_page.demo
    box.size, box.out_dir, box.ollama_host = TINY, str(tmp_path / "demo"), "http://127.0.0.1:9"  # no Ollama there
    return box


@pytest.mark.slow
def test_try_the_demo_runs_it_in_a_worker_with_progress_and_shows_the_summary(window, qtbot, tmp_path):
    box = _demo_box(window, tmp_path)
    messages = []
    box.runner.run = _recording(box.runner.run, messages)
    assert box.start_button.text() == "Try the demo" and box.isVisible()
    box.start_button.click()
    assert not box.start_button.isEnabled() and box.stop_button.isEnabled() and box.progress.isVisible()
    wait_until(qtbot, lambda: not box.running, 120, "the demo")
    assert box.result is not None and not error_dialogs()
    assert any("training the teacher" in m for m in messages) and any("CE control" in m for m in messages)
    summary = box.summary.text()
    assert box.summary.isVisible() and "Student after" in summary and "CE control" in summary
    assert "Ollama: not running" in box.notes.text() and box.report_button.isVisible()
    assert box.status.text().startswith("Done in ") and box.start_button.isEnabled()
    assert (tmp_path / "demo" / "runs" / "student" / "report.md").is_file()


def test_stop_ends_the_demo_without_an_error_dialog(window, qtbot, tmp_path):
    box = _demo_box(window, tmp_path)
    box.start_button.click()
    box.stop_button.click()
    wait_until(qtbot, lambda: not box.running, 120, "the stopped demo")
    assert box.result is None and not error_dialogs()
    assert box.status.text() == "The demo was stopped. Try it again to start over."
    assert box.start_button.isEnabled() and not box.stop_button.isEnabled()


def _recording(run, messages):
    """Wrap TaskRunner.run so each progress message the page receives is also recorded."""
    def wrapper(slot, fn, *args, on_progress=None, **kwargs):
        def progress(event):
            messages.append(getattr(event, "message", ""))
            on_progress(event)
        return run(slot, fn, *args, on_progress=progress, **kwargs)

    return wrapper
