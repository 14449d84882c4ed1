"""The distillation losses against the independent float64 reference (losses_reference).

Every divergence, temperature, top-k mode and teacher source; gradients w.r.t. the hidden states
and the head weight; masking, reduction, chunking and vocabulary restriction.
"""

from __future__ import annotations

import math

import pytest
import torch

from distill_gui.config import LOSSES, DistillConfig
from distill_gui.engine.losses import LossSpec, distill_loss
from distill_gui.engine.losses.reference import divergence, reference_losses

KD_LOSSES = [name for name in LOSSES if name != "ce"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _problem(n=13, h=8, v=21, *, seed=0, dtype=torch.float64, masked=(1, 4), device="cpu", teacher_h=6):
    """Random hidden states, heads and labels (some rows masked)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64) / math.sqrt(h) * 3
    t_hidden = torch.randn(n, teacher_h, generator=g, dtype=torch.float64)
    t_weight = torch.randn(v, teacher_h, generator=g, dtype=torch.float64) / math.sqrt(teacher_h) * 3
    labels = torch.randint(0, v, (n,), generator=g)
    labels[list(masked)] = -100
    cast = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return (cast(hidden).requires_grad_(), cast(weight).requires_grad_(), cast(t_hidden), cast(t_weight),
            labels.to(device))


def _reference(hidden, weight, t_hidden, t_weight, labels, spec, **kw):
    """The reference on float64 CPU logits, with its gradients w.r.t. hidden and weight."""
    h = hidden.detach().cpu().double().requires_grad_()
    w = weight.detach().cpu().double().requires_grad_()
    t_logits = None if t_hidden is None else t_hidden.detach().cpu().double() @ t_weight.detach().cpu().double().T
    ref = reference_losses(h @ w.T, t_logits, labels.cpu(), spec, **kw)
    gh, gw = torch.autograd.grad(ref.loss, (h, w))
    return ref, gh, gw


def _ours(hidden, weight, t_hidden, t_weight, labels, spec, **kw):
    res = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight, **kw)
    gh, gw = torch.autograd.grad(res.loss, (hidden, weight))
    return res, gh, gw


def _assert_same(ours, ref, tol):
    res, gh, gw = ours
    rres, rgh, rgw = ref
    for name in ("loss", "kd", "ce"):
        torch.testing.assert_close(getattr(res, name).cpu().double(), getattr(rres, name), rtol=tol, atol=tol,
                                   msg=name)
    assert res.n_tokens == rres.n_tokens
    if math.isnan(float(rres.agree)):
        assert math.isnan(float(res.agree))
    else:
        assert float(res.agree) == float(rres.agree)
    torch.testing.assert_close(gh.cpu().double(), rgh, rtol=tol, atol=tol)
    torch.testing.assert_close(gw.cpu().double(), rgw, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 2.5])  # 1 and 2 take shortcuts
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_matches_reference_in_value_and_gradient(loss, temperature, device):
    args = _problem(device=device)
    if loss == "ce":
        args = args[:2] + (None, None) + args[4:]
    spec = LossSpec(loss=loss, temperature=temperature, alpha=0.7, beta=0.3, skew=0.2, chunk_tokens=4)
    _assert_same(_ours(*args, spec), _reference(*args, spec), tol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("loss", LOSSES)
def test_float32_inputs_match_the_float64_reference(loss, device):
    args = _problem(n=40, h=16, v=300, dtype=torch.float32, device=device, masked=(0, 7, 39))
    if loss == "ce":
        args = args[:2] + (None, None) + args[4:]
    spec = LossSpec(loss=loss, temperature=2.0, alpha=0.9, chunk_tokens=16)
    _assert_same(_ours(*args, spec), _reference(*args, spec), tol=2e-5)


@pytest.mark.parametrize("source", ["live", "cache"])
@pytest.mark.parametrize("mode", ["renorm", "tail"])
@pytest.mark.parametrize("loss", KD_LOSSES)
def test_top_k_matches_reference(loss, mode, source):
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=3)
    spec = LossSpec(loss=loss, temperature=2.0, alpha=0.8, top_k=5, top_k_mode=mode, chunk_tokens=3)
    if source == "live":
        _assert_same(_ours(hidden, weight, t_hidden, t_weight, labels, spec),
                     _reference(hidden, weight, t_hidden, t_weight, labels, spec), tol=1e-10)
        return
    # A cache holding the teacher's 7 best (unsorted) at T = 1; top_k = 5 of them are used.
    logprobs = torch.log_softmax(t_hidden @ t_weight.T, dim=1)
    values, ids = torch.topk(logprobs, 7, dim=1)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    cache = (ids[:, perm], values[:, perm].float())
    ours = distill_loss(hidden, weight, labels, spec, teacher_topk=cache)
    gh, gw = torch.autograd.grad(ours.loss, (hidden, weight))
    ref = _reference(hidden, weight, None, None, labels, spec, teacher_topk=cache)
    _assert_same((ours, gh, gw), ref, tol=1e-10)


def test_cached_top_k_at_t1_equals_live_top_k():
    """At T = 1 both teacher sources define the same buckets (tail included)."""
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=4)
    for mode in ("renorm", "tail"):
        spec = LossSpec(loss="reverse_kl", temperature=1.0, top_k=6, top_k_mode=mode)
        live = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight)
        values, ids = torch.topk(torch.log_softmax(t_hidden @ t_weight.T, dim=1), 6, dim=1)
        cached = distill_loss(hidden, weight, labels, spec, teacher_topk=(ids, values))
        torch.testing.assert_close(live.loss, cached.loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["full", "renorm", "tail", "cache_tail"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradcheck(loss, case):
    if loss == "ce" and case != "full":
        pytest.skip("ce has no teacher")
    hidden, weight, t_hidden, t_weight, labels = _problem(n=5, h=3, v=7, masked=(2,), seed=5)
    spec = LossSpec(loss=loss, temperature=1.7, alpha=0.6, beta=0.4, skew=0.25, chunk_tokens=2,
                    top_k=0 if case == "full" else 3, top_k_mode="renorm" if case == "renorm" else "tail")
    kw = {} if loss == "ce" else {"teacher_hidden": t_hidden, "teacher_head": t_weight}
    if case == "cache_tail":
        values, ids = torch.topk(torch.log_softmax(t_hidden @ t_weight.T, dim=1), 3, dim=1)
        kw = {"teacher_topk": (ids, values)}

    def f(h, w):
        return distill_loss(h, w, labels, spec, **kw).loss

    assert torch.autograd.gradcheck(f, (hidden, weight), eps=1e-6, atol=1e-7, fast_mode=True)


def test_logits_input_with_padded_vocabularies():
    """Logits given directly; both sides wider than the shared vocabulary, with garbage beyond it."""
    hidden, weight, t_hidden, t_weight, labels = _problem(v=21, seed=6)
    s_logits = torch.cat([hidden @ weight.T, torch.full((13, 3), 50.0, dtype=torch.float64)], 1).detach()
    s_logits.requires_grad_()
    t_logits = torch.cat([t_hidden @ t_weight.T, torch.full((13, 7), 80.0, dtype=torch.float64)], 1)
    for loss in ("forward_kl", "jsd", "tvd"):
        spec = LossSpec(loss=loss, alpha=0.5, chunk_tokens=5)
        ours = distill_loss(s_logits, None, labels, spec, teacher_hidden=t_logits, vocab_size=21)
        (g,) = torch.autograd.grad(ours.loss, s_logits)
        ref_in = s_logits.detach().clone().requires_grad_()
        ref = reference_losses(ref_in, t_logits, labels, spec, vocab_size=21)
        (rg,) = torch.autograd.grad(ref.loss, ref_in)
        torch.testing.assert_close(ours.loss, ref.loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g, rg, rtol=1e-12, atol=1e-12)
        assert torch.all(g[:, 21:] == 0)


def test_padded_head_rows_are_ignored_and_get_no_gradient():
    hidden, weight, t_hidden, t_weight, labels = _problem(v=21, seed=7)
    wide = torch.cat([weight.detach(), 100 * torch.ones(4, 8, dtype=torch.float64)]).requires_grad_()
    t_wide = torch.cat([t_weight, -100 * torch.ones(9, 6, dtype=torch.float64)])
    spec = LossSpec(loss="skew_reverse_kl", chunk_tokens=4)
    ours = distill_loss(hidden, wide, labels, spec, teacher_hidden=t_hidden, teacher_head=t_wide, vocab_size=21)
    gh, gw = torch.autograd.grad(ours.loss, (hidden, wide))
    ref = _reference(hidden, weight, t_hidden, t_weight, labels, spec)
    _assert_same((ours, gh, gw[:21]), ref, tol=1e-10)
    assert torch.all(gw[21:] == 0)


def test_masked_rows_never_touch_the_result():
    """Masked rows may hold anything (even NaN): the loss ignores them and their gradient is 0."""
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=8)
    dirty = hidden.detach().clone()
    dirty[labels == -100] = float("nan")
    dirty.requires_grad_()
    t_dirty = t_hidden.clone()
    t_dirty[labels == -100] = float("inf")
    spec = LossSpec(loss="jsd", chunk_tokens=4)
    ours = _ours(dirty, weight, t_dirty, t_weight, labels, spec)
    ref = _reference(hidden, weight, t_hidden, t_weight, labels, spec)
    _assert_same(ours, ref, tol=1e-10)
    assert torch.all(ours[1][labels == -100] == 0)


@pytest.mark.parametrize("loss", LOSSES)
def test_all_masked_gives_zero_loss_and_zero_gradients(loss):
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=9)
    labels = torch.full_like(labels, -100)
    kw = {} if loss == "ce" else {"teacher_hidden": t_hidden, "teacher_head": t_weight}
    for num_tokens in (None, 17):
        res = distill_loss(hidden, weight, labels, LossSpec(loss=loss), num_tokens=num_tokens, **kw)
        gh, gw = torch.autograd.grad(res.loss, (hidden, weight))
        assert res.n_tokens == 0
        assert float(res.loss.detach()) == 0.0 and float(res.kd) == 0.0 and float(res.ce) == 0.0
        assert torch.all(gh == 0) and torch.all(gw == 0)


@pytest.mark.parametrize("loss", KD_LOSSES)
def test_kd_term_is_t_squared_times_the_divergence_of_tempered_distributions(loss):
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=10)
    s_logits, t_logits = (hidden @ weight.T).detach(), t_hidden @ t_weight.T
    T = 3.0
    res = distill_loss(s_logits, None, labels, LossSpec(loss=loss, temperature=T, beta=0.3), teacher_hidden=t_logits)
    at_one = distill_loss(s_logits / T, None, labels, LossSpec(loss=loss, temperature=1.0, beta=0.3),
                          teacher_hidden=t_logits / T)
    torch.testing.assert_close(res.kd, T * T * at_one.kd, rtol=1e-12, atol=1e-12)
    # And from first principles: T^2 * mean over counted tokens of D(softmax(t/T), softmax(s/T)).
    keep = labels != -100
    p, q = torch.softmax(t_logits[keep] / T, 1), torch.softmax(s_logits[keep] / T, 1)
    expected = T * T * divergence(loss, p, q, 0.3, 0.1).mean()
    torch.testing.assert_close(res.kd, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "tvd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunked_equals_plain(loss, dtype):
    hidden, weight, t_hidden, t_weight, labels = _problem(n=37, v=50, dtype=dtype, seed=11)
    runs = []
    for chunk in (1, 3, 16, 37):
        spec = LossSpec(loss=loss, chunk_tokens=chunk, top_k=0 if loss != "tvd" else 8, top_k_mode="tail")
        res, gh, gw = _ours(hidden, weight, t_hidden, t_weight, labels, spec)
        runs.append((res.loss.detach(), res.kd, res.ce, res.agree, gh, gw))
    tol = 1e-13 if dtype == torch.float64 else 2e-6
    for other in runs[:-1]:
        for a, b in zip(other, runs[-1]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_num_tokens_makes_micro_batches_sum_to_the_step_mean():
    hidden, weight, t_hidden, t_weight, labels = _problem(n=20, seed=12, masked=(0, 3, 11, 12))
    spec = LossSpec(loss="forward_kl", alpha=0.5)
    whole, gh, gw = _ours(hidden, weight, t_hidden, t_weight, labels, spec)
    total = int((labels != -100).sum())
    parts = [slice(0, 9), slice(9, 20)]
    loss_sum, gh_sum, gw_sum, kd_sum = 0.0, torch.zeros_like(gh), torch.zeros_like(gw), 0.0
    for part in parts:
        res = distill_loss(hidden[part], weight, labels[part], spec, teacher_hidden=t_hidden[part],
                           teacher_head=t_weight, num_tokens=total)
        g_part, g_w = torch.autograd.grad(res.loss, (hidden, weight))
        loss_sum, kd_sum = loss_sum + res.loss, kd_sum + res.kd
        gh_sum, gw_sum = gh_sum + g_part, gw_sum + g_w
    torch.testing.assert_close(loss_sum, whole.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kd_sum, whole.kd, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gh_sum, gh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw_sum, gw, rtol=1e-12, atol=1e-12)


def test_alpha_blend_and_ce_control():
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=13)
    res = distill_loss(hidden, weight, labels, LossSpec(alpha=0.3), teacher_hidden=t_hidden, teacher_head=t_weight)
    torch.testing.assert_close(res.loss.detach(), 0.3 * res.kd + 0.7 * res.ce, rtol=1e-12, atol=1e-12)
    ce = distill_loss(hidden, weight, labels, LossSpec(loss="ce"))  # no teacher needed
    expected = torch.nn.functional.cross_entropy(hidden @ weight.T, labels, ignore_index=-100)
    torch.testing.assert_close(ce.loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ce.ce, res.ce, rtol=1e-12, atol=1e-12)
    assert math.isnan(float(ce.agree)) and float(ce.kd) == 0.0


def test_divergence_endpoints():
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=14)

    def kd(**spec):
        return distill_loss(hidden, weight, labels, LossSpec(**spec), teacher_hidden=t_hidden,
                            teacher_head=t_weight).kd

    close = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kd(loss="jsd", beta=0.0), kd(loss="forward_kl"), **close)
    torch.testing.assert_close(kd(loss="jsd", beta=1.0), kd(loss="reverse_kl"), **close)
    torch.testing.assert_close(kd(loss="skew_forward_kl", skew=0.0), kd(loss="forward_kl"), **close)
    torch.testing.assert_close(kd(loss="skew_reverse_kl", skew=0.0), kd(loss="reverse_kl"), **close)
    assert float(kd(loss="skew_forward_kl", skew=1.0)) == pytest.approx(0.0, abs=1e-12)
    # Inside (0, 1) the generalized JSD is about beta * KL(p || q) near beta = 0 (the documented jump).
    torch.testing.assert_close(kd(loss="jsd", beta=1e-6) / 1e-6, kd(loss="forward_kl"), rtol=1e-4, atol=0)
    torch.testing.assert_close(kd(loss="jsd", beta=1 - 1e-6) / 1e-6, kd(loss="reverse_kl"), rtol=1e-4, atol=0)


def test_agreement_counts_matching_argmax_on_counted_tokens():
    v = 6
    student_top = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    teacher_top = torch.tensor([0, 1, 5, 3, 0, 5, 1, 1])  # agree at 0, 1, 3, 5, 7
    s = torch.nn.functional.one_hot(student_top, v).double() * 4 + 0.1 * torch.randn(8, v, dtype=torch.float64)
    t = torch.nn.functional.one_hot(teacher_top, v).double() * 4
    labels = torch.zeros(8, dtype=torch.long)
    labels[7] = -100  # an agreeing position that is not counted
    res = distill_loss(s, None, labels, LossSpec(), teacher_hidden=t)
    assert float(res.agree) == 4.0
    values, ids = torch.topk(torch.log_softmax(t, 1), 3, dim=1)
    cached = distill_loss(s, None, labels, LossSpec(top_k=3), teacher_topk=(ids, values))
    assert float(cached.agree) == 4.0


def test_minus_infinity_teacher_logits():
    """Teacher logits of -inf (masked tokens) mean probability 0: finite loss, as the reference."""
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=15)
    t_logits = t_hidden @ t_weight.T
    t_logits[:, [2, 5]] = float("-inf")
    for loss in ("forward_kl", "jsd", "skew_forward_kl", "tvd"):
        spec = LossSpec(loss=loss, chunk_tokens=4)
        ours = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_logits)
        gh, gw = torch.autograd.grad(ours.loss, (hidden, weight))
        assert torch.isfinite(ours.loss) and torch.isfinite(gh).all()
        h = hidden.detach().clone().requires_grad_()
        ref = reference_losses(h @ weight.detach().T, t_logits, labels, spec)
        torch.testing.assert_close(ours.loss.detach(), ref.loss.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(gh, torch.autograd.grad(ref.loss, h)[0], rtol=1e-10, atol=1e-10)


def test_linear_head_with_bias():
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=16)
    head = torch.nn.Linear(8, 21, bias=True, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.normal_()
    spec = LossSpec(loss="reverse_kl", chunk_tokens=5)
    res = distill_loss(hidden, head, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight)
    gb = torch.autograd.grad(res.loss, head.bias)[0]
    b = head.bias.detach().clone().requires_grad_()
    ref = reference_losses(hidden.detach() @ weight.detach().T + b, t_hidden @ t_weight.T, labels, spec)
    torch.testing.assert_close(res.loss.detach(), ref.loss.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, torch.autograd.grad(ref.loss, b)[0], rtol=1e-12, atol=1e-12)


def test_bfloat16_inputs_give_bfloat16_gradients_close_to_reference():
    hidden, weight, t_hidden, t_weight, labels = _problem(n=32, h=16, v=64, dtype=torch.bfloat16, seed=17)
    spec = LossSpec(chunk_tokens=8)
    res, gh, gw = _ours(hidden, weight, t_hidden, t_weight, labels, spec)
    assert gh.dtype == torch.bfloat16 and gw.dtype == torch.bfloat16 and res.loss.dtype == torch.float32
    ref, rgh, rgw = _reference(hidden, weight, t_hidden, t_weight, labels, spec)
    torch.testing.assert_close(res.loss.double(), ref.loss.detach(), rtol=2e-2, atol=2e-2)
    assert float((gw.double() - rgw).norm() / rgw.norm()) < 2e-2


def test_no_grad_evaluation_gives_the_same_values():
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=18)
    spec = LossSpec(loss="tvd", top_k=4, top_k_mode="tail")
    train = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight)
    with torch.no_grad():
        ev = distill_loss(hidden, weight, labels, spec, teacher_hidden=t_hidden, teacher_head=t_weight)
    assert ev.loss.grad_fn is None and train.loss.grad_fn is not None
    for name in ("loss", "kd", "ce", "agree"):
        torch.testing.assert_close(getattr(ev, name), getattr(train, name).detach(), rtol=1e-13, atol=1e-13)


def test_spec_from_config_and_validation():
    spec = LossSpec.from_config(DistillConfig(loss="jsd", temperature=1.5, alpha=0.25, beta=0.7, skew=0.3,
                                              top_k=16, top_k_mode="tail", chunk_tokens=64))
    assert spec == LossSpec("jsd", 1.5, 0.25, 0.7, 0.3, 16, "tail", 64)
    assert LossSpec.from_config(DistillConfig()) == LossSpec()
    with pytest.raises(ValueError, match="unknown loss"):
        LossSpec(loss="kl")
    with pytest.raises(ValueError, match="temperature"):
        LossSpec(temperature=0.0)
    hidden, weight, t_hidden, t_weight, labels = _problem(seed=19)
    with pytest.raises(ValueError, match="vocab_size"):
        distill_loss(hidden, weight, labels, LossSpec(), teacher_hidden=t_hidden, teacher_head=t_weight[:20])
    with pytest.raises(ValueError, match="labels"):
        distill_loss(hidden, weight, labels.clamp(min=0) + 21, LossSpec(loss="ce"))
    with pytest.raises(ValueError, match="teacher"):
        distill_loss(hidden, weight, labels, LossSpec())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_autocast_bf16_matches_reference():
    """Under CUDA autocast the head matmuls run in bf16; loss and gradients stay close to float64."""
    hidden, weight, t_hidden, t_weight, labels = _problem(n=64, h=32, v=500, dtype=torch.float32, device="cuda")
    spec = LossSpec(loss="jsd", temperature=2.0, chunk_tokens=16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        res, gh, gw = _ours(hidden, weight, t_hidden, t_weight, labels, spec)
    assert gh.dtype == torch.float32 and gw.dtype == torch.float32
    ref, rgh, rgw = _reference(hidden, weight, t_hidden, t_weight, labels, spec)
    torch.testing.assert_close(res.loss.double().cpu(), ref.loss.detach(), rtol=2e-2, atol=2e-2)
    assert float((gw.double().cpu() - rgw).norm() / rgw.norm()) < 3e-2
