"""The chunked, fused distillation loss: LM-head projections, loss and gradient per chunk of tokens.

For each chunk of counted tokens the student logits (and the teacher's) are projected from the
hidden states, the loss sums and the gradient w.r.t. those logits are computed together
(loss_kernels.chunk_step), and the gradient is immediately pushed through the head: the chunk's
rows of d/d(hidden) and its contribution to d/d(head weight). Full (tokens x vocabulary) logits
are never held; the memory beyond the inputs is a few (chunk x vocabulary) buffers plus the
gradients of the hidden states and of the head weight, which autograd needs anyway.

The gradient is computed in the forward pass (as Liger-Kernel's fused linear losses do) and
handed back, scaled by the incoming gradient, in backward: one pass instead of two.

On CUDA, with liger-kernel installed, the divergence of a chunk (forward / reverse KL, JSD over
the full vocabulary with a live teacher) comes from Liger-Kernel's Triton JSD kernel, called per
chunk (engine/liger.py), so the memory bound holds. Its fused linear JSD is not used: it allocates
a float32 loss buffer of the whole batch (tokens x vocabulary), which this module avoids, and it
returns neither the separate KD / CE terms nor the agreement count the trainer logs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import torch

from distill_gui.engine.losses import kernels as K


@dataclass
class Head:
    """A linear projection to the vocabulary, or the identity (the tensor already holds logits).

    Attributes:
        weight: (V_full, H) or None for the identity.
        bias: (V_full,) or None.
    """

    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


@dataclass
class FusedPlan:
    """Everything the fused loss needs besides the differentiable student tensors.

    Attributes:
        rows: (n,) int64 indices of the counted tokens in the inputs' first dimension.
        labels: (n,) int64 labels of those tokens.
        vocab: shared vocabulary V (columns / head rows beyond it are ignored).
        chunk: tokens per chunk.
        loss, temperature, alpha, beta, skew: as in LossSpec.
        scale: 1 / num_tokens (0 when nothing is counted).
        teacher: callable (start, end, workspace) -> the teacher's chunk for rows[start:end], or
            None for "ce".
        acc_dtype: float32 (or float64 when the inputs are float64).
    """

    rows: torch.Tensor
    labels: torch.Tensor
    vocab: int
    chunk: int
    loss: str
    temperature: float
    alpha: float
    beta: float
    skew: float
    scale: float
    teacher: Callable[[int, int, K.Workspace], object] | None
    acc_dtype: torch.dtype


def matmul_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """Dtype of the head matmuls: the autocast dtype when autocast is on, else the weight's."""
    device = x.device.type
    try:
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
    except (TypeError, AttributeError, RuntimeError):  # older torch: no per-device query
        pass
    return weight.dtype


def project(x: torch.Tensor, head: Head, vocab: int, acc_dtype: torch.dtype,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of the rows ``x`` restricted to the first ``vocab`` entries, as an acc_dtype tensor.

    Args:
        x: (C, H) hidden states, or (C, V_full) logits for the identity head.
        out: (C, vocab) acc_dtype buffer to write into (else a new tensor); never a view of ``x``.
    """
    if head.weight is None:
        return out.copy_(x[:, :vocab]) if out is not None else x[:, :vocab].to(acc_dtype, copy=True)
    mm = matmul_dtype(x, head.weight)
    w = head.weight[:vocab].to(mm)
    if out is not None and mm == acc_dtype:
        logits = torch.matmul(x.to(mm), w.T, out=out)
    else:
        logits = x.to(mm) @ w.T
    if head.bias is not None:
        logits += head.bias[:vocab].to(mm)
    if out is not None and logits is not out:
        return out.copy_(logits)
    return logits.to(acc_dtype)


_LOCAL = threading.local()


def workspace_for(device: torch.device) -> K.Workspace:
    """Chunk buffers for one call: kept per thread across calls on the CPU, where every fresh large
    allocation is page-faulted in again (measured: 10-30 % of a KD step); elsewhere a new workspace
    per call (the CUDA caching allocator already reuses memory)."""
    if device.type != "cpu":
        return K.Workspace()
    if getattr(_LOCAL, "workspace", None) is None:
        _LOCAL.workspace = K.Workspace()
    return _LOCAL.workspace


def release_workspace() -> int:
    """Free this thread's cached CPU chunk buffers (e.g. while training is paused); returns bytes freed."""
    ws = getattr(_LOCAL, "workspace", None)
    _LOCAL.workspace = None
    return ws.nbytes() if ws is not None else 0


class FusedDistillLoss(torch.autograd.Function):
    """loss = sum over counted tokens of (alpha * T^2 * D + (1 - alpha) * CE) * scale, chunked.

    forward(student, weight, bias, plan, need) -> (loss, kd_sum, ce_sum, agree); only ``loss`` is
    differentiable. ``need`` = (student, weight, bias) booleans: which gradients to compute.
    """

    @staticmethod
    def forward(ctx, student: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                plan: FusedPlan, need: tuple[bool, bool, bool]):
        head = Head(weight, bias)
        ws = workspace_for(student.device)
        grads = _GradBuffers.create(student, head, plan, need)
        totals = torch.zeros(3, dtype=torch.float64, device=student.device)  # kd, ce, agree
        weights = _chunk_weights(plan) if any(need) else None
        n = plan.rows.shape[0]
        for start in range(0, n, plan.chunk):
            end = min(start + plan.chunk, n)
            x = student.index_select(0, plan.rows[start:end])
            s = project(x, head, plan.vocab, plan.acc_dtype,
                        out=ws.get("s", end - start, plan.vocab, plan.acc_dtype, student.device))
            teacher = plan.teacher(start, end, ws) if plan.teacher is not None else None
            out = K.chunk_step(s, plan.labels[start:end], teacher, loss=plan.loss, temperature=plan.temperature,
                               beta=plan.beta, skew=plan.skew, weights=weights, ws=ws)
            totals += torch.stack([out.kd, out.ce, out.agree])
            if out.grad is not None:
                grads.add_chunk(plan.rows[start:end], x, out.grad, head, plan.vocab)
            del s, out, teacher
        kd, ce, agree = totals.unbind()
        if plan.loss == "ce":
            agree = torch.full_like(agree, float("nan"))
        total = plan.alpha * kd + (1.0 - plan.alpha) * ce if plan.loss != "ce" else ce
        finished = grads.finish(student, head)
        ctx.present = tuple(g is not None for g in finished)
        ctx.save_for_backward(*(g for g in finished if g is not None))  # freed after backward
        dtype = plan.acc_dtype
        stats = ((kd * plan.scale).to(dtype), (ce * plan.scale).to(dtype), agree.to(dtype))
        ctx.mark_non_differentiable(*stats)
        return ((total * plan.scale).to(dtype),) + stats

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _g_kd, _g_ce, _g_agree):
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) if present else None for present in ctx.present]
        if not bool(grad_loss == 1):  # the usual case needs no copy; a scaled loss (e.g. fp16 scaler) does
            grads = [None if g is None else g * grad_loss.to(g.dtype) for g in grads]
        return grads[0], grads[1], grads[2], None, None


def _chunk_weights(plan: FusedPlan) -> K.ChunkWeights:
    """Gradient weights of the KD and CE parts including the 1 / num_tokens scale."""
    if plan.loss == "ce":
        return K.ChunkWeights(kd=0.0, ce=plan.scale)
    return K.ChunkWeights(kd=plan.alpha * plan.scale, ce=(1.0 - plan.alpha) * plan.scale)


@dataclass
class _GradBuffers:
    """Accumulators for d/d(student), d/d(weight), d/d(bias) filled chunk by chunk."""

    student: torch.Tensor | None
    weight: torch.Tensor | None
    bias: torch.Tensor | None

    @classmethod
    def create(cls, student: torch.Tensor, head: Head, plan: FusedPlan, need: tuple[bool, bool, bool]
               ) -> "_GradBuffers":
        dev = student.device
        g_student = torch.zeros_like(student) if need[0] else None
        g_weight = g_bias = None
        if head.weight is not None and need[1]:
            g_weight = torch.zeros((plan.vocab, head.weight.shape[1]), dtype=_acc_for(head.weight), device=dev)
        if head.bias is not None and need[2]:
            g_bias = torch.zeros((plan.vocab,), dtype=_acc_for(head.bias), device=dev)
        return cls(g_student, g_weight, g_bias)

    def add_chunk(self, rows: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, head: Head, vocab: int) -> None:
        """Push one chunk's d/d(logits) (C, V) through the head into the accumulators."""
        if head.weight is None:
            if self.student is not None:
                self.student.index_put_((rows,), _pad_cols(grad, self.student.shape[1]).to(self.student.dtype),
                                        accumulate=True)
            return
        mm = matmul_dtype(x, head.weight)
        g = grad.to(mm)
        if self.student is not None:
            self.student.index_add_(0, rows, (g @ head.weight[:vocab].to(mm)).to(self.student.dtype))
        if self.weight is not None:
            if self.weight.dtype == mm:
                self.weight.addmm_(g.T, x.to(mm))
            else:
                self.weight += (g.T @ x.to(mm)).to(self.weight.dtype)
        if self.bias is not None:
            self.bias += grad.sum(0).to(self.bias.dtype)

    def finish(self, student: torch.Tensor, head: Head) -> tuple:
        """Gradients shaped and typed like the inputs (weight rows beyond V get zeros)."""
        g_weight = g_bias = None
        if self.weight is not None:
            g_weight = _pad_rows(self.weight, head.weight.shape[0]).to(head.weight.dtype)
        if self.bias is not None:
            g_bias = _pad_rows(self.bias, head.bias.shape[0]).to(head.bias.dtype)
        return self.student, g_weight, g_bias


def _acc_for(t: torch.Tensor) -> torch.dtype:
    """Accumulation dtype for a gradient of ``t``: float64 stays, everything else float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _pad_cols(x: torch.Tensor, width: int) -> torch.Tensor:
    """(C, V) -> (C, width) with zero columns appended."""
    if x.shape[1] == width:
        return x
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))


def _pad_rows(x: torch.Tensor, height: int) -> torch.Tensor:
    """(V, ...) -> (height, ...) with zero rows appended."""
    if x.shape[0] == height:
        return x
    pad = torch.zeros((height - x.shape[0],) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=0)
