"""`distill-gui train` and `distill-gui plan` from the command line: output, exit codes, messages."""

from __future__ import annotations

import json
import os
import signal

import pytest

from distill_gui.cli import main


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; a shared 2-core machine punishes two threads
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_config(tmp_path, tiny_pair, tiny_texts):
    """Write a small config over the tiny Qwen pair; returns a function (data file, student) -> path."""
    data = tmp_path / "train.jsonl"
    rows = [{"prompt": " ".join(t.split()[:2]), "response": " ".join(t.split()[2:])} if i % 2 else {"text": t}
            for i, t in enumerate(tiny_texts[:40])]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def write(data_file: str = "train.jsonl", student: str | None = None) -> str:
        path = tmp_path / "run.toml"
        path.write_text(f"""
name = "cli"
output_dir = "runs"
[teacher]
model = "{tiny_pair[0]}"
[student]
model = "{student or tiny_pair[1]}"
[data]
train = "{data_file}"
max_length = 48
[train]
max_steps = 4
batch_size = 4
grad_accum = 1
lr = 1e-3
log_every = 2
eval_every = 0
save_every = 0
""", encoding="utf-8")
        return str(path)

    return write


def test_train_prints_progress_and_a_summary(run_config, tmp_path, capsys):
    assert main(["train", run_config(), "--set", "train.max_steps=6"]) == 0
    err = capsys.readouterr().err
    assert "step 2/6 [" in err and "step 6/6 [########################] 100%" in err
    assert "tok/s" in err and "ETA" in err and "eval at step 6: loss" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("finished 6 steps in ") and "eval perplexity" in last
    assert last.endswith(str(tmp_path / "runs" / "cli" / "final"))


@pytest.mark.slow
def test_second_start_of_the_same_run_needs_resume(run_config, capsys):
    config = run_config()
    assert main(["train", config]) == 0
    assert main(["train", config]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", config, "--resume", "--set", "train.max_steps=6"]) == 0
    assert "resuming at step 4" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_with_a_checkpoint_and_final_model(run_config, tmp_path, capsys, monkeypatch):
    from distill_gui.engine import trainer

    real_train = trainer.train

    def train_with_interrupt(cfg, on_event, control, resume):
        def on_event_then_interrupt(event):
            on_event(event)
            if type(event).__name__ == "StepMetrics" and event.step == 2:
                os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl+C

        return real_train(cfg, on_event_then_interrupt, control, resume)

    monkeypatch.setattr(trainer, "train", train_with_interrupt)
    assert main(["train", run_config(), "--set", "train.max_steps=8", "--set", "train.log_every=1"]) == 0
    err = capsys.readouterr().err
    assert "stopping after this step" in err and "stopped at step 2 of 8" in err and "--resume" in err
    assert (tmp_path / "runs/cli/checkpoints/step-2").is_dir() and (tmp_path / "runs/cli/final/config.json").is_file()


@pytest.mark.parametrize("case, words", [
    ("malformed", "bad.jsonl, line 2: not valid JSON"),
    ("not_utf8", "bad.jsonl, line 1: not UTF-8"),
    ("empty", "bad.jsonl: the file has no rows"),
    ("missing_data", "train data file not found"),
    ("missing_model", "student folder not found"),
    ("bad_value", "'train.batch_size' must be >= 1"),
])
def test_bad_input_exits_2_with_a_message_and_no_traceback(case, words, run_config, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    content = {"malformed": b'{"text": "fine"}\n{"text": oops}\n', "not_utf8": b'{"text": "caf\xe9"}\n',
               "empty": b"\n"}.get(case)
    if content is not None:
        bad.write_bytes(content)
    args = ["train", run_config(data_file="bad.jsonl" if content is not None else
                                ("nowhere.jsonl" if case == "missing_data" else "train.jsonl"),
                                student="./no/such/student" if case == "missing_model" else None)]
    if case == "bad_value":
        args += ["--set", "train.batch_size=0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "cli" / "final").exists()


def test_plan_prints_the_estimate_and_the_verdict(run_config, capsys):
    assert main(["plan", run_config()]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("Needs about ") and " free on cpu: " in first and first.endswith(("fits.", "not fit."))
    for part in ("teacher weights", "student weights", "gradients", "optimizer state", "activations", "loss"):
        assert part in out


def test_progress_bar_redraws_in_place_on_a_terminal():
    import io

    from distill_gui.commands.train import ProgressPrinter
    from distill_gui.events import EvalMetrics, StepMetrics
    from distill_gui.formatting import human_duration

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    printer = ProgressPrinter(out)
    for step in (1, 2):
        printer(StepMetrics(step=step, total_steps=4, loss=1.5, kd=1.0, ce=2.0, lr=1e-3, grad_norm=1.0,
                            tokens_per_s=1234.0, agreement=0.5, memory_bytes=0, elapsed_s=1.0, eta_s=125.0))
    printer(EvalMetrics(step=2, loss=1.4, kd=1.0, ce=1.9, perplexity=6.7, agreement=0.5))
    text = out.getvalue()
    assert text.count("\r\033[K") == 3 and "\n" not in text.split("eval at step 2")[0]  # bar lines overwrite
    assert "step 2/4 [############------------]  50%" in text and "agree 50.0%" in text and "ETA 2 min 05 s" in text
    assert text.endswith("eval at step 2: loss 1.4000, perplexity 6.70, agreement 50.0%\n")
    assert human_duration(3725) == "1 h 02 min" and human_duration(None) == "–"
