"""``distill-gui eval``: JSON numbers that match an independent float64 computation, run folders and their
report, and input mistakes answered with exit code 2 and a message that names the problem."""

from __future__ import annotations

import json

import pytest

from distill_gui import cli
from distill_gui.config import load_config
from tests.engine.helpers import write_config, write_jsonl
from tests.engine.test_evaluate import reference

ROWS = [{"prompt": "What color is the river?", "response": "The river is blue and slow."},
        {"prompt": "Name a bird.", "response": "A small red bird sings."},
        {"text": "The mountain is heavy and the tree is green, because water is light."}]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _eval(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["eval", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_prints_perplexity_agreement_and_kl_as_json_matching_a_reference(tiny_pair, tmp_path, capsys):
    from distill_gui.engine import models as M
    from distill_gui.engine.data import read_rows, tokenize_rows

    teacher_dir, student_dir = tiny_pair
    data = write_jsonl(tmp_path / "held.jsonl", ROWS)
    code, out, err = _eval(capsys, str(student_dir), "--data", str(data), "--teacher", str(teacher_dir),
                           "--samples", "2")
    assert code == 0, err
    result = json.loads(out)
    tokenizer = M.load_tokenizer(student_dir)
    examples = tokenize_rows(read_rows(data), tokenizer, max_length=512, loss_on="response")[0]
    want = reference(M.load_model(student_dir, dtype="float32", device="cpu"),
                     M.load_model(teacher_dir, dtype="float32", device="cpu"), examples, len(tokenizer))
    scores = result["scores"]
    assert scores["tokens"] == want["tokens"] and result["examples"] == 3
    assert scores["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)
    assert scores["agreement"] == pytest.approx(want["agreement"])
    assert scores["kl"] == pytest.approx(want["kl"], rel=1e-4)
    assert result["teacher"]["scores"]["agreement"] is None and result["teacher"]["scores"]["perplexity"] > 1
    assert result["size"]["parameters"] == M.count_parameters_from_files(student_dir)
    assert result["teacher"]["size"]["parameters"] == M.count_parameters_from_files(teacher_dir)
    assert result["size"]["tokens_per_s"] > 0 and result["teacher"]["size"]["tokens_per_s"] > 0
    assert [s["reference"] for s in result["samples"]] == ["The river is blue and slow.", "A small red bird sings."]
    assert set(result["samples"][0]["replies"]) == {"model", "teacher"}


def test_a_run_folder_is_evaluated_with_its_teacher_and_gets_its_report(tiny_pair, tmp_path, capsys):
    from distill_gui.engine.trainer import train

    data = write_jsonl(tmp_path / "train.jsonl", ROWS * 6)
    config = write_config(tmp_path / "run.toml", teacher_dir=str(tiny_pair[0]), student_dir=str(tiny_pair[1]),
                          data_file=str(data), output_dir=str(tmp_path / "runs"), name="run",
                          data={"eval_fraction": 0.25}, train={"max_steps": 2, "report": False})
    run_dir = train(load_config(config)).run_dir
    assert not (run_dir / "report.md").exists()
    code, out, err = _eval(capsys, str(run_dir), "--report", "--samples", "1")
    assert code == 0, err
    result = json.loads(out)
    assert [m["role"] for m in result["models"]] == ["teacher", "before", "after"]
    assert result["report"] == str(run_dir / "report.md") and (run_dir / "report.md").is_file()
    assert len(result["samples"]) == 1 and "loading the teacher" in err and "scoring the held-out examples" in err


@pytest.mark.parametrize("args, message", [
    (["{student}"], "--data is needed to evaluate the model folder"),
    (["{student}", "--report"], "is not a run folder"),
    (["{student}", "--data", "{missing}"], "eval data file not found"),
    (["{student}", "--data", "{held}", "--teacher", "{nowhere}"], "teacher folder not found"),
    (["{student}", "--data", "{held}", "--samples", "-1"], "--samples must be 0 or more"),
])
def test_input_mistakes_exit_2_with_a_message(tiny_pair, tmp_path, capsys, args, message):
    held = write_jsonl(tmp_path / "held.jsonl", ROWS)
    names = {"student": tiny_pair[1], "missing": tmp_path / "missing.jsonl", "held": held,
             "nowhere": tmp_path / "no-teacher"}
    code, out, err = _eval(capsys, *(a.format(**names) for a in args))
    assert code == 2 and out == "" and message in err and "Traceback" not in err
