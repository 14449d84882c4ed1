"""Liger-Kernel's Triton JSD kernel inside the chunked loss, where it covers the loss.

What it covers: forward KL, reverse KL and generalized JSD over the full shared vocabulary, with
the teacher's live logits (Liger's generalized JSD is forward KL at beta = 0 and reverse KL at
beta = 1, as ours is). The kernel computes each row's divergence and its gradient with respect to
the student's log-probabilities in one pass; ``loss_kernels`` calls it once per chunk of tokens, so
the memory bound of the chunked loss holds (a few chunk x vocabulary buffers, never the batch's).
Top-k, skew KL, TVD, a cached or Ollama teacher and "ce" keep our own kernels.

Liger's fused linear JSD is not used: it allocates a float32 loss buffer of the whole batch
(tokens x vocabulary), which the chunked loss exists to avoid.

``DISTILL_GUI_LIGER`` chooses: ``auto`` (default: on CUDA when ``liger-kernel`` is installed),
``off``, or ``on`` (any device; on the CPU Triton needs ``TRITON_INTERPRET=1``, which the tests
use). Before first use a probe compares Liger's values with ours on a small input, so a Liger
version whose beta convention or reduction differs is detected and not used.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Callable

import torch

COVERED = frozenset({"forward_kl", "reverse_kl", "jsd"})
ENV = "DISTILL_GUI_LIGER"
MODES = ("auto", "off", "on")

# (device type) -> (usable, reason); the probe runs once per device type and process.
_VERDICTS: dict[str, tuple[bool, str]] = {}
_LOCK = threading.Lock()

JsdFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def mode() -> str:
    """The mode from the environment; an unknown value counts as ``auto``."""
    value = os.environ.get(ENV, "auto").strip().lower()
    return value if value in MODES else "auto"


def installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def verdict(device: torch.device) -> tuple[bool, str]:
    """Whether the chunked loss uses Liger's kernel on ``device``, and why (a sentence for the log)."""
    chosen = mode()
    if chosen == "off":
        return False, f"Liger-Kernel is switched off ({ENV}=off)."
    if chosen == "auto" and device.type != "cuda":
        return False, "Liger-Kernel runs on CUDA only; the loss uses its own chunked kernels."
    if not installed():
        return False, "Liger-Kernel is not installed (pip install liger-kernel); the loss uses its own kernels."
    with _LOCK:
        if device.type not in _VERDICTS:
            _VERDICTS[device.type] = _probe_liger(device)
        return _VERDICTS[device.type]


def active(device: torch.device, loss: str, teacher_is_logits: bool) -> bool:
    """True when this chunk's divergence goes through Liger's kernel."""
    return loss in COVERED and teacher_is_logits and verdict(device)[0]


def _liger_jsd(lq: torch.Tensor, lp: torch.Tensor, beta: float) -> torch.Tensor:
    """Liger's generalized JSD of rows of log-probabilities: the mean over rows (its reduction)."""
    from liger_kernel.transformers.functional import liger_jsd

    return liger_jsd(lq, lp, None, beta)


def jsd_sum_and_grad(lq: torch.Tensor, lp: torch.Tensor, beta: float, jsd: JsdFn = _liger_jsd
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over rows of D(p, q) and dD/d(log q), from Liger's kernel (loss and gradient in one pass).

    Args:
        lq: (C, V) float32 student log-probabilities at T.
        lp: (C, V) float32 teacher log-probabilities at T.
        beta: generalized-JSD beta in Liger's convention (0 = forward KL, 1 = reverse KL).
    """
    rows = lq.shape[0]
    with torch.enable_grad():  # the chunked loss runs inside an autograd Function's forward
        x = lq.detach().requires_grad_(True)
        mean = jsd(x, lp.detach(), beta)
        (grad,) = torch.autograd.grad(mean, x)
    grad = grad.mul_(rows) if grad.is_contiguous() else grad * rows  # autograd may hand back a broadcast view
    return mean.detach().double() * rows, grad


def _reference_jsd(lq: torch.Tensor, lp: torch.Tensor, beta: float) -> torch.Tensor:
    """Our definition per row, float64 (the tests' oracle, losses_reference): the probe's yardstick."""
    from distill_gui.engine.losses.reference import (
        divergence,  # imported when first probed: the reference is needed only then
    )

    return divergence("jsd", lp.double().exp(), lq.double().exp(), beta, 0.0)


def probe(device: torch.device, jsd: JsdFn = _liger_jsd) -> tuple[bool, str]:
    """Compare ``jsd`` with our definition at beta 0, 0.3 and 1 on a small input (values and gradients)."""
    gen = torch.Generator().manual_seed(0)
    lq = torch.log_softmax(torch.randn(3, 40, generator=gen) * 2, 1).to(device)
    lp = torch.log_softmax(torch.randn(3, 40, generator=gen) * 2, 1).to(device)
    for beta in (0.0, 0.3, 1.0):
        total, grad = jsd_sum_and_grad(lq, lp, beta, jsd)
        x = lq.detach().double().cpu().requires_grad_(True)
        want = _reference_jsd(x, lp.double().cpu(), beta).sum()
        (want_grad,) = torch.autograd.grad(want, x)
        if not (torch.allclose(total.cpu(), want, rtol=1e-4, atol=1e-6)
                and torch.allclose(grad.double().cpu(), want_grad, rtol=1e-3, atol=1e-5)):
            return False, (f"Liger-Kernel's JSD differs from distill-gui's definition at beta = {beta} "
                           f"({float(total):.6g} vs {float(want.detach()):.6g}); the loss uses its own kernels.")
    return True, f"Liger-Kernel's JSD kernel computes the divergence per chunk on {device.type}."


def _probe_liger(device: torch.device) -> tuple[bool, str]:
    try:
        with torch.enable_grad():  # first use comes from inside the loss's autograd Function
            return probe(device)
    except Exception as exc:  # an import or Triton failure: our kernels still work
        return False, f"Liger-Kernel could not run on {device.type} ({type(exc).__name__}: {exc}); " \
                      f"the loss uses its own kernels."


def forget_verdicts() -> None:
    """Run the probe again on next use (tests change the environment)."""
    with _LOCK:
        _VERDICTS.clear()
