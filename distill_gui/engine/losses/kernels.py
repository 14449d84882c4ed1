"""Per-chunk loss math: values and analytic gradients w.r.t. the student logits, in one pass.

Everything here works on one chunk of ``C`` counted tokens and the (restricted) vocabulary ``V``.
The tensors handed in are owned by the callee (fresh chunk buffers) and are reused in place, so
a chunk needs only a few (C, V) buffers. Notation: ``s`` student logits, ``t`` teacher logits,
``u = s / T``, ``q = softmax(u)``, ``p = softmax(t / T)``.

Every divergence ``D(p, q)`` is expressed over *buckets* ``b`` (the V tokens, the teacher's top-k
tokens, or the top-k tokens plus one tail bucket). Its gradient w.r.t. the tempered student logits
follows from one per-bucket quantity ``R_b = q_b * dD/dq_b`` (constants in dD/dq_b cancel):

    dD/du_l = (q_l / q_b(l)) * R_b(l) - q_l * sum_b R_b

which for full-vocabulary buckets is ``R - q * sum(R)`` (forward KL: ``q - p``). The KD term is
``T^2 * D``, so its gradient w.r.t. ``s`` is ``T * dD/du``.

Speed (CPU): softmaxes are built from ``amax``, one fused shift (``add`` with alpha), ``exp_`` and a row
sum, kept unnormalised where a per-row factor can be folded into a later pass; this is several
times faster than ``torch.softmax`` on wide rows. Only the teacher's argmax is searched (argmax is
a slow, scalar pass); the student agrees when its logit there equals its maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from distill_gui.engine.losses import liger
from distill_gui.engine.losses.spec import TAIL_FLOOR

#: Floor for the teacher's tail mass computed from cached top-k log-probabilities, which can round
#: to a sum of probabilities >= 1 (bf16/fp16 caches). Keeps log(tail) finite.


class Workspace:
    """Reusable (chunk x vocabulary) buffers, so that chunks do not allocate (and page-fault) anew.

    ``get(name, rows, cols, dtype, device)`` returns a contiguous (rows, cols) view of a flat
    buffer that grows to the largest size asked for. Callers own the view until the same name is
    asked for again.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        numel = rows * cols
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype or buf.device != device:
            self._buffers.pop(name, None)  # free the old one first: never two of them alive
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buf
        return buf[:numel].view(rows, cols)

    def like(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """A buffer shaped and typed like the 2-D tensor ``x``."""
        return self.get(name, x.shape[0], x.shape[1], x.dtype, x.device)

    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


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
        kd: scalar float64, sum over tokens of T^2 * D (0 for loss "ce").
        ce: scalar float64, sum over tokens of the hard-label cross-entropy at T = 1.
        agree: scalar, tokens where the student's logit at the teacher's argmax is the student's
            maximum (NaN for "ce").
        grad: (C, V) d(loss share)/d(student logits), already multiplied by the reduction scale,
            or None when no gradient was asked for.
    """

    kd: torch.Tensor
    ce: torch.Tensor
    agree: torch.Tensor
    grad: torch.Tensor | None


@dataclass(frozen=True)
class ChunkWeights:
    """Weights of the two gradient parts: d(loss)/ds = kd * T * dD/du + ce * (softmax(s) - onehot).

    Both already include the reduction scale (1 / num_tokens); zero means that part needs no gradient.
    """

    kd: float
    ce: float


@dataclass
class _RowSoftmax:
    """A row softmax kept unnormalised: e = exp(scale * x - m), softmax = e / exp(logz).

    Attributes:
        e: (C, V) the shifted exponentials.
        m: (C, 1) the row max of scale * x.
        logz: (C, 1) log of the row sums of e.
    """

    e: torch.Tensor
    m: torch.Tensor
    logz: torch.Tensor
    _inv_z: torch.Tensor | None = None

    @property
    def lse(self) -> torch.Tensor:
        """(C, 1) logsumexp of scale * x."""
        return self.m + self.logz

    def inv_z(self) -> torch.Tensor:
        """(C, 1) 1 / row sum (computed once: small ops are not free on a busy multi-threaded CPU)."""
        if self._inv_z is None:
            self._inv_z = torch.exp(-self.logz)
        return self._inv_z

    def probs_(self) -> torch.Tensor:
        """Normalise ``e`` in place and return it (the softmax)."""
        return self.e.mul_(self.inv_z())


def _row_softmax(x: torch.Tensor, scale: float = 1.0, *, x_max: torch.Tensor | None = None,
                 inplace: bool = False, out: torch.Tensor | None = None) -> _RowSoftmax:
    """Softmax parts of ``scale * x`` (scale > 0) along dim 1.

    Args:
        x: (C, V) values; overwritten when ``inplace``.
        scale: factor applied to x (1 / T).
        x_max: (C, 1) row max of x when already known.
        inplace: reuse x's buffer for the exponentials.
        out: (C, V) buffer for the exponentials (else a new one), when not ``inplace``.
    """
    m = (x.amax(1, keepdim=True) if x_max is None else x_max) * scale
    if inplace:
        e = (x.mul_(scale) if scale != 1.0 else x).sub_(m)
    elif out is not None:
        e = torch.add(-m, x, alpha=scale, out=out)  # one broadcast pass (addcmul is 2x slower on the CPU)
    else:
        e = torch.add(-m, x, alpha=scale)
    e.exp_()
    logz = e.sum(1, keepdim=True).log_()
    return _RowSoftmax(e, m, logz)


def _scaled_log(x: torch.Tensor, scale: float, lse: torch.Tensor) -> torch.Tensor:
    """scale * x - lse as a new tensor (log-softmax once lse is known)."""
    return torch.add(-lse, x, alpha=scale)


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


def bucket_divergence(loss: str, lp: torch.Tensor, lq: torch.Tensor, *, beta: float, skew: float,
                      p: torch.Tensor | None = None, q: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Divergence between teacher and student bucket distributions, and its R = q * dD/dq.

    Args:
        loss: one of forward_kl, reverse_kl, jsd, skew_forward_kl, skew_reverse_kl, tvd.
        lp: (C, B) teacher log-probabilities over B buckets (rows sum to 1 in probability).
        lq: (C, B) student log-probabilities over the same buckets.
        beta: JSD weight of the teacher in the mixture (0 -> forward KL, 1 -> reverse KL).
        skew: weight of the distribution itself in the skewed mixture (0 -> plain KL).
        p, q: exp(lp), exp(lq) when already at hand.

    Returns:
        (D, R): D (C,) the divergence per token, R (C, B) as in the module docstring.
    """
    if loss == "jsd" and beta == 0.0:
        loss = "forward_kl"
    elif loss == "jsd" and beta == 1.0:
        loss = "reverse_kl"
    p = lp.exp() if p is None else p
    q = lq.exp() if q is None else q
    if loss == "forward_kl":
        return _xdiff(p, lp, lq).sum(1), -p
    if loss == "reverse_kl":
        r = _xdiff(q, lq, lp)
        return r.sum(1), r
    if loss == "jsd":
        lm = _mix_log(lp, beta, lq, 1.0 - beta)
        rq = _xdiff(q, lq, lm)
        d = beta * _xdiff(p, lp, lm).sum(1) + (1.0 - beta) * rq.sum(1)
        return d, rq.mul_(1.0 - beta)
    if loss == "skew_forward_kl":
        lm = _mix_log(lp, skew, lq, 1.0 - skew)
        d = _xdiff(p, lp, lm).sum(1)
        r = torch.where(p > 0, (lq + lp - lm).exp(), torch.zeros((), dtype=p.dtype, device=p.device))
        return d, r.mul_(-(1.0 - skew))
    if loss == "skew_reverse_kl":
        lm = _mix_log(lp, 1.0 - skew, lq, skew)
        rq = _xdiff(q, lq, lm)
        d = rq.sum(1)
        if skew != 0.0:
            rq = rq - skew * torch.where(q > 0, (2 * lq - lm).exp(), torch.zeros_like(q))
        return d, rq
    if loss == "tvd":
        diff = q - p
        return 0.5 * diff.abs().sum(1), diff.sign_().mul_(q).mul_(0.5)
    raise ValueError(f"unknown divergence {loss!r}")


def teacher_buckets_from_logits(t: torch.Tensor, k: int, mode: str, temperature: float) -> TeacherBuckets:
    """The teacher's top-k buckets from live logits (exact tempered probabilities).

    Renorm: log softmax over the k of t/T. Tail: log softmax(t/T) over the full vocabulary at the
    k ids, plus the exact remaining mass (logsumexp over the other tokens) as a last bucket.

    Args:
        t: (C, V) teacher logits at T = 1 (owned; overwritten).
        k: number of teacher tokens (< V in tail mode).
        mode: "renorm" or "tail".
        temperature: T.
    """
    argmax = t.argmax(1)
    ids = torch.topk(t, k, dim=1, sorted=False).indices
    top = t.gather(1, ids) / temperature
    if mode == "renorm":
        return TeacherBuckets(ids, torch.log_softmax(top, dim=1), argmax)
    lse = _row_softmax(t, 1.0 / temperature).lse
    lse_tail = _row_softmax(t.scatter_(1, ids, float("-inf")), 1.0 / temperature, inplace=True).lse
    return TeacherBuckets(ids, torch.cat([top - lse, lse_tail - lse], dim=1), argmax)


def teacher_buckets_from_cache(ids: torch.Tensor, logprobs: torch.Tensor, mode: str, temperature: float
                               ) -> TeacherBuckets:
    """The teacher's top-k buckets from cached (ids, log-probabilities at T = 1).

    Renorm: log softmax over the k of logprob / T (the same as the live definition). Tail: the
    (k + 1)-point distribution (the k probabilities and the remaining mass r = 1 - sum, floored at
    TAIL_FLOOR) tempered as a whole: log softmax of (logprobs, log r) / T. (The tail's own shape is
    unknown, so it is tempered as one token; at T = 1 this is exact.)

    Args:
        ids: (C, k) int64 token ids.
        logprobs: (C, k) log-probabilities at T = 1.
        mode: "renorm" or "tail".
        temperature: T.
    """
    argmax = ids.gather(1, logprobs.argmax(1, keepdim=True)).squeeze(1)
    if mode == "tail":
        mass = torch.logsumexp(logprobs, dim=1, keepdim=True)
        rest = (-torch.expm1(mass)).clamp(min=TAIL_FLOOR).log()
        logprobs = torch.cat([logprobs, rest], dim=1)
    return TeacherBuckets(ids, torch.log_softmax(logprobs / temperature, dim=1), argmax)


# ---- KD paths ----------------------------------------------------------------------------------


@dataclass
class _KdOut:
    """What a KD path returns.

    Attributes:
        d_sum: scalar float64, sum over the chunk of D (without T^2).
        grad: (C, V) kd_scale * dD/du, or None.
        t_arg: (C,) the teacher's argmax.
        agree: the agreement count when the path had to read it from ``s`` itself.
        sm: the student's softmax parts at T = 1 when the path derived them cheaply.
    """

    d_sum: torch.Tensor
    grad: torch.Tensor | None
    t_arg: torch.Tensor
    agree: torch.Tensor | None = None
    sm: _RowSoftmax | None = None


def _kd_full_forward_kl(s: torch.Tensor, s_max: torch.Tensor, t: torch.Tensor, temperature: float,
                        kd_scale: float, want_sm: bool, ws: Workspace):
    """Forward KL over the full vocabulary, the fast path (no log-probability buffers).

    KL(p || q) = sum p * (t - s) / T - lse(t/T) + lse(s/T); dD/du = q - p. At T = 1 or 2 the
    student's softmax at T = 1 (for the CE term) follows from exp((s - max) / T) by a copy or a
    square instead of another exp pass; it is then returned (written into ``s``'s buffer) with the
    agreement count, which must be read from ``s`` before.
    """
    inv_t = 1.0 / temperature
    t_arg = t.argmax(1, keepdim=True)
    p_parts = _row_softmax(t, inv_t, x_max=t.gather(1, t_arg), out=ws.like("p", s))
    q_parts = _row_softmax(s, inv_t, x_max=s_max, out=ws.like("q", s))
    rows = t.sub_(s).mul_(p_parts.e)  # p * (t - s) * z_t: 0 * (-inf) = NaN where a teacher logit is -inf
    dots = rows.sum(1, keepdim=True)
    if not bool(torch.isfinite(dots.sum())):  # apply 0 * log 0 = 0 where teacher logits are -inf
        fix = ~torch.isfinite(dots) & torch.isfinite(p_parts.lse)
        dots = torch.where(fix, rows.nan_to_num(nan=0.0).sum(1, keepdim=True), dots)
    d = torch.addcmul(q_parts.lse - p_parts.lse, dots, p_parts.inv_z(), value=inv_t)
    out = _KdOut(d.double().sum(), None, t_arg.squeeze(1))
    if want_sm and temperature in (1.0, 2.0):
        out.agree = (s.gather(1, t_arg) == s_max).sum().double()
        e1 = s.copy_(q_parts.e) if temperature == 1.0 else torch.mul(q_parts.e, q_parts.e, out=s)
        out.sm = _RowSoftmax(e1, s_max, e1.sum(1, keepdim=True).log_())
    if kd_scale:  # kd_scale * (q - p), written over q's exponentials
        out.grad = q_parts.e.mul_(q_parts.inv_z() * kd_scale).addcmul_(p_parts.e, p_parts.inv_z(), value=-kd_scale)
    return out


def _kd_full_generic(loss: str, s: torch.Tensor, s_max: torch.Tensor, t: torch.Tensor, temperature: float,
                     beta: float, skew: float, kd_scale: float):
    """Any divergence over the full vocabulary through bucket_divergence."""
    inv_t = 1.0 / temperature
    t_arg = t.argmax(1, keepdim=True)
    p_parts = _row_softmax(t, inv_t, x_max=t.gather(1, t_arg))
    q_parts = _row_softmax(s, inv_t, x_max=s_max)
    lp = t.mul_(inv_t).sub_(p_parts.lse)
    lq = _scaled_log(s, inv_t, q_parts.lse)
    q = q_parts.probs_()
    d, r = bucket_divergence(loss, lp, lq, beta=beta, skew=skew, p=p_parts.probs_(), q=q)
    grad = None
    if kd_scale:
        grad = r.sub_(q.mul_(r.sum(1, keepdim=True))).mul_(kd_scale)
    return _KdOut(d.double().sum(), grad, t_arg.squeeze(1))


def _kd_topk(loss: str, s: torch.Tensor, s_max: torch.Tensor, teacher: TeacherBuckets, temperature: float,
             beta: float, skew: float, kd_scale: float):
    """A divergence over the teacher's top-k buckets (renorm: k buckets; tail: k + 1).

    Student buckets: log softmax(s/T) over the full vocabulary gathered at the teacher ids; renorm
    renormalises them over the k, tail adds the remaining mass as the last bucket.
    """
    ids = teacher.ids
    k = ids.shape[1]
    inv_t = 1.0 / temperature
    su = s.gather(1, ids) * inv_t
    if teacher.logp.shape[1] == k:  # renorm: only the k gathered logits matter
        lq = torch.log_softmax(su, dim=1)
        d, r = bucket_divergence(loss, teacher.logp, lq, beta=beta, skew=skew)
        grad = None
        if kd_scale:
            g_top = (r - lq.exp() * r.sum(1, keepdim=True)) * kd_scale
            grad = torch.zeros_like(s).scatter_add_(1, ids, g_top)
        return _KdOut(d.double().sum(), grad, teacher.argmax)
    q_parts = _row_softmax(s, inv_t, x_max=s_max)
    masked = (s * inv_t).scatter_(1, ids, float("-inf"))
    tail_parts = _row_softmax(masked, inplace=True)  # softmax over the tail tokens only
    lq = torch.cat([su - q_parts.lse, tail_parts.lse - q_parts.lse], dim=1)
    d, r = bucket_divergence(loss, teacher.logp, lq, beta=beta, skew=skew)
    grad = None
    if kd_scale:
        r_sum = r.sum(1, keepdim=True)
        # Tail tokens: softmax_tail(l) * R_tail - q_l * sum(R); top-k tokens: R_b - q_b * sum(R).
        grad = tail_parts.e.mul_(tail_parts.inv_z() * r[:, k:] * kd_scale)
        grad.addcmul_(q_parts.e, q_parts.inv_z() * r_sum, value=-kd_scale)
        grad.scatter_add_(1, ids, r[:, :k] * kd_scale)
    return _KdOut(d.double().sum(), grad, teacher.argmax)


def _kd_full_liger(loss: str, s: torch.Tensor, t: torch.Tensor, temperature: float, beta: float,
                   kd_scale: float) -> _KdOut | None:
    """Forward / reverse KL or JSD over the full vocabulary through Liger-Kernel's kernel (engine/liger.py).

    ``s`` and ``t`` are left as they are; None when a row's value is not finite (e.g. teacher logits of
    -inf, where 0 * log 0 needs our handling): the caller then takes its own path.
    """
    inv_t = 1.0 / temperature
    t_arg = t.argmax(1)
    lp = torch.log_softmax(t * inv_t, 1)
    lq = torch.log_softmax(s * inv_t, 1)
    liger_beta = 0.0 if loss == "forward_kl" else 1.0 if loss == "reverse_kl" else beta
    d_sum, g = liger.jsd_sum_and_grad(lq, lp, liger_beta)
    if not bool(torch.isfinite(d_sum)):
        return None
    grad = None
    if kd_scale:  # through log_softmax: dD/du = g - softmax(u) * sum(g)
        grad = g.sub_(lq.exp_().mul_(g.sum(1, keepdim=True))).mul_(kd_scale)
    return _KdOut(d_sum, grad, t_arg)


def _is_fast_forward_kl(loss: str, beta: float) -> bool:
    return loss == "forward_kl" or (loss == "jsd" and beta == 0.0)


def chunk_step(s: torch.Tensor, labels: torch.Tensor, teacher: TeacherLogits | TeacherBuckets | None, *,
               loss: str, temperature: float, beta: float, skew: float, weights: ChunkWeights | None,
               ws: Workspace | None = None) -> ChunkResult:
    """Loss sums and the analytic gradient for one chunk of counted tokens.

    Args:
        s: (C, V) student logits (owned, float32 or float64; overwritten).
        labels: (C,) int64 hard labels, all counted (0 <= label < V).
        teacher: the teacher's chunk (None only for loss "ce").
        loss, temperature, beta, skew: as in LossSpec.
        weights: gradient weights (with the reduction scale), or None for values only.
        ws: buffers to reuse (the gradient may live in one of them until the next call).

    Returns:
        ChunkResult with sums over the chunk and grad (C, V) = d(scale * chunk loss)/ds.
    """
    ws = ws if ws is not None else Workspace()
    kd_w = weights.kd if weights is not None else 0.0
    ce_w = weights.ce if weights is not None else 0.0
    kd_scale = kd_w * temperature
    col = labels.unsqueeze(1)
    picked = s.gather(1, col)
    s_max = s.amax(1, keepdim=True)
    grad, sm = None, None
    if loss == "ce":
        kd = torch.zeros((), dtype=torch.float64, device=s.device)
        agree = torch.full((), float("nan"), dtype=torch.float64, device=s.device)
    else:
        out = None
        if isinstance(teacher, TeacherBuckets):
            out = _kd_topk(loss, s, s_max, teacher, temperature, beta, skew, kd_scale)
        elif s.dtype == torch.float32 and liger.active(s.device, loss, teacher_is_logits=True):
            out = _kd_full_liger(loss, s, teacher.logits, temperature, beta, kd_scale)
        if out is None and _is_fast_forward_kl(loss, beta):
            out = _kd_full_forward_kl(s, s_max, teacher.logits, temperature, kd_scale, want_sm=True, ws=ws)
        elif out is None:
            out = _kd_full_generic(loss, s, s_max, teacher.logits, temperature, beta, skew, kd_scale)
        kd, grad, sm = out.d_sum * temperature ** 2, out.grad, out.sm
        agree = out.agree if out.agree is not None else (s.gather(1, out.t_arg.unsqueeze(1)) == s_max).sum().double()
    if sm is None:  # the hard-label part reuses the student logits' buffer for exp(s - max)
        sm = _row_softmax(s, x_max=s_max, inplace=True)
    ce = (sm.lse - picked).double().sum()
    if weights is not None:
        grad = _add_ce_grad(grad, sm, col, ce_w)
    return ChunkResult(kd, ce, agree, grad)


def _add_ce_grad(grad: torch.Tensor | None, sm: _RowSoftmax, col: torch.Tensor, ce_w: float) -> torch.Tensor:
    """grad + ce_w * (softmax(s) - onehot(label)); a zero gradient when neither part has weight."""
    if not ce_w:
        return grad if grad is not None else torch.zeros_like(sm.e)
    factor = sm.inv_z() * ce_w
    grad = sm.e.mul_(factor) if grad is None else grad.addcmul_(sm.e, factor)
    return grad.scatter_add_(1, col, torch.full(col.shape, -ce_w, dtype=grad.dtype, device=grad.device))
