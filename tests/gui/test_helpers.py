"""The GUI's small parts: presets, number formats, sticky plot ranges, metrics replay, task workers."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from distill_gui.config import RunConfig, validate
from distill_gui.errors import DataError
from distill_gui.events import EvalMetrics, StepMetrics
from distill_gui.formatting import human_bytes, human_count, human_duration, percent
from distill_gui.gui.metrics_buffer import MetricsBuffer, buffer_from_records, event_from_record
from distill_gui.gui.plot_ranges import MIN_FILL, nice_step, sticky_range
from distill_gui.gui.presets import PRESETS, apply_preset, matching_preset

from .conftest import wait_until


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_each_preset_makes_a_config_the_cli_accepts_and_is_recognised(preset):
    cfg = RunConfig()
    for key, value in {"teacher.model": "org/big", "student.model": "org/small", "data.train": "d.jsonl"}.items():
        cfg.set(key, value)
    keys = apply_preset(cfg, preset.name)
    validate(cfg)
    assert sorted(keys) == sorted(preset.values)
    assert matching_preset(cfg) == preset.name
    assert len(preset.description.split(". ")) == 1            # one sentence for the tooltip


def test_presets_differ_and_custom_values_match_none():
    assert len({tuple(sorted(p.values.items())) for p in PRESETS}) == len(PRESETS)
    cfg = RunConfig()
    apply_preset(cfg, "Balanced")
    cfg.set("train.lr", 1.23e-4)
    assert matching_preset(cfg) is None


def test_human_formats():
    assert human_count(1_543_714_304) == "1.54 B"
    assert human_count(494_032_768) == "494 M"
    assert human_count(239_000) == "239 k"
    assert human_count(512) == "512"
    assert human_bytes(3 * 2**30 + 2**29) == "3.5 GiB"
    assert human_bytes(512) == "512 B"
    assert human_duration(42.4) == "42 s"
    assert human_duration(185) == "3 min 05 s"
    assert human_duration(2 * 3600 + 7 * 60) == "2 h 07 min"
    assert human_duration(None) == "–" and human_duration(float("nan")) == "–"
    assert percent(0.734) == "73.4 %" and percent(float("nan")) == "–"


def test_nice_steps_are_1_2_5_times_powers_of_ten():
    for span in (0.0013, 0.7, 3.0, 42.0, 999.0, 12345.0):
        step = nice_step(span)
        mantissa = step / 10 ** int(f"{step:e}".split("e")[1])
        assert round(mantissa, 6) in (1.0, 2.0, 5.0)
        assert 2 <= span / step <= 10


def test_sticky_range_holds_while_data_fits_and_refits_when_not():
    first = sticky_range(None, 2.1, 6.3)
    assert first[0] <= 2.1 and first[1] >= 6.3
    assert sticky_range(first, 2.0, 6.0) == first            # a decreasing loss: nothing moves
    lower = sticky_range(first, -4.0, 6.0)                    # data left the range
    assert lower != first and lower[0] <= -4.0
    shrunk_low, shrunk_high = first
    tiny = (shrunk_high - shrunk_low) * MIN_FILL / 2
    refit = sticky_range(first, 3.0, 3.0 + tiny)              # fills too little of the range
    assert refit != first and refit[0] <= 3.0 <= 3.0 + tiny <= refit[1]
    assert sticky_range(None, 5.0, 9.0, from_zero=True)[0] == 0.0
    assert sticky_range(None, 0.29, 6.3)[0] == 0.0            # a loss axis never dips below zero
    assert sticky_range(None, -0.5, 6.3)[0] < -0.5
    flat = sticky_range(None, 1.0, 1.0)
    assert flat[0] < 1.0 < flat[1]


def _step(step: int, loss: float) -> StepMetrics:
    return StepMetrics(step, 10, loss, loss * 0.9, loss * 2, 1e-4, 0.5, 1000.0, 0.25, 2**30, 1.0, 9.0)


def test_metrics_buffer_series_and_replay_from_jsonl_records():
    buffer = MetricsBuffer()
    events = [_step(1, 3.0), _step(2, 2.5), EvalMetrics(2, 2.4, 2.2, 4.1, 60.3, 0.3), _step(3, float("nan"))]
    for event in events:
        assert buffer.add(event)
    assert not buffer.add("something else")
    xs, ys = buffer.arrays("loss")
    assert list(xs) == [1.0, 2.0] and list(ys) == [3.0, 2.5]    # NaN points are not drawn
    assert list(buffer.arrays("memory_gib")[1]) == [1.0, 1.0, 1.0]
    assert list(buffer.arrays("eval_perplexity")[1]) == [60.3]
    # The engine writes {"event": "step"|"eval", **fields} with NaN as null.
    records = [json.loads(json.dumps({"event": "step" if isinstance(e, StepMetrics) else "eval",
                                      **{k: (None if isinstance(v, float) and v != v else v)
                                         for k, v in dataclasses.asdict(e).items()}})) for e in events]
    assert event_from_record(records[0]) == events[0]
    assert event_from_record(records[2]) == events[2]
    assert event_from_record({"event": "step"}) is None
    replay = buffer_from_records(records)
    assert [list(a) for a in replay.arrays("loss")] == [list(a) for a in buffer.arrays("loss")]
    assert replay.last_eval == events[2]


def test_task_runner_drops_a_superseded_answer_and_reports_errors(qtbot):
    from distill_gui.gui.workers import TaskRunner

    runner = TaskRunner()
    release = threading.Event()
    answers, errors = [], []

    def slow() -> str:
        release.wait(10)
        return "old"

    runner.run("check", slow, on_done=answers.append, heavy=False)
    runner.run("check", lambda: "new", on_done=answers.append, heavy=False)
    wait_until(qtbot, lambda: answers == ["new"], what="the newer answer")
    release.set()

    def bad() -> None:
        raise DataError("data.jsonl, line 3: not valid JSON.")

    runner.run("other", bad, on_error=errors.append, heavy=False)
    assert runner.busy("other")
    wait_until(qtbot, lambda: errors, what="the error")
    assert runner.wait_all(5000)
    qtbot.wait(50)
    assert answers == ["new"]                                  # the slow answer came late and was dropped
    assert errors[0].message == "data.jsonl, line 3: not valid JSON." and errors[0].user_error
    assert not runner.busy("check") and not runner.busy("other")


def test_short_model_names_keep_the_run_of_a_final_folder():
    from distill_gui.gui.run_history import short_model

    assert short_model("/home/me/runs/qwen-small/final") == "qwen-small/final"
    assert short_model("/models/Qwen2.5-0.5B") == "Qwen2.5-0.5B"
    assert short_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert short_model("") == ""
