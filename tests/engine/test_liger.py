"""Liger-Kernel inside the chunked loss: when it is used, the probe that guards it, and its values.

The values are checked by tests/engine/liger_check.py in a fresh process against the float64
reference: on the CPU through Triton's interpreter (TRITON_INTERPRET=1) when liger-kernel is
installed, and on CUDA when a GPU is there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill_gui.engine.losses import liger
from distill_gui.engine.losses.liger import _reference_jsd

CHECK = Path(__file__).with_name("liger_check.py")
HAVE_LIGER = all(importlib.util.find_spec(name) is not None for name in ("liger_kernel", "triton"))


@pytest.fixture(autouse=True)
def fresh_verdicts():
    liger.forget_verdicts()
    yield
    liger.forget_verdicts()


def test_auto_mode_keeps_liger_off_the_cpu_and_off_mode_keeps_it_off_cuda(monkeypatch):
    monkeypatch.delenv(liger.ENV, raising=False)
    used, reason = liger.verdict(torch.device("cpu"))
    assert not used and "CUDA only" in reason
    monkeypatch.setenv(liger.ENV, "off")
    used, reason = liger.verdict(torch.device("cuda"))
    assert not used and "switched off" in reason
    monkeypatch.setenv(liger.ENV, "nonsense")
    assert liger.mode() == "auto"


@pytest.mark.skipif(HAVE_LIGER, reason="liger-kernel is installed here")
def test_on_mode_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setenv(liger.ENV, "on")
    used, reason = liger.verdict(torch.device("cpu"))
    assert not used and "pip install liger-kernel" in reason


def test_only_full_vocabulary_live_teacher_divergences_are_covered(monkeypatch):
    monkeypatch.setenv(liger.ENV, "on")
    monkeypatch.setattr(liger, "verdict", lambda device: (True, "usable"))
    assert all(liger.active(torch.device("cpu"), loss, True) for loss in ("forward_kl", "reverse_kl", "jsd"))
    for loss in ("skew_forward_kl", "skew_reverse_kl", "tvd", "ce"):
        assert not liger.active(torch.device("cpu"), loss, True)
    assert not liger.active(torch.device("cpu"), "forward_kl", teacher_is_logits=False)  # top-k / cached


def _mean_of(per_row):
    return lambda lq, lp, beta: per_row(lq, lp, beta).mean().float()


def test_probe_accepts_our_definition_and_rejects_other_conventions():
    ours = _mean_of(_reference_jsd)
    assert liger.probe(torch.device("cpu"), ours)[0]
    mirrored = _mean_of(lambda lq, lp, beta: _reference_jsd(lq, lp, 1.0 - beta))  # beta weighting the other side
    ok, reason = liger.probe(torch.device("cpu"), mirrored)
    assert not ok and "beta = 0.0" in reason
    summed = lambda lq, lp, beta: _reference_jsd(lq, lp, beta).sum().float()  # noqa: E731 (another reduction)
    assert not liger.probe(torch.device("cpu"), summed)[0]
    right_value_no_gradient = lambda lq, lp, beta: (_reference_jsd(lq.detach(), lp, beta).mean().float()  # noqa: E731
                                                    + 0 * lq.sum())
    assert not liger.probe(torch.device("cpu"), right_value_no_gradient)[0]


def test_sum_and_gradient_from_a_mean_reduction_match_autograd_of_the_sum():
    gen = torch.Generator().manual_seed(3)
    lq = torch.log_softmax(torch.randn(4, 9, generator=gen), 1)
    lp = torch.log_softmax(torch.randn(4, 9, generator=gen), 1)
    total, grad = liger.jsd_sum_and_grad(lq, lp, 0.4, _mean_of(_reference_jsd))
    x = lq.double().requires_grad_(True)
    want = _reference_jsd(x, lp.double(), 0.4).sum()
    (want_grad,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(total, want.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-5, atol=1e-7)


def _run_check(device: str, **env: str) -> dict:
    result = subprocess.run([sys.executable, str(CHECK), device], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **env})
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from liger_check.py (exit {result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert result.returncode == 0, report
    return report


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_LIGER, reason="liger-kernel (and triton) not installed")
def test_liger_kernel_in_the_chunked_loss_matches_the_reference_on_cpu():
    report = _run_check("cpu", TRITON_INTERPRET="1", DISTILL_GUI_LIGER="on")
    assert report["used"] and report["liger_chunks"] >= report["cases"] and not report["failures"]


@pytest.mark.skipif(not (HAVE_LIGER and torch.cuda.is_available()), reason="needs CUDA and liger-kernel")
def test_liger_kernel_in_the_chunked_loss_matches_the_reference_on_cuda():
    report = _run_check("cuda", DISTILL_GUI_LIGER="auto")
    assert report["used"] and report["liger_chunks"] >= report["cases"] and not report["failures"]


def test_a_run_says_which_kernel_and_trains_on_when_liger_cannot_run(tmp_path, toy, monkeypatch):
    from distill_gui.config import load_config
    from distill_gui.engine import trainer
    from distill_gui.events import Finished, LogMessage

    from .helpers import write_config

    monkeypatch.setenv(liger.ENV, "on")          # asked for on the CPU, without Triton's interpreter:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # Liger cannot run (or is not installed)
    cfg = load_config(write_config(tmp_path / "run.toml", teacher_dir=str(toy.teacher), student_dir=str(toy.student),
                                   data_file=str(toy.train_file), output_dir=str(tmp_path / "runs"),
                                   train={"max_steps": 2}))
    events = []
    result = trainer.train(cfg, on_event=events.append)
    said = [e.message for e in events if isinstance(e, LogMessage) and "Liger-Kernel" in e.message]
    assert len(said) == 1 and "its own kernels" in said[0]
    assert isinstance(events[-1], Finished) and result.step == 2
