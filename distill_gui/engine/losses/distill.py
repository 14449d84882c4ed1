"""Knowledge-distillation losses: one call per micro-batch, chunked and fused.

Definitions (p = teacher, q = student, both at temperature T over the shared vocabulary V;
``s``, ``t`` their logits restricted to ids < V, ``p = softmax(t / T)``, ``q = softmax(s / T)``):

- ``forward_kl``: KL(p || q) = sum p log(p / q)
- ``reverse_kl``: KL(q || p)
- ``jsd``: generalized JSD with m = beta p + (1 - beta) q:
  beta KL(p || m) + (1 - beta) KL(q || m); the endpoints follow TRL / Liger-Kernel: beta = 0 is
  exactly forward KL and beta = 1 exactly reverse KL (the formula itself tends to 0 there, so the
  loss scale jumps at the endpoints: for small beta the value is about beta * KL(p || q)).
- ``skew_forward_kl`` (DistiLLM): KL(p || skew p + (1 - skew) q)
- ``skew_reverse_kl`` (DistiLLM): KL(q || (1 - skew) p + skew q)
- ``tvd``: total variation 1/2 sum |p - q|
- ``ce``: no teacher; plain hard-label fine-tuning (the control).

Per counted token the KD term is ``T^2 * D(p, q)`` and the hard-label term is the cross-entropy of
the student at T = 1 over the shared vocabulary. Reduction: each term is summed over the counted
tokens (labels != -100) and divided by ``num_tokens`` (default: the counted tokens of this call),
so the ``loss`` of the micro-batches of one optimizer step, each called with that step's token
count, sum to the mean over all of its tokens. ``loss = alpha * kd + (1 - alpha) * ce``; for
``ce`` the loss is the CE term alone (``kd`` is 0 and ``agree`` NaN). With no counted token the
loss is 0 and every gradient is zero.

Top-k (``top_k > 0``): the divergence runs over the teacher's k most likely tokens.

- Teacher from live logits: its top-k ids at T = 1 (the same ids at any T). ``renorm``: p over the
  k is softmax(t / T) renormalised over the k. ``tail``: softmax(t / T) over the full vocabulary at
  the k ids plus one bucket with the exact remaining mass.
- Teacher from a cache or Ollama (``teacher_topk`` = ids and log-probabilities at T = 1):
  ``renorm``: softmax over the k of logprob / T (the same as from live logits). ``tail``: the
  (k + 1)-point distribution of the k probabilities and the remaining mass r = 1 - sum (floored at
  ``TAIL_FLOOR``), tempered as a whole: softmax((logprobs, log r) / T); at T != 1 this treats the
  unknown tail as one token. If the cache holds more than ``top_k`` entries, the ``top_k`` most
  likely are used; with ``top_k = 0`` all of them.
- Student: log softmax(s / T) over the full shared vocabulary gathered at the teacher ids;
  ``renorm`` renormalises them over the k, ``tail`` adds the student's remaining mass as the
  (k + 1)th bucket. (``tail`` with k >= V is the full-vocabulary loss.)

Agreement: counted tokens where the student's argmax over V equals the teacher's (with top-k
from a cache: the cached token of highest log-probability). Computed as "the student's logit at
the teacher's argmax equals the student's maximum", so an exact tie for the student's maximum
counts as agreement.

Memory: the loss runs over chunks of ``chunk_tokens`` counted tokens (0 = automatic: about 64 MiB
per (chunk x vocabulary) float32 buffer on the CPU, 128 MiB on CUDA, and at most 2048 / 8192
tokens); with hidden states and a head,
the logits of both models exist only one chunk at a time, in about four such buffers, plus the
gradients of the hidden states and of the head weight (see fused_loss). Masked tokens are never
projected. On the CPU the chunk buffers are kept per thread between calls (a fresh allocation of
that size is page-faulted in again every time); ``release_workspace()`` frees them.
"""

from __future__ import annotations

from typing import Any

import torch

from distill_gui.engine.losses import kernels as K
from distill_gui.engine.losses.fused import FusedDistillLoss, FusedPlan, Head, project
from distill_gui.engine.losses.spec import IGNORE_INDEX, LossResult, LossSpec

#: Automatic chunk size: about this many float32 values per (chunk x vocabulary) buffer (64 MiB on
#: the CPU: single-threaded as fast as 8 MiB chunks, and fewer chunks mean fewer parallel regions,
#: which matters on a busy machine, and fewer passes over the head-weight gradient; a GPU wants
#: larger matmuls anyway). A chunk needs about four such buffers.
AUTO_CHUNK_VALUES = {"cpu": 1 << 24, "cuda": 1 << 25}
#: Tokens per automatic chunk at most: at small vocabularies the chunk buffers then stay a small
#: share of the step's memory.
AUTO_CHUNK_MAX = {"cpu": 2048, "cuda": 8192}
AUTO_CHUNK_MIN = 16






def auto_chunk_tokens(vocab: int, device: str = "cpu") -> int:
    """Tokens per chunk so that one (chunk x vocab) float32 buffer holds about AUTO_CHUNK_VALUES."""
    values = AUTO_CHUNK_VALUES.get(device, AUTO_CHUNK_VALUES["cpu"])
    high = AUTO_CHUNK_MAX.get(device, AUTO_CHUNK_MAX["cpu"])
    return max(AUTO_CHUNK_MIN, min(high, values // max(vocab, 1)))


def _as_head(head: Any) -> Head:
    """nn.Linear | weight tensor | None -> Head."""
    if head is None:
        return Head()
    if isinstance(head, torch.Tensor):
        return Head(weight=head)
    if isinstance(head, torch.nn.Linear):
        return Head(weight=head.weight, bias=head.bias)
    raise TypeError(f"a head must be an nn.Linear, a (V, H) weight tensor or None, got {type(head).__name__}")


def _width(x: torch.Tensor, head: Head) -> int:
    """Vocabulary width of a side: the head's rows, or the logits' columns."""
    return head.weight.shape[0] if head.weight is not None else x.shape[1]


def distill_loss(
    student_hidden: torch.Tensor,
    student_head: Any,
    labels: torch.Tensor,
    spec: LossSpec,
    *,
    teacher_hidden: torch.Tensor | None = None,
    teacher_head: Any = None,
    teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
    vocab_size: int | None = None,
    num_tokens: int | None = None,
) -> LossResult:
    """Distillation loss of one micro-batch (definitions and reduction: see the module docstring).

    Args:
        student_hidden: (N, H_s) final hidden states (after the final norm), or (N, V_s) logits
            when ``student_head`` is None. Row i predicts ``labels[i]``.
        student_head: nn.Linear, a (V_s, H_s) weight tensor, or None.
        labels: (N,) int64 next-token ids; -100 = not counted.
        spec: the loss settings.
        teacher_hidden: (N, H_t) teacher hidden states, or (N, V_t) logits when ``teacher_head``
            is None. Never differentiated.
        teacher_head: nn.Linear, a (V_t, H_t) weight tensor, or None.
        teacher_topk: (ids (N, k) int64, logprobs (N, k)) of the teacher at T = 1, instead of
            ``teacher_hidden``.
        vocab_size: shared real vocabulary V; both sides are restricted to ids < V and
            renormalised there. Default: the student's width, which must then equal the teacher's.
        num_tokens: divisor of the sums (the counted tokens of the whole optimizer step);
            default: the counted tokens of this call.

    Returns:
        LossResult; ``loss`` is differentiable w.r.t. the student hidden states / logits and the
        head's weight and bias.
    """
    s_head = _as_head(student_head)
    t_head = _as_head(teacher_head)
    labels = labels.reshape(-1).to(device=student_hidden.device, dtype=torch.long)
    if student_hidden.dim() != 2 or student_hidden.shape[0] != labels.shape[0]:
        raise ValueError(f"student_hidden must be (N, H) with N = len(labels) = {labels.shape[0]}, "
                         f"got {tuple(student_hidden.shape)}")
    vocab = _shared_vocab(student_hidden, s_head, None if spec.loss == "ce" else teacher_hidden, t_head, vocab_size)
    rows = (labels != IGNORE_INDEX).nonzero().squeeze(1)
    n_tokens = int(rows.shape[0])
    row_labels = labels.index_select(0, rows)
    if n_tokens and (int(row_labels.min()) < 0 or int(row_labels.max()) >= vocab):
        raise ValueError(f"labels must be -100 or within [0, {vocab}), got {int(row_labels.min())}.."
                         f"{int(row_labels.max())}")
    divisor = n_tokens if num_tokens is None else int(num_tokens)
    if divisor < n_tokens:
        raise ValueError(f"num_tokens ({divisor}) is smaller than the counted tokens of this call ({n_tokens})")
    acc = torch.float64 if student_hidden.dtype == torch.float64 else torch.float32
    chunk = spec.chunk_tokens or auto_chunk_tokens(vocab, student_hidden.device.type)
    plan = FusedPlan(rows=rows, labels=row_labels, vocab=vocab, chunk=chunk, loss=spec.loss,
                     temperature=float(spec.temperature), alpha=float(spec.alpha), beta=float(spec.beta),
                     skew=float(spec.skew), scale=1.0 / divisor if divisor else 0.0,
                     teacher=_teacher_source(spec, rows, vocab, acc, teacher_hidden, t_head, teacher_topk),
                     acc_dtype=acc)
    grad_on = torch.is_grad_enabled()
    need = (grad_on and student_hidden.requires_grad,
            grad_on and s_head.weight is not None and s_head.weight.requires_grad,
            grad_on and s_head.bias is not None and s_head.bias.requires_grad)
    loss, kd, ce, agree = FusedDistillLoss.apply(student_hidden, s_head.weight, s_head.bias, plan, need)
    return LossResult(loss=loss, kd=kd.detach(), ce=ce.detach(), agree=agree.detach(), n_tokens=n_tokens)


def _shared_vocab(student: torch.Tensor, s_head: Head, teacher: torch.Tensor | None, t_head: Head,
                  vocab_size: int | None) -> int:
    """The shared vocabulary V, checked against both sides' widths."""
    width = _width(student, s_head)
    if teacher is not None:
        t_width = _width(teacher, t_head)
        if vocab_size is None and t_width != width:
            raise ValueError(f"student ({width}) and teacher ({t_width}) vocabulary widths differ: "
                             "pass vocab_size (the shared real vocabulary)")
        width = min(width, t_width)
    vocab = width if vocab_size is None else int(vocab_size)
    if not 0 < vocab <= width:
        raise ValueError(f"vocab_size {vocab} must be within (0, {width}] (the narrower side's width)")
    return vocab


def _teacher_source(spec: LossSpec, rows: torch.Tensor, vocab: int, acc: torch.dtype,
                    teacher: torch.Tensor | None, head: Head, topk: tuple[torch.Tensor, torch.Tensor] | None):
    """A callable (start, end) -> the teacher's chunk for rows[start:end], or None for "ce"."""
    if spec.loss == "ce":
        return None
    if (teacher is None) == (topk is None):
        raise ValueError(f"loss {spec.loss!r} needs exactly one teacher input: teacher_hidden or teacher_topk")
    T, mode = float(spec.temperature), spec.top_k_mode
    if topk is not None:
        return _cached_topk_source(spec, rows, vocab, acc, topk)
    k = min(spec.top_k, vocab)
    if k and mode == "tail" and k >= vocab:
        k = 0  # an empty tail: the full-vocabulary loss

    def chunk(start: int, end: int, ws: K.Workspace):
        buf = ws.get("t", end - start, vocab, acc, rows.device)
        with torch.no_grad():  # projected where the teacher lives, then moved to the student
            x = teacher.index_select(0, rows[start:end].to(teacher.device))
            same_device = x.device == buf.device
            t = project(x, head, vocab, acc, out=buf) if same_device else buf.copy_(project(x, head, vocab, acc))
        if not k:
            return K.TeacherLogits(t)
        return K.teacher_buckets_from_logits(t, k, mode, T)

    return chunk


def _cached_topk_source(spec: LossSpec, rows: torch.Tensor, vocab: int, acc: torch.dtype,
                        topk: tuple[torch.Tensor, torch.Tensor]):
    """Chunks of cached teacher top-k (ids, log-probabilities at T = 1), checked once."""
    ids, logprobs = topk
    if ids.shape != logprobs.shape or ids.dim() != 2:
        raise ValueError(f"teacher_topk ids {tuple(ids.shape)} and logprobs {tuple(logprobs.shape)} must both be (N, "
                         "k)")
    ids = ids.to(device=rows.device, dtype=torch.long).index_select(0, rows)
    logprobs = logprobs.to(rows.device).index_select(0, rows)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(f"teacher_topk ids must be within [0, {vocab}), got {int(ids.min())}..{int(ids.max())}")
    if spec.top_k and spec.top_k < ids.shape[1]:
        best = torch.topk(logprobs, spec.top_k, dim=1).indices
        ids, logprobs = ids.gather(1, best), logprobs.gather(1, best)
    logprobs = logprobs.to(acc)
    T, mode = float(spec.temperature), spec.top_k_mode

    def chunk(start: int, end: int, ws: K.Workspace):
        return K.teacher_buckets_from_cache(ids[start:end], logprobs[start:end], mode, T)

    return chunk
