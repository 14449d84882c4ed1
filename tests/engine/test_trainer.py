"""The training loop: the loss of one micro-batch, accumulation, events, Control, LoRA, derived students."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from distill_gui.config import load_config
from distill_gui.engine import trainer as T
from distill_gui.engine.losses import LossSpec
from distill_gui.engine.models import uses_hidden_path
from distill_gui.engine.optim import lr_factor
from distill_gui.errors import ConfigError, DataError, TrainingError
from distill_gui.events import (
    CheckpointSaved,
    Control,
    EvalMetrics,
    Failed,
    Finished,
    LogMessage,
    RunStarted,
    StepMetrics,
)

from .helpers import load_weights, toy_rows, write_config, write_jsonl


def _config(tmp_path, toy, name="run", **sections):
    return load_config(write_config(tmp_path / f"{name}.toml", teacher_dir=str(toy.teacher),
                                    student_dir=str(toy.student),
                                    data_file=str(toy.train_file), output_dir=str(tmp_path / "runs"), name=name,
                                    **sections))


def _reference_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """Forward KL at T (x T^2) and CE, float64, mean over counted tokens; plus argmax agreement."""
    s, t = student_logits.double(), teacher_logits.double()
    keep = labels != -100
    s, t, y = s[keep], t[keep], labels[keep]
    p_log = torch.log_softmax(t / temperature, -1)
    q_log = torch.log_softmax(s / temperature, -1)
    kd = temperature ** 2 * (p_log.exp() * (p_log - q_log)).sum(-1).mean()
    ce = -torch.log_softmax(s, -1).gather(1, y[:, None]).mean()
    agree = (s.argmax(-1) == t.argmax(-1)).sum()
    return alpha * kd + (1 - alpha) * ce, kd, ce, agree


def _chat_batch(tokenizer, n_rows=3):
    from distill_gui.engine.data import Row, collate, encode_row, to_example

    rows = [Row(i, messages=[{"role": "user", "content": toy_rows(1, seed=i)[0][:30]},
                             {"role": "assistant", "content": " ".join(toy_rows(i + 1, seed=50 + i))}])
            for i in range(n_rows)]  # responses of different lengths: padded batches
    examples = [to_example(encode_row(r, tokenizer, max_length=256, loss_on="response"), r.line) for r in rows]
    return collate(examples, tokenizer.pad_token_id)


def test_batch_loss_equals_a_float64_reference_from_the_models_logits(toy):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher = AutoModelForCausalLM.from_pretrained(str(toy.teacher)).eval()
    student = AutoModelForCausalLM.from_pretrained(str(toy.student)).eval()
    batch = _chat_batch(AutoTokenizer.from_pretrained(str(toy.student)))
    assert (batch["attention_mask"] == 0).any() and (batch["labels"] == -100).sum() > batch["labels"].numel() // 4
    spec = LossSpec(loss="forward_kl", temperature=2.0, alpha=0.7)
    result = T.compute_batch_loss(student, teacher, batch, spec, vocab_size=None, num_tokens=None)
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.flatten(0, 1)
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.flatten(0, 1)
    loss, kd, ce, agree = _reference_loss(s, t, batch["labels"].flatten(), 2.0, 0.7)
    assert uses_hidden_path(student) and uses_hidden_path(teacher)
    assert result.n_tokens == int((batch["labels"] != -100).sum())
    assert float(result.loss.detach()) == pytest.approx(float(loss), rel=1e-5)
    assert float(result.kd) == pytest.approx(float(kd), rel=1e-5)
    assert float(result.ce) == pytest.approx(float(ce), rel=1e-5)
    assert int(result.agree) == int(agree)


def test_soft_capped_logits_fall_back_to_the_logits_path(toy):
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(toy.student))
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=2.0,
                          pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    student, teacher = Gemma2ForCausalLM(config).eval(), Gemma2ForCausalLM(config).eval()
    batch = _chat_batch(tokenizer)
    assert not uses_hidden_path(student)  # head(hidden) != logits: the loss must see the capped logits
    result = T.compute_batch_loss(student, teacher, batch, LossSpec(alpha=0.5), vocab_size=None, num_tokens=None)
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.flatten(0, 1)
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.flatten(0, 1)
    loss, *_ = _reference_loss(s, t, batch["labels"].flatten(), 2.0, 0.5)
    assert float(result.loss.detach()) == pytest.approx(float(loss), rel=1e-5)


def test_gradient_accumulation_gives_the_gradient_of_one_big_batch(tmp_path, toy):
    """Adam's first moment after one step is (1 - beta1) * gradient: compare it between 4 x 1 and 2 x 2."""
    states = {}
    for name, batch, accum in (("big", 4, 1), ("accum", 2, 2)):
        cfg = _config(tmp_path, toy, name, train={"max_steps": 1, "batch_size": batch, "grad_accum": accum})
        result = T.train(cfg)
        states[name] = torch.load(result.run_dir / "checkpoints/step-1/trainer_state.pt")["optimizer"]["state"]
    assert len(states["big"]) == len(states["accum"]) > 5
    for index, state in states["big"].items():
        torch.testing.assert_close(states["accum"][index]["exp_avg"], state["exp_avg"], rtol=1e-4, atol=1e-9)


def test_events_metrics_file_checkpoints_and_final_folder(tmp_path, toy):
    from transformers import AutoModelForCausalLM

    events = []
    cfg = _config(tmp_path, toy, train={"max_steps": 6, "log_every": 2, "eval_every": 4, "save_every": 4,
                                        "keep_checkpoints": 1, "warmup_steps": 2, "scheduler": "linear"},
                  data={"eval_fraction": 0.25})
    result = T.train(cfg, on_event=events.append)
    kinds = [type(e) for e in events]
    assert kinds.index(RunStarted) < kinds.index(StepMetrics) and kinds[-1] is Finished
    started = events[kinds.index(RunStarted)]
    assert started.total_steps == 6 and started.student_params == started.trainable_params > started.teacher_params / 10
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert [e.step for e in steps] == [2, 4, 6]
    for e in steps:  # lr reported for the last step of each window, from the warm-up + linear schedule
        assert e.lr == pytest.approx(3e-3 * lr_factor(e.step - 1, warmup=2, total=6, kind="linear"))
        assert 0.0 <= e.agreement <= 1.0 and e.tokens_per_s > 0 and e.memory_bytes > 0
        assert e.loss == pytest.approx(0.9 * e.kd + 0.1 * e.ce, rel=1e-6)
    assert [e.step for e in events if isinstance(e, EvalMetrics)] == [0, 4, 6]
    assert [e.step for e in events if isinstance(e, CheckpointSaved)] == [4, 6]
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["step-6"]  # keep_checkpoints = 1
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in records] == [("eval", 0), ("step", 2), ("step", 4), ("eval", 4),
                                                          ("step", 6), ("eval", 6)]
    assert load_config(result.run_dir / "config.toml").to_dict() == cfg.to_dict()
    model = AutoModelForCausalLM.from_pretrained(str(result.final_dir))
    assert model.config.num_hidden_layers == 1
    assert "chat_template" in json.loads((result.final_dir / "tokenizer_config.json").read_text())
    final = events[-1]
    assert final.summary["perplexity"] < final.summary["initial_perplexity"] and not final.stopped_early


def test_stop_saves_a_usable_model_and_resume_ends_with_the_uninterrupted_weights(tmp_path, toy):
    from transformers import AutoModelForCausalLM

    control = Control()

    def stop_at_3(event):
        if isinstance(event, StepMetrics) and event.step == 3:
            control.stop()

    settings = {"train": {"max_steps": 6, "log_every": 1}}
    stopped = T.train(_config(tmp_path, toy, "split", **settings), on_event=stop_at_3, control=control)
    assert stopped.stopped_early and stopped.step == 3
    assert (stopped.run_dir / "checkpoints/step-3").is_dir()
    AutoModelForCausalLM.from_pretrained(str(stopped.final_dir))  # usable after a stop
    resumed = T.train(_config(tmp_path, toy, "split", **settings), resume=True)
    whole = T.train(_config(tmp_path, toy, "whole", **settings))
    assert resumed.step == whole.step == 6 and not resumed.stopped_early
    a, b = load_weights(resumed.final_dir), load_weights(whole.final_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_pause_waits_saves_and_continues_and_stop_ends_a_pause(tmp_path, toy):
    from distill_gui.engine.losses import fused as fused_loss
    control = Control()
    events = []
    chunk_buffers = {}  # event name -> whether the loss's CPU chunk buffers were held then

    def on_event(event):
        events.append(event)
        chunk_buffers.setdefault(type(event).__name__, fused_loss._LOCAL.__dict__.get("workspace") is not None)
        if isinstance(event, StepMetrics) and event.step == 2:
            control.pause(free_memory=True)
            threading.Timer(0.3, control.resume).start()

    result = T.train(_config(tmp_path, toy, "pause", train={"max_steps": 4, "log_every": 1}), on_event, control)
    kinds = [type(e).__name__ for e in events]
    paused = kinds.index("Paused")
    assert kinds[paused - 1] == "CheckpointSaved" and events[paused - 1].step == 2  # saved before waiting
    assert kinds[paused + 1] == "Resumed" and events[paused].step == events[paused + 1].step == 2
    assert not events[paused].freed_memory  # no accelerator memory to free on the CPU
    assert chunk_buffers["StepMetrics"] and not chunk_buffers["Paused"]  # but the chunk buffers went
    assert result.step == 4 and not result.stopped_early
    assert fused_loss._LOCAL.__dict__.get("workspace") is None  # and go again when the run ends

    control = Control()

    def pause_then_stop(event):
        if isinstance(event, StepMetrics) and event.step == 1:
            control.pause()
            threading.Timer(0.2, control.stop).start()

    result = T.train(_config(tmp_path, toy, "pause-stop", train={"max_steps": 4, "log_every": 1}),
                     pause_then_stop, control)
    assert result.stopped_early and result.step == 1 and (result.final_dir / "config.json").is_file()


def test_lora_trains_adapters_only_merges_them_and_resumes_exactly(tmp_path, toy):
    control = Control()
    events = []

    def stop_at_2(event):
        events.append(event)
        if isinstance(event, StepMetrics) and event.step == 2:
            control.stop()

    lora = {"student": {"lora_rank": 4, "lora_alpha": 8}, "train": {"max_steps": 4, "log_every": 1, "lr": 2e-2}}
    T.train(_config(tmp_path, toy, "lora", **lora), on_event=stop_at_2, control=control)
    started = next(e for e in events if isinstance(e, RunStarted))
    assert 0 < started.trainable_params < started.student_params / 4
    assert (tmp_path / "runs/lora/checkpoints/step-2/adapter_model.safetensors").is_file()
    resumed = T.train(_config(tmp_path, toy, "lora", **lora), resume=True)
    whole = T.train(_config(tmp_path, toy, "lora-whole", **lora))
    merged, initial = load_weights(resumed.final_dir), load_weights(toy.student)
    assert not any("lora" in k for k in merged) and merged.keys() == initial.keys()
    assert torch.equal(merged["model.embed_tokens.weight"], initial["model.embed_tokens.weight"])
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           initial["model.layers.0.self_attn.q_proj.weight"])
    reference = load_weights(whole.final_dir)
    assert all(torch.equal(merged[k], reference[k]) for k in merged)


def test_student_derived_from_the_teacher_trains(tmp_path, toy):
    result = T.train(_config(tmp_path, toy, "derived", student={"model": "teacher", "keep_layers": [1]},
                             train={"max_steps": 2}))
    assert json.loads((result.run_dir / "student-init/derived_from.json").read_text())["keep_layers"] == [1]
    assert json.loads((result.final_dir / "config.json").read_text())["num_hidden_layers"] == 1


def test_gradient_checkpointing_gives_the_same_weights(tmp_path, toy):
    plain = T.train(_config(tmp_path, toy, "plain", train={"max_steps": 2}))
    checkpointed = T.train(_config(tmp_path, toy, "ckpt", train={"max_steps": 2, "gradient_checkpointing": True}))
    a, b = load_weights(plain.final_dir), load_weights(checkpointed.final_dir)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_an_existing_run_is_never_overwritten(tmp_path, toy):
    T.train(_config(tmp_path, toy, "once", train={"max_steps": 1}))
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        T.train(_config(tmp_path, toy, "once", train={"max_steps": 1}))


def test_resume_without_checkpoint_starts_over_with_a_warning(tmp_path, toy):
    events = []
    result = T.train(_config(tmp_path, toy, "fresh", train={"max_steps": 1}), on_event=events.append, resume=True)
    assert result.step == 1
    assert any(isinstance(e, LogMessage) and "starting the run from the beginning" in e.message for e in events)


def test_failures_emit_failed_with_the_same_message_before_raising(tmp_path, toy):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, {"prompt": "no answer"}])
    cfg = _config(tmp_path, toy, "bad")
    cfg.data.train = str(bad)
    events = []
    with pytest.raises(DataError) as info:
        T.train(cfg, on_event=events.append)
    assert isinstance(events[-1], Failed) and events[-1].message == info.value.message
    assert "bad.jsonl, line 2" in info.value.message
    assert not (tmp_path / "runs/bad").exists()  # bad input leaves nothing behind


def test_a_loss_that_becomes_nan_stops_with_a_training_error(tmp_path, toy, monkeypatch):
    real = T.distill_loss

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        result.loss = result.loss * float("nan")
        return result

    monkeypatch.setattr(T, "distill_loss", poisoned)
    events = []
    with pytest.raises(TrainingError, match="became nan at step 1") as info:
        T.train(_config(tmp_path, toy, "nan", train={"max_steps": 2}), on_event=events.append)
    assert info.value.exit_code == 1 and isinstance(events[-1], Failed)


def test_padded_teacher_embedding_is_restricted_to_the_real_vocabulary(tmp_path, toy):
    """A teacher with 24 extra (padding) rows that would grab probability mass: the run's KD term must
    equal the reference over the shared vocabulary, renormalised there (never zero-padded logits)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.workflows.tiny import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(toy.teacher))
    vocab = len(tokenizer)
    teacher = AutoModelForCausalLM.from_pretrained(str(toy.teacher))
    teacher.resize_token_embeddings(vocab + 24)
    with torch.no_grad():
        teacher.lm_head.weight[vocab:] = 3 * teacher.lm_head.weight[:vocab].std() * torch.randn(24, 64)
    teacher.save_pretrained(str(tmp_path / "padded"))
    save_tokenizer(tokenizer, tmp_path / "padded")
    eval_file = write_jsonl(tmp_path / "eval.jsonl", [{"text": t} for t in toy_rows(6, seed=11)])
    cfg = _config(tmp_path, toy, "padded", train={"max_steps": 1}, data={"eval": str(eval_file)})
    cfg.teacher.model = str(tmp_path / "padded")
    events = []
    T.train(cfg, on_event=events.append)
    assert any(isinstance(e, LogMessage) and "restricted to the" in e.message for e in events)
    first_eval = next(e for e in events if isinstance(e, EvalMetrics))

    student = AutoModelForCausalLM.from_pretrained(str(toy.student)).eval()
    kd_sum, tokens = 0.0, 0
    with torch.no_grad():
        for text in toy_rows(6, seed=11):
            ids = torch.tensor([tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]])
            s = student(input_ids=ids).logits[0, :-1].double()
            t = teacher(input_ids=ids).logits[0, :-1, :vocab].double()
            assert teacher(input_ids=ids).logits.shape[-1] == vocab + 24
            p_log, q_log = torch.log_softmax(t / 2, -1), torch.log_softmax(s / 2, -1)
            kd_sum += float(4 * (p_log.exp() * (p_log - q_log)).sum())
            tokens += ids.shape[1] - 1
    assert first_eval.step == 0 and first_eval.kd == pytest.approx(kd_sum / tokens, rel=1e-4)


def test_bf16_autocast_runs_on_the_cpu(tmp_path, toy):
    """The mixed-precision path (autocast around forwards and loss, bf16 teacher) that CUDA uses by default."""
    events = []
    result = T.train(_config(tmp_path, toy, "bf16", teacher={"dtype": "bfloat16"},
                             train={"max_steps": 3, "precision": "bf16", "log_every": 1}), on_event=events.append)
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.precision == "bf16"
    losses = [e.loss for e in events if isinstance(e, StepMetrics)]
    assert len(losses) == 3 and all(0 < loss < 20 for loss in losses)
    assert {t.dtype for t in load_weights(result.final_dir).values()} == {torch.float32}  # published dtype
