"""The fused loss never materialises (tokens x vocabulary) tensors beyond one chunk."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from distill_gui.config import LOSSES
from distill_gui.engine.losses import LossSpec, distill_loss


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operator returns (forward and backward alike)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.largest_op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest:
                self.largest, self.largest_op = t.numel(), str(func)
        return out


CASES = [(loss, "full") for loss in LOSSES] + [(loss, mode) for loss in ("forward_kl", "jsd")
                                               for mode in ("renorm", "tail")]


@pytest.mark.parametrize(("loss", "case"), CASES)
def test_no_tensor_beyond_one_chunk_of_logits(loss, case):
    n, h, v, chunk = 40, 4, 64, 8
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).requires_grad_()
    weight = torch.randn(v, h, generator=g).requires_grad_()
    t_hidden, t_weight = torch.randn(n, 6, generator=g), torch.randn(v, 6, generator=g)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::5] = -100
    spec = LossSpec(loss=loss, chunk_tokens=chunk, top_k=0 if case == "full" else 8,
                    top_k_mode="tail" if case == "tail" else "renorm")
    kw = {} if loss == "ce" else {"teacher_hidden": t_hidden, "teacher_head": t_weight}
    with _LargestTensor() as probe:
        res = distill_loss(hidden, weight, labels, spec, **kw)
        res.loss.backward()
    # One chunk of logits is chunk * v = 512 values; the full logits would be n * v = 2560.
    assert probe.largest <= chunk * v, (probe.largest, probe.largest_op)
    assert torch.isfinite(hidden.grad).all() and weight.grad.abs().sum() > 0


def test_cpu_workspace_is_reused_across_calls_and_can_be_released():
    from distill_gui.engine.losses.fused import release_workspace

    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(20, 4, generator=g).requires_grad_(), torch.randn(30, 4, generator=g)
    t_hidden, t_weight = torch.randn(20, 5, generator=g), torch.randn(30, 5, generator=g)
    labels = torch.randint(0, 30, (20,), generator=g)
    spec = LossSpec(chunk_tokens=8)
    release_workspace()
    first = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight)
    (g1,) = torch.autograd.grad(first.loss, hidden)
    second = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight)
    (g2,) = torch.autograd.grad(second.loss, hidden)
    assert torch.equal(first.loss, second.loss) and torch.equal(g1, g2)  # reused buffers, same result
    assert release_workspace() >= 4 * 8 * 30 * 4  # s, t, p, q buffers of one chunk
    assert release_workspace() == 0
