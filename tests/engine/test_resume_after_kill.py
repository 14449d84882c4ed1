"""A run killed mid-way (a real process, SIGKILL) and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from distill_gui.config import load_config
from distill_gui.engine import trainer as T

from .helpers import load_weights, write_config

STEPS = 24


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path, toy):
    config = write_config(tmp_path / "run.toml", teacher_dir=str(toy.teacher), student_dir=str(toy.student),
                          data_file=str(toy.train_file), output_dir=str(tmp_path / "runs"), name="killed",
                          train={"max_steps": STEPS, "save_every": 3, "keep_checkpoints": 2, "log_every": 1,
                                 "eval_every": 5, "batch_size": 4, "grad_accum": 2})
    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DISTILL_GUI_HOME": str(tmp_path / "home")}
    process = subprocess.Popen([sys.executable, "-m", "distill_gui", "train", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((run_dir / "checkpoints").glob("step-*/state.json")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "final").exists(), "the run finished before the kill; the test proves nothing"
    # a save interrupted by a kill leaves a temp folder: it must be ignored and cleaned up
    partial = run_dir / "checkpoints" / ".step-99.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"partial")

    events = []
    resumed = T.train(load_config(config), on_event=events.append, resume=True)
    whole = T.train(load_config(config, ["name=whole"]))
    start = next(e for e in events if type(e).__name__ == "RunStarted").start_step
    assert 0 < start < STEPS and resumed.step == whole.step == STEPS
    assert not partial.exists()
    a, b = load_weights(resumed.final_dir), load_weights(whole.final_dir)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-7, f"resumed weights differ from the uninterrupted run by {worst}"
    assert any(not torch.equal(a[k], load_weights(toy.student)[k]) for k in a)  # it did train
