"""The run report: written at the end of a tiny run, numbers measured (not read from the logs), the CE
control, PNGs that a real reader opens, and a report failure that never fails the run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from distill_gui.config import load_config
from distill_gui.engine.data import read_data, tokenize_rows
from distill_gui.engine.evaluation import report as R
from distill_gui.engine.evaluation import report_plots as P
from distill_gui.engine.evaluation.report_markdown import _block
from distill_gui.engine.trainer import train
from distill_gui.events import Finished, LogMessage
from distill_gui.workflows import control as C

from .helpers import write_config, write_jsonl
from .test_evaluate import reference


def chat_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    colors = ["red", "green", "blue"]
    return [{"prompt": f"What color is the river number {i}?", "response": f"The river {i} is {rng.choice(colors)}."}
            for i in range(n)]


def make_run(root: Path, tiny_pair, name: str, **sections) -> Path:
    data = write_jsonl(root / f"{name}.jsonl", chat_rows(24, seed=1))
    settings = {"data": {"eval_fraction": 0.25},
                "train": {"max_steps": 4, "eval_every": 2, "log_every": 1, "report": True}}
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    return write_config(root / f"{name}.toml", teacher_dir=str(tiny_pair[0]), student_dir=str(tiny_pair[1]),
                        data_file=str(data), output_dir=str(root / "runs"), name=name, **settings)


@pytest.fixture(scope="module")
def finished_run(tiny_pair, tmp_path_factory):
    """A 4-step forward-KL run of the tiny pair that wrote its report at the end (train.report = true)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = make_run(tmp_path_factory.mktemp("report"), tiny_pair, "kd")
        result = train(load_config(config))
    finally:
        torch.set_num_threads(threads)
    return result.run_dir


def _png_size(path: Path) -> tuple[int, int]:
    from matplotlib.image import imread

    image = imread(str(path))  # a real PNG reader
    return image.shape[1], image.shape[0]


def test_a_finished_run_writes_report_md_json_and_plots(finished_run):
    text = (finished_run / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == sorted([P.LOSS_PNG, P.AGREEMENT_PNG, P.BEFORE_AFTER_PNG])
    for name in linked:
        assert _png_size(finished_run / name) in ((700, 360), (900, 360))
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table] == ["Model", "Teacher", "Student before", "Student after"]
    data = json.loads((finished_run / "report.json").read_text(encoding="utf-8"))
    assert [m["role"] for m in data["models"]] == ["teacher", "before", "after"]
    assert data["steps"] == 4 and data["examples"] == 6 and len(data["samples"]) == 4
    assert set(data["samples"][0]["replies"]) == {"teacher", "before", "after"}
    assert not list(finished_run.glob(".*.partial"))


def test_report_numbers_are_measured_from_the_models_not_copied_from_the_logs(finished_run):
    from distill_gui.engine import models as M

    cfg = load_config(finished_run / "config.toml")
    tokenizer = M.load_tokenizer(finished_run / "final")
    held = tokenize_rows(read_data(cfg.data, seed=cfg.train.seed)[1], tokenizer, max_length=cfg.data.max_length,
                         loss_on=cfg.data.loss_on)[0]
    teacher = M.load_model(cfg.teacher.model, dtype="float32", device="cpu")
    after = M.load_model(finished_run / "final", dtype="float32", device="cpu")
    want = reference(after, teacher, held, len(tokenizer))
    metrics = finished_run / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    for record in lines:  # logs that lie: the report must not change
        if record["event"] == "eval":
            record.update(perplexity=12345.0, agreement=0.987)
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    R.report_run(finished_run)
    got = next(m for m in json.loads((finished_run / "report.json").read_text())["models"] if m["role"] == "after")
    assert got["scores"]["tokens"] == want["tokens"]
    assert got["scores"]["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)
    assert got["scores"]["agreement"] == pytest.approx(want["agreement"])
    assert got["scores"]["kl"] == pytest.approx(want["kl"], rel=1e-4)
    assert got["parameters"] == M.count_parameters_from_files(finished_run / "final")
    text = (finished_run / "report.md").read_text()
    assert "12345" not in text and "98.7" not in text


def test_the_ce_control_is_the_same_config_with_loss_ce_at_equal_steps(finished_run):
    C.report_run(finished_run, control=True)
    control = load_config(finished_run / R.CONTROL_DIR / "config.toml")
    run = load_config(finished_run / "config.toml")
    assert control.distill.loss == "ce" and control.train.max_steps == 4
    assert (control.data.train, control.train.lr, control.train.seed, control.student.model) == \
           (run.data.train, run.train.lr, run.train.seed, run.student.model)
    data = json.loads((finished_run / "report.json").read_text())
    roles = {m["role"]: m for m in data["models"]}
    assert set(roles) == {"teacher", "before", "after", "control"}
    assert roles["control"]["scores"]["perplexity"] != roles["after"]["scores"]["perplexity"]
    text = (finished_run / "report.md").read_text()
    assert "| CE control |" in text and "Against plain fine-tuning at equal steps" in text
    weights = next((finished_run / R.CONTROL_DIR / "final").glob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    C.report_run(finished_run, control=True)  # a finished matching control is reused, not retrained
    assert weights.stat().st_mtime_ns == stamp


def test_a_run_without_held_out_rows_says_its_numbers_come_from_training_rows(tiny_pair, tmp_path):
    events = []
    result = train(load_config(make_run(tmp_path, tiny_pair, "noheld", data={"eval_fraction": 0.0})),
                   on_event=events.append)
    text = (result.run_dir / "report.md").read_text()
    assert "training rows" in text and "flatter the students" in text
    assert json.loads((result.run_dir / "report.json").read_text())["examples"] == 24
    assert isinstance(events[-1], Finished)


def test_a_report_failure_is_a_warning_and_the_run_still_finishes(tiny_pair, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(R, "report_after_training", broken)
    events = []
    result = train(load_config(make_run(tmp_path, tiny_pair, "broken")), on_event=events.append)
    warnings = [e.message for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert any("No report.md: RuntimeError: disk on fire" in w and "--report" in w for w in warnings)
    assert isinstance(events[-1], Finished) and (result.final_dir / "config.json").is_file()
    assert not (result.run_dir / "report.md").exists()


def test_a_run_with_report_off_writes_none(tiny_pair, tmp_path):
    result = train(load_config(make_run(tmp_path, tiny_pair, "off", train={"report": False})))
    assert not (result.run_dir / "report.md").exists() and not (result.run_dir / P.LOSS_PNG).exists()


def test_a_stopped_run_ends_without_writing_a_report(tiny_pair, tmp_path):
    from distill_gui.events import Control, StepMetrics

    control = Control()
    result = train(load_config(make_run(tmp_path, tiny_pair, "stopped")), control=control,
                   on_event=lambda e: control.stop() if isinstance(e, StepMetrics) and e.step == 2 else None)
    assert result.stopped_early and result.step == 2 and not (result.run_dir / "report.md").exists()
    assert R.report_run(result.run_dir).is_file()  # on demand it is written


def test_plots_skip_what_was_not_logged(tmp_path):
    records = [{"event": "step", "step": 1, "loss": 2.0, "kd": 0.0, "ce": 2.0, "agreement": None},
               {"event": "step", "step": 2, "loss": float("nan"), "kd": 0.0, "ce": 1.5, "agreement": None},
               {"event": "eval", "step": 2, "loss": 1.7, "perplexity": 5.5, "agreement": None}]
    assert P.series(records, "step", "loss") == ([1], [2.0])
    assert P.series(records, "eval", "loss") == ([2], [1.7])
    assert P.plot_agreement(tmp_path / "a.png", records) is None and not (tmp_path / "a.png").exists()
    assert P.plot_losses(tmp_path / "l.png", records) == tmp_path / "l.png" and _png_size(tmp_path / "l.png")
    assert P.plot_before_after(tmp_path / "b.png", [("after", "after", None, None)]) is None
    (tmp_path / "m.jsonl").write_text('{"event": "step", "step": 1}\n{"event": "st')  # a line cut short
    assert P.read_metrics(tmp_path / "m.jsonl") == [{"event": "step", "step": 1}]


def test_sample_blocks_cannot_be_closed_by_the_text_inside():
    block = _block("look: ```python\nx = 1\n``` done")
    fence = block.split("text", 1)[0]
    assert fence == "````" and block.endswith("\n````") and block.count("````") == 2
