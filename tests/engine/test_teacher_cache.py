"""The cached white-box teacher: rows, equality with the live top-k path, staleness, resume."""

from __future__ import annotations

import shutil
import weakref

import numpy as np
import pytest
import torch

from distill_gui.config import load_config
from distill_gui.engine import models as M
from distill_gui.engine import trainer as T
from distill_gui.engine.data import collate, load_datasets
from distill_gui.engine.losses import LossSpec
from distill_gui.engine.teacher.cache import (
    CacheKey,
    PhaseStopped,
    TeacherTopK,
    examples_hash,
    model_files_hash,
    open_or_build,
    tokenizer_hash,
)
from distill_gui.events import Control, LogMessage, PhaseProgress, StepMetrics

from .helpers import write_config


@pytest.fixture(scope="module")
def setup(toy):
    """The toy teacher and student, and the tokenized transfer set."""
    tokenizer = M.load_tokenizer(toy.student)
    teacher = M.load_model(toy.teacher, dtype="float32", device="cpu").eval()
    student = M.load_model(toy.student, dtype="float32", device="cpu")
    cfg = load_config(write_config(toy.student.parent / "cache-setup.toml", teacher_dir=str(toy.teacher),
                                   student_dir=str(toy.student), data_file=str(toy.train_file), output_dir="unused"))
    data = load_datasets(cfg.data, tokenizer, seed=0)
    return tokenizer, teacher, student, data.train + data.eval


def _key(tokenizer, examples, *, k=8, dtype="float32", teacher="t") -> CacheKey:
    return CacheKey(tokenizer=tokenizer_hash(tokenizer), data=examples_hash(examples), teacher=teacher, k=k,
                    dtype=dtype, vocab=len(tokenizer))


def _producer(teacher, tokenizer, k=8):
    import contextlib

    return TeacherTopK(teacher, k=k, vocab=len(tokenizer), pad_id=tokenizer.pad_token_id, device="cpu",
                       autocast=contextlib.nullcontext)


def test_cache_rows_are_the_teachers_top_k_log_probabilities(tmp_path, setup):
    tokenizer, teacher, _, examples = setup
    cache = open_or_build(tmp_path / "train", examples, _key(tokenizer, examples), _producer(teacher, tokenizer),
                          batch_size=5)
    assert cache.n_examples == len(examples) and cache.n_rows == sum(e.n_targets for e in examples)
    assert cache.nbytes() == cache.n_rows * 8 * (4 + 4)
    for index in (0, len(examples) - 1):
        example = examples[index]
        with torch.no_grad():  # float64 reference from the full logits, one example alone
            logits = teacher(input_ids=torch.tensor([example.input_ids])).logits[0].double()
        logprobs = torch.log_softmax(logits[:, :len(tokenizer)], dim=-1)
        positions = [p for p, label in enumerate(example.labels) if label != -100]
        want = torch.topk(logprobs[positions], 8, dim=1)
        ids, lps = cache.example(index)
        assert np.array_equal(ids, want.indices.numpy())
        np.testing.assert_allclose(lps, want.values.numpy(), rtol=0, atol=2e-5)


@pytest.mark.parametrize("mode,temperature,loss", [("renorm", 2.0, "forward_kl"), ("tail", 1.0, "forward_kl"),
                                                   ("renorm", 1.5, "jsd")])
def test_cached_loss_and_gradients_equal_the_live_top_k_path(tmp_path, setup, mode, temperature, loss):
    tokenizer, teacher, student, examples = setup
    batch_examples, indices = examples[2:6], [2, 3, 4, 5]
    spec = LossSpec(loss=loss, temperature=temperature, alpha=0.7, top_k=8, top_k_mode=mode)
    results = {}
    for dtype in ("float32", "float16"):
        cache = open_or_build(tmp_path / dtype, examples, _key(tokenizer, examples, dtype=dtype),
                              _producer(teacher, tokenizer), batch_size=4)
        batch = collate(batch_examples, tokenizer.pad_token_id)
        topk = cache.batch_topk(indices, batch["labels"])
        results[dtype] = _loss_and_grad(student, None, batch, spec, topk)
    live = _loss_and_grad(student, teacher, collate(batch_examples, tokenizer.pad_token_id), spec, None)
    for name, tol in (("float32", 1e-5), ("float16", 3e-3)):
        (loss_c, kd_c, agree_c, grad_c), (loss_l, kd_l, agree_l, grad_l) = results[name], live
        assert loss_c == pytest.approx(loss_l, rel=tol) and kd_c == pytest.approx(kd_l, rel=tol)
        assert agree_c == agree_l
        torch.testing.assert_close(grad_c, grad_l, rtol=tol * 10, atol=tol * 1e-2)


def _loss_and_grad(student, teacher, batch, spec, topk):
    student.zero_grad(set_to_none=True)
    result = T.compute_batch_loss(student, teacher, batch, spec, vocab_size=None, num_tokens=None, teacher_topk=topk)
    result.loss.backward()
    grad = student.get_output_embeddings().weight.grad.detach().clone()
    return float(result.loss.detach()), float(result.kd), float(result.agree), grad


def test_a_stale_cache_is_rebuilt_never_used(tmp_path, setup):
    tokenizer, teacher, _, examples = setup
    calls = []
    producer = _producer(teacher, tokenizer)

    def counting(batch):
        calls.append(len(batch))
        return producer(batch)

    def build(key, items=examples):
        events = []
        cache = open_or_build(tmp_path / "c", items, key, counting, batch_size=100, on_event=events.append)
        return cache, [e.message for e in events if isinstance(e, LogMessage) and e.level == "warning"]

    base = _key(tokenizer, examples)
    build(base)
    assert calls == [len(examples)]
    _, warnings = build(base)
    assert calls == [len(examples)] and warnings == []  # valid: reused, the teacher is not run
    fewer = examples[:-1]
    cache, warnings = build(_key(tokenizer, fewer), fewer)
    assert calls[-1] == len(fewer) and cache.n_examples == len(fewer) and "training data" in warnings[0]
    _, warnings = build(_key(tokenizer, fewer, teacher="other weights"), fewer)
    assert "teacher" in warnings[0] and len(calls) == 3
    changed = CacheKey(**{**_key(tokenizer, fewer, teacher="other weights").to_dict(), "tokenizer": "x"})
    _, warnings = build(changed, fewer)
    assert "student tokenizer" in warnings[0] and len(calls) == 4


def test_the_teacher_hash_follows_its_weights_and_settings(tmp_path, toy):
    folder = tmp_path / "teacher"
    shutil.copytree(toy.teacher, folder)
    before = model_files_hash(folder, {"dtype": "float32"})
    assert model_files_hash(folder, {"dtype": "float32"}) == before
    assert model_files_hash(folder, {"dtype": "bfloat16"}) != before
    weights = next(folder.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # one byte of the last tensor
    weights.write_bytes(bytes(data))
    assert model_files_hash(folder, {"dtype": "float32"}) != before


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path, setup):
    tokenizer, teacher, _, examples = setup
    key = _key(tokenizer, examples, dtype="float16")
    producer = _producer(teacher, tokenizer)
    control, seen = Control(), []

    def stopping(batch):
        seen.append(len(batch))
        if len(seen) == 2:
            control.stop()
        return producer(batch)

    with pytest.raises(PhaseStopped):
        open_or_build(tmp_path / "c", examples, key, stopping, batch_size=3, control=control)
    assert not (tmp_path / "c").exists() and (tmp_path / "c.partial" / "progress.json").is_file()
    rest, events = [], []
    cache = open_or_build(tmp_path / "c", examples, key, lambda b: rest.append(len(b)) or producer(b), batch_size=3,
                          on_event=events.append)
    assert sum(rest) == len(examples) - 6  # the two finished batches are not computed again
    assert any(isinstance(e, LogMessage) and "Continuing" in e.message for e in events)
    whole = open_or_build(tmp_path / "d", examples, key, producer, batch_size=3)
    assert np.array_equal(cache.ids, whole.ids) and np.array_equal(cache.logprobs, whole.logprobs)
    assert cache.logprobs.dtype == np.float16 and cache.nbytes() == cache.n_rows * 8 * (4 + 2)


def test_training_from_the_cache_matches_the_live_teacher_and_never_holds_both(tmp_path, toy, monkeypatch):
    """Same seeds, same steps: the cached run's losses equal the live run's; the teacher is freed first."""
    common = dict(teacher_dir=str(toy.teacher), student_dir=str(toy.student), data_file=str(toy.train_file),
                  output_dir=str(tmp_path / "runs"), distill={"top_k": 8, "temperature": 2.0},
                  train={"max_steps": 3, "log_every": 1, "eval_every": 0})
    live = load_config(write_config(tmp_path / "live.toml", name="live", **common))
    cached = load_config(write_config(tmp_path / "cached.toml", name="cached",
                                      teacher={"model": str(toy.teacher), "cache_top_k": 8, "cache_dtype": "float32"},
                                      **{k: v for k, v in common.items() if k != "teacher_dir"}, teacher_dir=""))
    loaded = []
    real_load = M.load_model

    def tracking(folder, **kwargs):
        alive = [ref() for role, ref in loaded if ref() is not None]
        model = real_load(folder, **kwargs)
        loaded.append((kwargs.get("role"), weakref.ref(model)))
        if kwargs.get("role") == "student":
            assert not [m for m in alive if m is not None and m is not model], "teacher still loaded"
        return model

    events = {"live": [], "cached": []}
    T.train(live, on_event=events["live"].append)
    monkeypatch.setattr(M, "load_model", tracking)
    T.train(cached, on_event=events["cached"].append)
    assert [role for role, _ in loaded] == ["teacher", "student"]
    steps = {name: [e for e in evs if isinstance(e, StepMetrics)] for name, evs in events.items()}
    assert len(steps["cached"]) == 3
    for a, b in zip(steps["live"], steps["cached"]):
        assert b.loss == pytest.approx(a.loss, rel=1e-5) and b.kd == pytest.approx(a.kd, rel=1e-4)
    assert any(isinstance(e, PhaseProgress) and e.phase == "precompute" for e in events["cached"])
    assert (tmp_path / "runs/cached/teacher-cache/train/meta.json").is_file()


def _info(name, params, layers, hidden, inter, heads, kv, vocab):
    return M.ModelInfo(ref=name, path=name, architecture="Qwen2ForCausalLM", model_type="qwen2", parameters=params,
                       parameters_exact=True, layers=layers, hidden_size=hidden, intermediate_size=inter,
                       attention_heads=heads, kv_heads=kv, vocab_rows=vocab, tokenizer_vocab=151_665,
                       chat_template=True, tied_embeddings=False, max_positions=32768, weights_dtype="bfloat16",
                       is_local=True)


def test_the_planner_fits_with_a_cached_teacher_a_pair_that_does_not_fit_live():
    from distill_gui.config import RunConfig
    from distill_gui.engine.planner import plan_memory

    teacher = _info("teacher-7b", 7_615_616_512, 28, 3584, 18944, 28, 4, 152_064)
    student = _info("student-0.5b", 494_032_768, 24, 896, 4864, 14, 2, 151_936)
    cfg = RunConfig()
    cfg.teacher.model, cfg.student.model = "teacher-7b", "student-0.5b"
    cfg.data.max_length, cfg.train.batch_size, cfg.distill.top_k = 1024, 2, 64
    available = 16 * 10**9

    def plan(config):
        return plan_memory(config, "cuda:0", available_bytes=available, teacher_info=teacher, student_info=student)

    live = plan(cfg)
    assert not live.fits and live.get("teacher weights") == teacher.parameters * 2  # bf16 weights alone: 15.2 GB
    assert any("teacher.cache_top_k = 64" in text for text in live.advice)
    cached_cfg = cfg.copy()
    cached_cfg.teacher.cache_top_k = 64
    cached = plan(cached_cfg)
    assert cached.get("teacher weights") == 0 and cached.get("teacher activations") == 0
    assert cached.get("cached teacher rows") == 2 * 1024 * 64 * 12
    phase = sum(item.bytes for item in cached.teacher_phase)
    training = sum(item.bytes for item in cached.items)
    assert cached.needed_bytes == max(phase, training) < live.needed_bytes
    assert phase > teacher.parameters * 2 and "runs alone" in cached.summary()
    # A 7B teacher in bf16 plus its working memory still exceeds 16 GB: 8-bit loading is the advice then.
    assert not cached.fits and any("8 bits" in text for text in cached.advice)
    cached_cfg.teacher.load_in = "8bit"
    assert plan(cached_cfg).fits
    live_8bit = cfg.copy()
    live_8bit.teacher.load_in = "8bit"
    assert not plan(live_8bit).fits  # the same pair does not fit together
