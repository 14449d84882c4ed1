"""Run the chunked loss with Liger-Kernel's JSD kernel and compare it with the float64 reference.

Run as a script (tests/engine/test_liger.py starts it in a fresh process, where the environment
``DISTILL_GUI_LIGER=on`` and, on the CPU, ``TRITON_INTERPRET=1`` are set before Triton is imported):

    python tests/engine/liger_check.py cpu|cuda

Prints one JSON line: the probe's verdict, how many chunks went through Liger, and the largest
differences; exits 1 when Liger was not used or a value or gradient differs from the reference.
"""

from __future__ import annotations

import json
import sys

import torch

from distill_gui.engine.losses import LossSpec, distill_loss, liger
from distill_gui.engine.losses.reference import reference_losses

CASES = [("forward_kl", 0.5, 2.0), ("reverse_kl", 0.5, 2.0), ("jsd", 0.3, 1.0), ("jsd", 0.7, 2.0)]


def _inputs(device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    n, hidden, width, vocab = 13, 8, 41, 37  # vocab < width: the shared-vocabulary restriction
    student = torch.randn(n, hidden, generator=gen)
    weight = torch.randn(width, hidden, generator=gen) * 0.7
    teacher_logits = torch.randn(n, width + 3, generator=gen) * 2.5
    labels = torch.randint(0, vocab, (n,), generator=gen)
    labels[[2, 7]] = -100
    return [x.to(device) for x in (student, weight, teacher_logits, labels)] + [vocab]


def check(device: str) -> dict:
    used, reason = liger.verdict(torch.device(device))  # the probe, before chunks are counted
    calls = {"chunks": 0}
    inner = liger.jsd_sum_and_grad

    def counting(*args, **kwargs):
        calls["chunks"] += 1
        return inner(*args, **kwargs)

    liger.jsd_sum_and_grad = counting
    worst = {"loss": 0.0, "grad_hidden": 0.0, "grad_weight": 0.0}
    failures = []
    for index, (loss, beta, temperature) in enumerate(CASES):
        student, weight, teacher_logits, labels, vocab = _inputs(device, index)
        spec = LossSpec(loss=loss, temperature=temperature, alpha=0.8, beta=beta, chunk_tokens=4)
        h = student.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)
        got = distill_loss(h, w, labels, spec, teacher_hidden=teacher_logits, vocab_size=vocab)
        got.loss.backward()
        h64 = student.double().requires_grad_(True)
        w64 = weight.double().requires_grad_(True)
        want = reference_losses(h64 @ w64.T, teacher_logits.double(), labels, spec, vocab_size=vocab)
        want.loss.backward()
        pairs = {"loss": (got.loss, want.loss), "kd": (got.kd, want.kd), "ce": (got.ce, want.ce),
                 "grad_hidden": (h.grad, h64.grad), "grad_weight": (w.grad, w64.grad)}
        for name, (a, b) in pairs.items():
            diff = float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())
            if name in worst:
                worst[name] = max(worst[name], diff)
            if not torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(), rtol=1e-4, atol=2e-6):
                failures.append(f"{loss} beta={beta} T={temperature}: {name} differs by {diff:.3g}")
        if float(got.agree) != float(want.agree):
            failures.append(f"{loss}: agreement {float(got.agree)} vs {float(want.agree)}")
    return {"device": device, "used": used, "reason": reason, "liger_chunks": calls["chunks"],
            "cases": len(CASES), "max_abs_diff": worst, "failures": failures}


def main() -> int:
    report = check(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    print(json.dumps(report))
    return 0 if report["used"] and report["liger_chunks"] and not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
