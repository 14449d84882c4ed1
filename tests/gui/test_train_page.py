"""The Train page drives a real CPU run: live plots, pause / resume / stop, responsiveness, errors."""

from __future__ import annotations

from PySide6.QtCore import QElapsedTimer, Qt, QTimer

from distill_gui.events import Finished, Paused, Resumed, RunStarted, StepMetrics

from .conftest import error_dialogs, small_run_values, wait_until, write_chat_rows


class StallMeter:
    """Measures the longest gap between ticks of a 5 ms timer on the GUI thread (event-loop stalls)."""

    def __init__(self, interval_ms: int = 5) -> None:
        self.interval_ms = interval_ms
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.longest_ms = 0.0
        self.ticks = 0
        self._last = None

    def start(self) -> None:
        self.clock.start()
        self._last = self.clock.nsecsElapsed()
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        self.longest_ms = max(self.longest_ms, (now - self._last) / 1e6 - self.interval_ms)
        self._last = now
        self.ticks += 1

    def stop(self) -> float:
        self.timer.stop()
        return self.longest_ms


def plotted(page, series: str) -> int:
    xs, _ = page.plots.curve_data(series)
    return 0 if xs is None else len(xs)


def record_events(page) -> list:
    events: list = []
    page.worker.event.connect(events.append)
    return events


def test_run_with_shortcuts_live_plots_pause_resume_stop(window, qtbot, tiny_pair, train_jsonl):
    page = window.train_page
    window.store.set_many(small_run_values(*tiny_pair, train_jsonl, "live-run", steps=400))
    window.show_page("Train")
    qtbot.keyClick(window, Qt.Key.Key_F5)                       # Start
    assert page.state == "starting" and page.worker is not None
    events = record_events(page)

    wait_until(qtbot, lambda: any(isinstance(e, RunStarted) for e in events), what="RunStarted")
    meter = StallMeter()
    meter.start()
    wait_until(qtbot, lambda: plotted(page, "loss") >= 3, what="plotted loss points")
    steps = [e for e in events if isinstance(e, StepMetrics)]
    xs, ys = page.plots.curve_data("loss")
    assert list(xs[:3]) == [e.step for e in steps[:3]]          # the curve shows the engine's numbers
    assert list(ys[:3]) == [e.loss for e in steps[:3]]
    assert page.progress.maximum() == 400 and page.progress.value() >= 1
    assert "step" in page.log.text() and page.state == "running"

    qtbot.keyClick(window, Qt.Key.Key_F6)                       # Pause
    wait_until(qtbot, lambda: any(isinstance(e, Paused) for e in events), what="Paused")
    assert page.state == "paused" and page.resume_button.isEnabled() and not page.pause_button.isEnabled()
    paused_at = next(e.step for e in events if isinstance(e, Paused))
    qtbot.wait(400)
    assert max(e.step for e in events if isinstance(e, StepMetrics)) <= paused_at   # no step while paused

    qtbot.keyClick(window, Qt.Key.Key_F6)                       # Resume
    wait_until(qtbot, lambda: any(isinstance(e, Resumed) for e in events), what="Resumed")
    wait_until(qtbot, lambda: max(e.step for e in events if isinstance(e, StepMetrics)) > paused_at + 1,
               what="steps after resume")
    assert page.state == "running"

    qtbot.keyClick(window, Qt.Key.Key_F5, Qt.KeyboardModifier.ShiftModifier)   # Stop
    assert page.state == "stopping"
    wait_until(qtbot, lambda: page.state == "idle", what="the run to end")
    stall_ms = meter.stop()
    finished = [e for e in events if isinstance(e, Finished)]
    assert len(finished) == 1 and finished[0].stopped_early and finished[0].step < 400
    assert (page.run_dir and (window.store.config.run_dir() / "final" / "config.json").is_file())
    assert not error_dialogs()
    # The event loop kept running through the run (the stall target, < 100 ms, is measured side by side
    # in benchmarks/gui_startup.py, not asserted here: a wall-clock limit fails on a busy machine).
    print(f"\nlongest event-loop stall during the CPU run: {stall_ms:.1f} ms over {meter.ticks} ticks")
    assert meter.ticks > 50


def test_resume_run_continues_a_stopped_run_to_the_end(window, qtbot, engine_runs, tmp_path):
    from .conftest import copy_run

    run = copy_run(engine_runs["stopped-run"], tmp_path / "runs")
    page = window.train_page
    assert page.resume_run_folder(run)
    events = record_events(page)
    wait_until(qtbot, lambda: page.state == "idle", what="the resumed run to end")
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.start_step == 4                             # continued from the checkpoint
    finished = next(e for e in events if isinstance(e, Finished))
    assert finished.step == 8 and not finished.stopped_early
    xs, _ = page.plots.curve_data("loss")
    assert list(xs) == sorted(set(xs)) and xs[-1] == 8         # history up to 4, then 5..8, no duplicates
    assert window.store.config.name == "stopped-run"


def test_a_failing_run_shows_the_engine_message_and_the_app_goes_on(window, qtbot, tiny_pair, tmp_path):
    bad = write_chat_rows(tmp_path / "bad.jsonl", 10, bad_line_after=3)
    page = window.train_page
    window.store.set_many(small_run_values(*tiny_pair, bad, "bad-run", steps=5))
    assert page.start()
    wait_until(qtbot, lambda: page.state == "idle", what="the failed run to end")
    dialogs = error_dialogs()
    assert len(dialogs) == 1
    text = dialogs[0].text()
    assert "line 4" in text and "bad.jsonl" in text and "Traceback" not in text
    assert "line 4" in page.log.text()
    assert page.start_button.isEnabled()                      # ready for the next try


def test_start_with_missing_models_says_what_to_set(window, qtbot, train_jsonl):
    window.store.set("data.train", str(train_jsonl))
    assert not window.train_page.start()
    text = error_dialogs()[0].text()
    assert "[teacher] model is not set" in text
    assert window.train_page.state == "idle"


def test_existing_run_folder_asks_and_can_start_under_a_new_name(window, qtbot, engine_runs, tiny_pair,
                                                                   train_jsonl, tmp_path):
    from .conftest import copy_run

    copy_run(engine_runs["finished-run"], tmp_path / "runs")
    values = small_run_values(*tiny_pair, train_jsonl, "finished-run", steps=2)
    window.store.set_many({**values, "output_dir": str(tmp_path / "runs")})
    asked = []
    window.train_page.ask_existing_run = lambda run_dir, new_name: asked.append(new_name) or "rename"
    assert window.train_page.start()
    assert asked == ["finished-run-2"] and window.store.config.name == "finished-run-2"
    wait_until(qtbot, lambda: window.train_page.state == "idle", what="the run to end")
    assert (tmp_path / "runs" / "finished-run-2" / "final" / "config.json").is_file()
    # the original run was left alone
    assert (tmp_path / "runs" / "finished-run" / "final" / "config.json").is_file()
