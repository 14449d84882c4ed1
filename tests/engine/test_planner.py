"""The memory planner against independent counts: real parameter numbers, peft's LoRA size, and the
activations autograd actually saves."""

from __future__ import annotations

import pytest
import torch

from distill_gui.config import RunConfig
from distill_gui.engine.models import inspect_model
from distill_gui.engine.planner import plan_memory

GB = 10**9


@pytest.fixture(scope="module")
def infos(tiny_pair):
    return inspect_model(str(tiny_pair[0])), inspect_model(str(tiny_pair[1]))


def _cfg(tiny_pair, **train) -> RunConfig:
    cfg = RunConfig()
    cfg.teacher.model, cfg.student.model = str(tiny_pair[0]), str(tiny_pair[1])
    cfg.data.max_length = 64
    cfg.train.batch_size = 4
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def _plan(cfg, infos, device="cpu", available=8 * GB):
    return plan_memory(cfg, device, available_bytes=available, teacher_info=infos[0], student_info=infos[1])


def _numel(folder) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(folder)).parameters())


def test_weights_gradients_and_optimizer_follow_the_real_parameter_counts(tiny_pair, infos):
    plan = _plan(_cfg(tiny_pair), infos)
    teacher, student = _numel(tiny_pair[0]), _numel(tiny_pair[1])
    assert plan.get("teacher weights") == 4 * teacher  # fp32 on the CPU
    assert plan.get("student weights") == plan.get("gradients") == 4 * student
    assert plan.get("optimizer state") == 8 * student  # two fp32 AdamW moments
    assert plan.fits and plan.advice == [] and "fits" in plan.summary().splitlines()[0]


def test_lora_estimate_equals_peft_trainable_parameters(tiny_pair, infos):
    from transformers import AutoModelForCausalLM

    from distill_gui.engine.models import apply_lora

    cfg = _cfg(tiny_pair)
    cfg.student.lora_rank = 8
    model = apply_lora(AutoModelForCausalLM.from_pretrained(str(tiny_pair[1])), 8, 16)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    plan = _plan(cfg, infos)
    assert plan.get("optimizer state") == 8 * trainable and plan.get("gradients") == 4 * trainable


def test_activation_estimate_matches_what_autograd_saves(tiny_pair, infos):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_pair[1])).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        key = tensor.untyped_storage().data_ptr()
        if key not in params:
            saved[key] = max(saved.get(key, 0), tensor.untyped_storage().nbytes())
        return tensor

    ids = torch.randint(0, 500, (4, 64))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model(input_ids=ids, use_cache=False)
    measured = sum(saved.values()) + 4 * 64 * 64 * 4  # + the final hidden states the loss holds
    estimate = _plan(_cfg(tiny_pair), infos).get("activations")
    assert 0.85 < estimate / measured < 1.15, (estimate, measured)


def test_gradient_checkpointing_and_batch_size_move_activations(tiny_pair, infos):
    base = _plan(_cfg(tiny_pair), infos).get("activations")
    checkpointed = _plan(_cfg(tiny_pair, gradient_checkpointing=True), infos).get("activations")
    double = _plan(_cfg(tiny_pair, batch_size=8), infos).get("activations")
    assert checkpointed < base / 1.5 and double == pytest.approx(2 * base, rel=1e-9)


def test_a_plan_that_does_not_fit_says_what_to_change(tiny_pair, infos):
    cfg = _cfg(tiny_pair, batch_size=64)
    cfg.data.max_length = 2048
    plan = _plan(cfg, infos, device="cuda:0", available=int(1.5 * GB))
    assert not plan.fits
    text = plan.summary()
    assert "does not fit" in text.splitlines()[0] and "To make it fit:" in text
    assert any("gradient_checkpointing = true" in a for a in plan.advice)
    assert any("batch_size = 32 and train.grad_accum = 8" in a for a in plan.advice)
    assert all("saves about" in a for a in plan.advice if a.startswith(("set", "train", "load")))
    # advice is ordered by the memory it saves
    savings = [plan.needed_bytes - _plan_after(cfg, infos, a) for a in plan.advice[:2]]
    assert savings == sorted(savings, reverse=True)


def _plan_after(cfg, infos, advice: str) -> int:
    trial = cfg.copy()
    if "gradient_checkpointing" in advice:
        trial.train.gradient_checkpointing = True
    elif "batch_size" in advice:
        trial.train.batch_size //= 2
        trial.train.grad_accum *= 2
    elif "max_length" in advice:
        trial.data.max_length //= 2
    return _plan(trial, infos, device="cuda:0", available=int(1.5 * GB)).needed_bytes


def test_quantized_teacher_and_8bit_optimizer_shrink_the_plan_on_cuda(tiny_pair, infos):
    full = _plan(_cfg(tiny_pair), infos, device="cuda:0")
    cfg = _cfg(tiny_pair, optimizer="adamw_8bit")
    cfg.teacher.load_in = "4bit"
    small = _plan(cfg, infos, device="cuda:0")
    assert small.get("optimizer state") == full.get("optimizer state") // 4
    assert small.get("teacher weights") < full.get("teacher weights") / 2  # bf16 -> 4-bit body, 16-bit embeddings
