"""Plain float64 reference implementations of the distillation losses: the tests' oracle.

Written for clarity, not speed, and independently of the fused code: probabilities are formed
explicitly (exp / sum), divergences are written on probabilities with ``xlogy``, top-k buckets
are built with boolean masks, and gradients come from autograd. Same definitions as
``distill_gui.engine.losses`` (see its module docstring).
"""

from __future__ import annotations

import math

import torch

from distill_gui.engine.losses.spec import IGNORE_INDEX, TAIL_FLOOR, LossResult, LossSpec


def _softmax64(x: torch.Tensor) -> torch.Tensor:
    """Row softmax in float64, written out."""
    e = torch.exp(x - x.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def _kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row, with 0 log 0 = 0."""
    return (torch.xlogy(a, a) - torch.xlogy(a, b)).sum(dim=1)


def divergence(loss: str, p: torch.Tensor, q: torch.Tensor, beta: float, skew: float) -> torch.Tensor:
    """D(p, q) per row for probability rows p (teacher) and q (student)."""
    if loss == "forward_kl" or (loss == "jsd" and beta == 0.0):
        return _kl(p, q)
    if loss == "reverse_kl" or (loss == "jsd" and beta == 1.0):
        return _kl(q, p)
    if loss == "jsd":
        m = beta * p + (1.0 - beta) * q
        return beta * _kl(p, m) + (1.0 - beta) * _kl(q, m)
    if loss == "skew_forward_kl":
        return _kl(p, skew * p + (1.0 - skew) * q)
    if loss == "skew_reverse_kl":
        return _kl(q, (1.0 - skew) * p + skew * q)
    if loss == "tvd":
        return 0.5 * (p - q).abs().sum(dim=1)
    raise ValueError(loss)


def _topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (n, V) mask of each row's k largest scores."""
    order = torch.argsort(scores, dim=1, descending=True)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    rows = torch.arange(scores.shape[0]).unsqueeze(1)
    mask[rows, order[:, :k]] = True
    return mask


def _student_buckets(q: torch.Tensor, mask: torch.Tensor, ids_order: torch.Tensor, mode: str) -> torch.Tensor:
    """Student probabilities over the teacher's buckets, in the order of ``ids_order`` (n, k)."""
    top = torch.gather(q, 1, ids_order)
    if mode == "renorm":
        return top / top.sum(dim=1, keepdim=True)
    rest = (q * (~mask)).sum(dim=1, keepdim=True)
    return torch.cat([top, rest], dim=1)


def _buckets_live(p_full: torch.Tensor, t: torch.Tensor, k: int, mode: str):
    """Teacher buckets from live logits: (mask (n, V), ids (n, k), probabilities over buckets)."""
    mask = _topk_mask(t, k)
    ids = torch.stack([row.nonzero().squeeze(1) for row in mask]) if len(mask) \
        else torch.zeros((0, k), dtype=torch.long)
    top = torch.gather(p_full, 1, ids)
    if mode == "renorm":
        return mask, ids, top / top.sum(dim=1, keepdim=True)
    rest = (p_full * (~mask)).sum(dim=1, keepdim=True)
    return mask, ids, torch.cat([top, rest], dim=1)


def _buckets_cached(ids: torch.Tensor, logprobs: torch.Tensor, vocab: int, mode: str, T: float):
    """Teacher buckets from cached (ids, logprobs at T = 1)."""
    probs = torch.exp(logprobs.double())
    if mode == "tail":
        rest = torch.clamp(1.0 - probs.sum(dim=1, keepdim=True), min=TAIL_FLOOR)
        probs = torch.cat([probs, rest], dim=1)
    tempered = probs ** (1.0 / T)
    mask = torch.zeros((ids.shape[0], vocab), dtype=torch.bool)
    mask[torch.arange(ids.shape[0]).unsqueeze(1), ids] = True
    return mask, ids, tempered / tempered.sum(dim=1, keepdim=True)


def reference_losses(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
                     spec: LossSpec, vocab_size: int | None = None, *,
                     teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
                     num_tokens: int | None = None) -> LossResult:
    """The loss in float64, differentiable (autograd) w.r.t. ``student_logits``.

    Args:
        student_logits: (N, V_s) logits (any float dtype; promoted to float64 inside).
        teacher_logits: (N, V_t) logits, or None (loss "ce" or ``teacher_topk``).
        labels: (N,) ids, -100 = not counted.
        spec: the loss settings (chunk_tokens is irrelevant here).
        vocab_size: shared vocabulary; default: the student's width.
        teacher_topk: cached (ids, logprobs at T = 1), instead of teacher_logits.
        num_tokens: divisor; default: the counted tokens.
    """
    V = vocab_size or student_logits.shape[1]
    mask_rows = labels != IGNORE_INDEX
    n = int(mask_rows.sum())
    divisor = num_tokens if num_tokens is not None else n
    s = student_logits.double()[:, :V][mask_rows]
    y = labels[mask_rows]
    log_z = torch.log(torch.exp(s - s.max(dim=1, keepdim=True).values).sum(dim=1)) + s.max(dim=1).values
    ce_rows = log_z - s[torch.arange(n), y]
    nan = torch.tensor(math.nan, dtype=torch.float64)
    zero = torch.zeros((), dtype=torch.float64)
    ce = ce_rows.sum() / divisor if divisor else zero + 0.0 * s.sum()
    if spec.loss == "ce":
        return LossResult(loss=ce, kd=zero, ce=ce.detach(), agree=nan, n_tokens=n)
    T = spec.temperature
    q = _softmax64(s / T)
    if teacher_topk is not None:
        ids, logprobs = (x[mask_rows] for x in teacher_topk)
        if spec.top_k and spec.top_k < ids.shape[1]:
            keep = torch.argsort(logprobs, dim=1, descending=True)[:, :spec.top_k]
            ids, logprobs = ids.gather(1, keep), logprobs.gather(1, keep)
        mask, ids, p = _buckets_cached(ids, logprobs, V, spec.top_k_mode, T)
        qb = _student_buckets(q, mask, ids, spec.top_k_mode)
        t_argmax = ids.gather(1, logprobs.argmax(dim=1, keepdim=True)).squeeze(1)
    else:
        t = teacher_logits.double()[:, :V][mask_rows]
        t_argmax = t.argmax(dim=1)
        p_full = _softmax64(t / T)
        k = min(spec.top_k, V)
        if k and not (spec.top_k_mode == "tail" and k >= V):
            mask, ids, p = _buckets_live(p_full, t, k, spec.top_k_mode)
            qb = _student_buckets(q, mask, ids, spec.top_k_mode)
        else:
            p, qb = p_full, q
    kd_rows = T * T * divergence(spec.loss, p, qb, spec.beta, spec.skew)
    kd = kd_rows.sum() / divisor if divisor else zero + 0.0 * s.sum()
    loss = spec.alpha * kd + (1.0 - spec.alpha) * ce
    agree = (s.argmax(dim=1) == t_argmax).sum().double()
    return LossResult(loss=loss, kd=kd.detach(), ce=ce.detach(), agree=agree, n_tokens=n)
