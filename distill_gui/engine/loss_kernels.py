"""Per-chunk loss math: values and analytic gradients w.r.t. the student logits, in one pass.

Everything here works on one chunk of ``C`` counted tokens and the (restricted) vocabulary ``V``.
The tensors handed in are owned by the callee (fresh chunk buffers), so they are modified in place
where that saves a (C, V) allocation. Notation: ``s`` student logits, ``t`` teacher logits,
``u = s / T``, ``q = softmax(u)``, ``p = softmax(t / T)``.

Every divergence ``D(p, q)`` is expressed over *buckets* ``b`` (the V tokens, the teacher's top-k
tokens, or the top-k tokens plus one tail bucket). Its gradient w.r.t. the tempered student logits
follows from one per-bucket quantity ``R_b = q_b * dD/dq_b`` (constants in dD/dq_b cancel):

    dD/du_l = (q_l / q_b(l)) * R_b(l) - q_l * sum_b R_b

which for full-vocabulary buckets is ``R - q * sum(R)`` (forward KL: ``q - p``). The KD term is
``T^2 * D``, so its gradient w.r.t. ``s`` is ``T * dD/du``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Floor for the teacher's tail mass computed from cached top-k log-probabilities, which can round
#: to a sum of probabilities >= 1 (bf16/fp16 caches). Keeps log(tail) finite.
TAIL_FLOOR = 1e-8


@dataclass
class TeacherLogits:
    """Teacher logits of one chunk, restricted to the shared vocabulary: (C, V), owned."""

    logits: torch.Tensor


@dataclass
class TeacherBuckets:
    """Teacher top-k of one chunk, already tempered and normalised over its buckets.

    Attributes:
        ids: (C, k) int64 token ids of the teacher's top-k.
        logp: (C, k) log-probabilities at T renormalised over the k (renorm mode), or (C, k + 1)
            with the tail bucket last (tail mode).
        argmax: (C,) int64 the teacher's most likely token (for the agreement count).
    """

    ids: torch.Tensor
    logp: torch.Tensor
    argmax: torch.Tensor


@dataclass
class ChunkResult:
    """Sums over the chunk's tokens and the gradient of the chunk's share of the loss.

    Attributes:
        kd: scalar, sum over tokens of T^2 * D (0 for loss "ce").
        ce: scalar, sum over tokens of the hard-label cross-entropy at T = 1.
        agree: scalar, count of tokens where student and teacher argmax agree (NaN for "ce").
        grad: (C, V) d(loss share)/d(student logits), already multiplied by the reduction scale,
            or None when no gradient was asked for.
    """

    kd: torch.Tensor
    ce: torch.Tensor
    agree: torch.Tensor
    grad: torch.Tensor | None


def _lse_from_softmax(x: torch.Tensor, probs: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """logsumexp of rows of ``x`` from their softmax: x[a] - log(softmax(x)[a]) at the argmax a.

    Exact up to rounding (the softmax at the argmax is >= 1/V, never tiny) and saves a pass.
    """
    col = amax.unsqueeze(1)
    return x.gather(1, col).squeeze(1) - probs.gather(1, col).squeeze(1).log()


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of two (C, V) tensors without a (C, V) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _xdiff(w: torch.Tensor, la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """w * (la - lb) with the convention 0 * (anything) = 0 (so 0 * log 0 terms vanish)."""
    return torch.where(w > 0, w * (la - lb), torch.zeros((), dtype=w.dtype, device=w.device))


def _mix_log(la: torch.Tensor, wa: float, lb: torch.Tensor, wb: float) -> torch.Tensor:
    """log(wa * exp(la) + wb * exp(lb)) for weights in [0, 1], stable."""
    if wa == 0.0:
        return lb + math.log(wb)
    if wb == 0.0:
        return la + math.log(wa)
    return torch.logaddexp(la + math.log(wa), lb + math.log(wb))


def bucket_divergence(loss: str, lp: torch.Tensor, lq: torch.Tensor, *, beta: float, skew: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Divergence between teacher and student bucket distributions, and its R = q * dD/dq.

    Args:
        loss: one of forward_kl, reverse_kl, jsd, skew_forward_kl, skew_reverse_kl, tvd.
        lp: (C, B) teacher log-probabilities over B buckets (rows sum to 1 in probability).
        lq: (C, B) student log-probabilities over the same buckets.
        beta: JSD weight of the teacher in the mixture (0 -> forward KL, 1 -> reverse KL).
        skew: weight of the distribution itself in the skewed mixture (0 -> plain KL).

    Returns:
        (D, R): D (C,) the divergence per token, R (C, B) as in the module docstring.
    """
    if loss == "jsd" and beta == 0.0:
        loss = "forward_kl"
    elif loss == "jsd" and beta == 1.0:
        loss = "reverse_kl"
    p, q = lp.exp(), lq.exp()
    if loss == "forward_kl":
        return _xdiff(p, lp, lq).sum(1), -p
    if loss == "reverse_kl":
        r = _xdiff(q, lq, lp)
        return r.sum(1), r
    if loss == "jsd":
        lm = _mix_log(lp, beta, lq, 1.0 - beta)
        rq = _xdiff(q, lq, lm)
        d = beta * _xdiff(p, lp, lm).sum(1) + (1.0 - beta) * rq.sum(1)
        return d, (1.0 - beta) * rq
    if loss == "skew_forward_kl":
        lm = _mix_log(lp, skew, lq, 1.0 - skew)
        d = _xdiff(p, lp, lm).sum(1)
        r = torch.where(p > 0, (lq + lp - lm).exp(), torch.zeros((), dtype=p.dtype, device=p.device))
        return d, -(1.0 - skew) * r
    if loss == "skew_reverse_kl":
        lm = _mix_log(lp, 1.0 - skew, lq, skew)
        rq = _xdiff(q, lq, lm)
        r = rq if skew == 0.0 else rq - skew * torch.where(q > 0, (2 * lq - lm).exp(), torch.zeros_like(q))
        return rq.sum(1), r
    if loss == "tvd":
        diff = q - p
        return 0.5 * diff.abs().sum(1), 0.5 * q * diff.sign()
    raise ValueError(f"unknown divergence {loss!r}")


def teacher_buckets_from_logits(t: torch.Tensor, k: int, mode: str, temperature: float) -> TeacherBuckets:
    """The teacher's top-k buckets from live logits (exact tempered probabilities).

    Renorm: log softmax over the k of t/T. Tail: log softmax(t/T) over the full vocabulary at the
    k ids, plus the exact remaining mass (logsumexp over the other tokens) as a last bucket.

    Args:
        t: (C, V) teacher logits at T = 1 (owned; may be modified).
        k: number of teacher tokens (< V in tail mode).
        mode: "renorm" or "tail".
        temperature: T.
    """
    argmax = t.argmax(1)
    ids = torch.topk(t, k, dim=1, sorted=False).indices
    if temperature != 1.0:
        t.mul_(1.0 / temperature)
    top = t.gather(1, ids)
    if mode == "renorm":
        return TeacherBuckets(ids, torch.log_softmax(top, dim=1), argmax)
    lse = torch.logsumexp(t, dim=1, keepdim=True)
    tail = torch.logsumexp(t.scatter_(1, ids, float("-inf")), dim=1, keepdim=True)
    return TeacherBuckets(ids, torch.cat([top - lse, tail - lse], dim=1), argmax)


def teacher_buckets_from_cache(ids: torch.Tensor, logprobs: torch.Tensor, mode: str, temperature: float
                               ) -> TeacherBuckets:
    """The teacher's top-k buckets from cached (ids, log-probabilities at T = 1).

    Renorm: log softmax over the k of logprob / T (the same as the live definition). Tail: the
    (k + 1)-point distribution (the k probabilities and the remaining mass r = 1 - sum, floored at
    TAIL_FLOOR) tempered as a whole: log softmax of (logprobs, log r) / T. (The tail's own shape is
    unknown, so it is tempered as one token; at T = 1 this is exact.)

    Args:
        ids: (C, k) int64 token ids.
        logprobs: (C, k) log-probabilities at T = 1 (any float dtype).
        mode: "renorm" or "tail".
        temperature: T.
    """
    argmax = ids.gather(1, logprobs.argmax(1, keepdim=True)).squeeze(1)
    if mode == "tail":
        mass = torch.logsumexp(logprobs, dim=1, keepdim=True)
        rest = (-torch.expm1(mass)).clamp(min=TAIL_FLOOR).log()
        logprobs = torch.cat([logprobs, rest], dim=1)
    return TeacherBuckets(ids, torch.log_softmax(logprobs / temperature, dim=1), argmax)


@dataclass(frozen=True)
class ChunkWeights:
    """Weights of the two gradient parts: d(loss)/ds = kd * T * dD/du + ce * (softmax(s) - onehot).

    Both already include the reduction scale (1 / num_tokens); zero means that part needs no gradient.
    """

    kd: float
    ce: float


def _student_ce(s: torch.Tensor, labels: torch.Tensor, amax: torch.Tensor, need_softmax: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hard-label cross-entropy rows (T = 1) and, when asked, softmax(s) (a new (C, V) buffer)."""
    picked = s.gather(1, labels.unsqueeze(1)).squeeze(1)
    if not need_softmax:
        return torch.logsumexp(s, dim=1) - picked, None
    sm = torch.softmax(s, dim=1)
    return _lse_from_softmax(s, sm, amax) - picked, sm


def _kd_full_forward_kl(u: torch.Tensor, q: torch.Tensor, t: torch.Tensor, temperature: float,
                        want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward KL over the full vocabulary, the fast path: two softmaxes, one row-dot, q - p.

    KL(p || q) = sum p * (t/T - u) - lse(t/T) + lse(u), computed without log-prob buffers.
    Returns (D (C,), dD/du (C, V) written into q's buffer, or None).
    """
    amax_u = u.argmax(1)
    if temperature != 1.0:
        t.mul_(1.0 / temperature)
    p = torch.softmax(t, dim=1)
    lse_t = _lse_from_softmax(t, p, t.argmax(1))
    lse_u = _lse_from_softmax(u, q, amax_u)
    diff = t.sub_(u)
    d = _rowdot(p, diff) - lse_t + lse_u
    bad = ~torch.isfinite(d)
    if bool(bad.any()):  # -inf teacher logits: 0 * (-inf) in the dot product; apply 0 * log 0 = 0
        rows = bad.nonzero().squeeze(1)
        pr, dr = p[rows], diff[rows]
        fixed = torch.where(pr > 0, pr * dr, torch.zeros_like(pr)).sum(1)
        d[rows] = fixed - lse_t[rows] + lse_u[rows]
    if not want_grad:
        return d, None
    return d, q.sub_(p)


def _kd_full_generic(loss: str, u: torch.Tensor, t: torch.Tensor, temperature: float, beta: float, skew: float,
                     want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Any divergence over the full vocabulary through bucket_divergence. Returns (D, dD/du)."""
    lq = torch.log_softmax(u, dim=1)
    if temperature != 1.0:
        t.mul_(1.0 / temperature)
    lp = torch.log_softmax(t, dim=1)
    d, r = bucket_divergence(loss, lp, lq, beta=beta, skew=skew)
    if not want_grad:
        return d, None
    return d, r.sub_(lq.exp_().mul_(r.sum(1, keepdim=True)))


def _kd_topk(loss: str, s: torch.Tensor, teacher: TeacherBuckets, temperature: float, beta: float, skew: float,
             want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A divergence over the teacher's top-k buckets (renorm: k buckets; tail: k + 1).

    Student buckets: log softmax(s/T) over the full vocabulary gathered at the teacher ids; renorm
    renormalises them over the k, tail adds the remaining mass as the last bucket.
    Returns (D (C,), dD/du (C, V) or None).
    """
    ids = teacher.ids
    k = ids.shape[1]
    su = s.gather(1, ids) / temperature
    if teacher.logp.shape[1] == k:  # renorm
        lq = torch.log_softmax(su, dim=1)
        d, r = bucket_divergence(loss, teacher.logp, lq, beta=beta, skew=skew)
        if not want_grad:
            return d, None
        g_top = r - lq.exp() * r.sum(1, keepdim=True)
        return d, torch.zeros_like(s).scatter_add_(1, ids, g_top)
    u = s.mul_(1.0 / temperature)
    lse_u = torch.logsumexp(u, dim=1, keepdim=True)
    u_tail = u.clone().scatter_(1, ids, float("-inf"))
    lse_tail = torch.logsumexp(u_tail, dim=1, keepdim=True)
    lq = torch.cat([su - lse_u, lse_tail - lse_u], dim=1)
    d, r = bucket_divergence(loss, teacher.logp, lq, beta=beta, skew=skew)
    if not want_grad:
        return d, None
    r_sum = r.sum(1, keepdim=True)
    # Tail tokens: q_l / q_tail * R_tail - q_l * sum(R); q_l / q_tail = softmax over the tail tokens.
    grad = u_tail.sub_(lse_tail).exp_().mul_(r[:, k:])
    grad.sub_(u.sub_(lse_u).exp_().mul_(r_sum))
    # Top-k tokens are their own buckets: R_b - q_b * sum(R) (the tail part above is 0 there).
    return d, grad.scatter_add_(1, ids, r[:, :k])


def chunk_step(s: torch.Tensor, labels: torch.Tensor, teacher: TeacherLogits | TeacherBuckets | None, *,
               loss: str, temperature: float, beta: float, skew: float, weights: ChunkWeights | None
               ) -> ChunkResult:
    """Loss sums and the analytic gradient for one chunk of counted tokens.

    Args:
        s: (C, V) student logits (owned, float32 or float64; modified in place).
        labels: (C,) int64 hard labels, all counted (0 <= label < V).
        teacher: the teacher's chunk (None only for loss "ce").
        loss, temperature, beta, skew: as in LossSpec.
        weights: gradient weights (with the reduction scale), or None for values only.

    Returns:
        ChunkResult with sums over the chunk and grad (C, V) = d(scale * chunk loss)/ds.
    """
    want_grad = weights is not None
    ce_grad = want_grad and weights.ce != 0.0
    fast_fkl = _is_fast_forward_kl(loss, beta, teacher)
    amax_s = s.argmax(1)
    ce_rows, sm = _student_ce(s, labels, amax_s, need_softmax=ce_grad or (fast_fkl and temperature == 1.0))
    zero = torch.zeros((), dtype=s.dtype, device=s.device)
    if loss == "ce":
        kd, agree, grad_u = zero, torch.full((), float("nan"), dtype=s.dtype, device=s.device), None
    else:
        kd_grad = want_grad and weights.kd != 0.0
        d, grad_u, t_amax = _kd_rows(loss, s, sm, teacher, temperature, beta, skew, kd_grad, keep_sm=ce_grad)
        kd = d.sum() * temperature ** 2
        agree = (amax_s == t_amax).sum().to(s.dtype)
    grad = None
    if want_grad:
        grad = _combine_grad(grad_u, sm, labels, weights, temperature, like=s)
    return ChunkResult(kd, ce_rows.sum(), agree, grad)


def _is_fast_forward_kl(loss: str, beta: float, teacher: object) -> bool:
    """Forward KL (or JSD at beta = 0) over the full vocabulary: the fast path applies."""
    return isinstance(teacher, TeacherLogits) and (loss == "forward_kl" or (loss == "jsd" and beta == 0.0))


def _kd_rows(loss: str, s: torch.Tensor, sm: torch.Tensor | None, teacher: TeacherLogits | TeacherBuckets,
             temperature: float, beta: float, skew: float, want_grad: bool, *, keep_sm: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Divergence rows D (C,), dD/du (C, V) or None, and the teacher's argmax (C,).

    ``sm`` is softmax(s) when already computed; ``keep_sm`` says it is still needed afterwards.
    """
    if isinstance(teacher, TeacherBuckets):
        d, g = _kd_topk(loss, s, teacher, temperature, beta, skew, want_grad)
        return d, g, teacher.argmax
    t = teacher.logits
    t_amax = t.argmax(1)
    if _is_fast_forward_kl(loss, beta, teacher):
        if temperature == 1.0:
            u, q = s, sm.clone() if (want_grad and keep_sm) else sm
        else:
            u = s.mul_(1.0 / temperature)
            q = torch.softmax(u, dim=1)
        d, g = _kd_full_forward_kl(u, q, t, temperature, want_grad)
        return d, g, t_amax
    u = s if temperature == 1.0 else s.mul_(1.0 / temperature)
    d, g = _kd_full_generic(loss, u, t, temperature, beta, skew, want_grad)
    return d, g, t_amax


def _combine_grad(grad_u: torch.Tensor | None, sm: torch.Tensor | None, labels: torch.Tensor,
                  weights: ChunkWeights, temperature: float, like: torch.Tensor) -> torch.Tensor:
    """d(loss)/ds = kd_w * T * dD/du + ce_w * (softmax(s) - onehot(label)), reusing a buffer."""
    if grad_u is not None:
        grad = grad_u.mul_(weights.kd * temperature)
        if weights.ce != 0.0:
            grad.add_(sm, alpha=weights.ce)
    elif weights.ce != 0.0:
        grad = sm.mul_(weights.ce)
    else:
        return torch.zeros_like(like)
    if weights.ce != 0.0:
        grad.scatter_add_(1, labels.unsqueeze(1),
                          torch.full((labels.shape[0], 1), -weights.ce, dtype=grad.dtype, device=grad.device))
    return grad
