"""Runs page over run folders the real engine wrote: status, metrics, sparkline, plots, delete, resume."""

from __future__ import annotations

import json
import shutil

from distill_gui.events import Finished, RunStarted
from distill_gui.formatting import metric
from distill_gui.gui.run_history import downsample, read_run

from .conftest import copy_run, wait_until


def _step_losses(run_dir) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if r["event"] == "step"]


def _runs_with_three_states(engine_runs, runs_dir):
    finished = copy_run(engine_runs["finished-run"], runs_dir)
    stopped = copy_run(engine_runs["stopped-run"], runs_dir)
    interrupted = copy_run(engine_runs["stopped-run"], runs_dir, "interrupted-run")
    shutil.rmtree(interrupted / "final")           # as if the process had been killed after a checkpoint
    return finished, stopped, interrupted


def test_run_folders_are_read_with_status_metrics_and_resumability(engine_runs, tmp_path):
    finished, stopped, interrupted = _runs_with_three_states(engine_runs, tmp_path / "runs")
    for path, status, resumable in ((finished, "finished", False), (stopped, "stopped", True),
                                    (interrupted, "interrupted", True)):
        run = read_run(path)
        assert (run.status, run.resumable) == (status, resumable), path.name
        losses = _step_losses(path)
        assert run.train_loss == losses[-1][1]
        assert run.loss_series == downsample([loss for _, loss in losses])
    assert read_run(finished).last_step == 8 and read_run(stopped).last_step == 4
    assert read_run(finished, active=str(finished)).status == "running"
    assert read_run(tmp_path) is None              # no config.toml: not a run folder


def test_runs_table_shows_each_run_and_opening_one_plots_its_metrics(window, qtbot, engine_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    finished, stopped, interrupted = _runs_with_three_states(engine_runs, runs_dir)
    window.store.set("output_dir", str(runs_dir))
    window.show_page("Runs")
    page = window.runs_page
    rows = {page.table.item(r, 0).text(): r for r in range(page.table.rowCount())}
    assert set(rows) == {"finished-run", "stopped-run", "interrupted-run"}
    row = rows["finished-run"]
    assert page.table.item(row, 1).text() == "finished"
    assert page.table.item(row, 5).text() == metric(_step_losses(finished)[-1][1])
    assert page.table.item(rows["interrupted-run"], 1).text() == "interrupted"
    spark = page.table.item(row, 9).data(256 + 1)
    assert spark == downsample([loss for _, loss in _step_losses(finished)])

    page.table.selectRow(row)
    xs, ys = page.plots.curve_data("loss")
    assert list(zip(xs, ys)) == _step_losses(finished)
    assert "finished" in page.details.toPlainText() and str(finished / "final") in page.details.toPlainText()
    assert not page.resume_button.isEnabled()
    page.table.selectRow(rows["interrupted-run"])
    assert page.resume_button.isEnabled()


def test_delete_asks_first_and_removes_only_that_run(window, engine_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    finished, stopped, _ = _runs_with_three_states(engine_runs, runs_dir)
    window.store.set("output_dir", str(runs_dir))
    window.show_page("Runs")
    page = window.runs_page
    page.select_run(stopped)
    page.confirm_delete = lambda run: False
    page.delete_selected()
    assert stopped.exists()
    page.select_run(stopped)
    page.confirm_delete = lambda run: True
    page.delete_selected()
    assert not stopped.exists() and finished.exists()
    assert "stopped-run" not in [page.table.item(r, 0).text() for r in range(page.table.rowCount())]


def test_resume_from_the_runs_page_continues_an_interrupted_run(window, qtbot, engine_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    _, _, interrupted = _runs_with_three_states(engine_runs, runs_dir)
    window.store.set("output_dir", str(runs_dir))
    window.show_page("Runs")
    page = window.runs_page
    page.select_run(interrupted)
    events = []
    window.train_page.run_started.connect(lambda _d: window.train_page.worker.event.connect(events.append))
    page.resume_button.click()
    assert window.current_page_name() == "Train"
    wait_until(qtbot, lambda: window.train_page.state == "idle", what="the resumed run to end")
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == 4
    assert next(e for e in events if isinstance(e, Finished)).step == 8
    window.show_page("Runs")
    assert read_run(interrupted).status == "finished"
    row = [page.table.item(r, 0).text() for r in range(page.table.rowCount())].index("interrupted-run")
    assert page.table.item(row, 1).text() == "finished"


def test_a_checkpoint_half_written_by_a_kill_is_never_offered_nor_resumed(window, qtbot, engine_runs, tmp_path):
    """A kill while saving step 6 leaves its weights without the state files (or only a temp folder): the Runs
    page, the Export page's choices and --resume all take the previous complete checkpoint, step 4."""
    from distill_gui.runfolder import RunFolder

    runs_dir = tmp_path / "runs"
    _, _, interrupted = _runs_with_three_states(engine_runs, runs_dir)
    checkpoints = interrupted / "checkpoints"
    half = checkpoints / "step-6"
    half.mkdir()
    for weights in (checkpoints / "step-4").glob("*.safetensors"):
        shutil.copy(weights, half / weights.name)                # weights written, state files never reached
    shutil.copy(checkpoints / "step-4" / "config.json", half / "config.json")
    (checkpoints / ".step-7.tmp").mkdir()                        # a save cut short before its rename

    assert read_run(interrupted).checkpoints == [4]
    assert RunFolder(interrupted).exportable() == ["step-4"]
    window.store.set("output_dir", str(runs_dir))
    window.show_page("Runs")
    page = window.runs_page
    page.select_run(interrupted)
    shown = page.details.toPlainText()
    assert "Checkpoints" in shown and "step 4" in shown and "step 6" not in shown
    events = []
    window.train_page.run_started.connect(lambda _d: window.train_page.worker.event.connect(events.append))
    page.resume_button.click()
    wait_until(qtbot, lambda: window.train_page.state == "idle", what="the resumed run to end")
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == 4
    assert next(e for e in events if isinstance(e, Finished)).step == 8
