"""Evaluation metrics against independent computations: float64 numpy loops over full-forward logits,
step-by-step argmax decoding without a cache, and the weight files themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill_gui.engine import models as M
from distill_gui.engine.data import Row, tokenize_rows
from distill_gui.engine.evaluation import evaluate as E
from distill_gui.paths import json_safe
from distill_gui.workflows.tiny import make_tiny_model, save_tokenizer

PADDED_ROWS = 5  # embedding rows beyond the tokenizer, as in real model families


@pytest.fixture(scope="module")
def pair(tiny_pair, tmp_path_factory):
    """(teacher_dir, student_dir, tokenizer): a peaked random teacher whose head has padded rows, and a
    student that is the teacher with noise on every weight (so they agree on some tokens, not all)."""
    tokenizer = M.load_tokenizer(tiny_pair[0])
    root = tmp_path_factory.mktemp("eval_pair")
    model = make_tiny_model("qwen2", len(tokenizer) + PADDED_ROWS, hidden=32, layers=2, heads=4, kv_heads=2, seed=3,
                            init_std=0.4, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(str(root / "teacher"))
    torch.manual_seed(4)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(0.08 * weight.std() * torch.randn_like(weight))
    model.save_pretrained(str(root / "student"))
    for name in ("teacher", "student"):
        save_tokenizer(tokenizer, root / name)
    return root / "teacher", root / "student", tokenizer


ROWS = [
    Row(1, messages=[{"role": "user", "content": "What is the river?"},
                     {"role": "assistant", "content": "A blue river."}]),
    Row(2, text="The teacher learns slowly while the student learns fast, because the token is small."),
    Row(3, messages=[{"role": "system", "content": "Be short."}, {"role": "user", "content": "Seven?"},
                     {"role": "assistant", "content": "Twelve and seven are numbers."}]),
]


def _examples(tokenizer):
    examples, skipped = tokenize_rows(ROWS, tokenizer, max_length=64, loss_on="response")
    assert skipped == 0 and len(examples) == 3
    return examples


def _log_softmax64(row: np.ndarray) -> np.ndarray:
    top = row.max()
    return row - (top + math.log(np.exp(row - top).sum()))


def reference(student, teacher, examples, vocab: int) -> dict:
    """Per example (no padding), full logits in float64, explicit loop over the counted positions."""
    nll = kl = 0.0
    agree = count = 0
    with torch.no_grad():
        for example in examples:
            ids = torch.tensor([example.input_ids])
            s_logits = student(input_ids=ids).logits[0].double().numpy()[:, :vocab]
            t_logits = teacher(input_ids=ids).logits[0].double().numpy()[:, :vocab]
            for position, target in enumerate(example.labels):
                if target == -100:
                    continue
                s, t = _log_softmax64(s_logits[position]), _log_softmax64(t_logits[position])
                nll -= s[target]
                agree += int(np.argmax(s) == np.argmax(t))
                kl += float(np.sum(np.exp(t) * (t - s)))
                count += 1
    return {"tokens": count, "perplexity": math.exp(nll / count), "agreement": agree / count, "kl": kl / count}


def test_scores_match_a_float64_reference_over_the_shared_vocabulary(pair):
    teacher_dir, student_dir, tokenizer = pair
    teacher = M.load_model(teacher_dir, dtype="float32", device="cpu").eval()
    student = M.load_model(student_dir, dtype="float32", device="cpu").eval()
    examples = _examples(tokenizer)
    vocab = E.shared_vocab(tokenizer, student, teacher)
    assert vocab == len(tokenizer)  # the padded rows are left out
    want = reference(student, teacher, examples, vocab)
    got = E.score(student, examples, pad_id=tokenizer.pad_token_id, teacher=teacher, vocab_size=vocab, batch_size=2,
                  chunk_tokens=7)  # padding inside batches, several chunks per batch
    assert got.tokens == want["tokens"] == sum(e.n_targets for e in examples)
    assert got.perplexity == pytest.approx(want["perplexity"], rel=1e-5)
    assert got.nll == pytest.approx(math.log(want["perplexity"]), rel=1e-5)
    assert got.agreement == pytest.approx(want["agreement"], abs=1e-12)
    assert got.kl == pytest.approx(want["kl"], rel=1e-4)
    assert 0.0 < got.agreement < 1.0 and got.kl > 0.05  # a real comparison, not a trivial one
    alone = E.score(teacher, examples, pad_id=tokenizer.pad_token_id, vocab_size=vocab)
    assert alone.agreement is None and alone.kl is None
    assert alone.perplexity == pytest.approx(reference(teacher, teacher, examples, vocab)["perplexity"], rel=1e-5)


def test_a_model_scored_against_itself_agrees_fully_with_zero_kl(pair):
    _, student_dir, tokenizer = pair
    student = M.load_model(student_dir, dtype="float32", device="cpu")
    got = E.score(student, _examples(tokenizer), pad_id=tokenizer.pad_token_id, teacher=student)
    assert got.agreement == 1.0 and abs(got.kl) < 1e-6


def test_scoring_several_students_at_once_equals_one_at_a_time(pair):
    teacher_dir, student_dir, tokenizer = pair
    teacher = M.load_model(teacher_dir, dtype="float32", device="cpu")
    students = {"a": M.load_model(student_dir, dtype="float32", device="cpu"),
                "b": M.load_model(teacher_dir, dtype="float32", device="cpu")}
    examples = _examples(tokenizer)
    together = E.score_many(students, examples, pad_id=tokenizer.pad_token_id, teacher=teacher, batch_size=2)
    for name, model in students.items():
        assert together[name] == E.score(model, examples, pad_id=tokenizer.pad_token_id, teacher=teacher,
                                         batch_size=2)
    assert together["teacher"] == E.score(teacher, examples, pad_id=tokenizer.pad_token_id, batch_size=2)
    assert together["b"].agreement == 1.0 and together["a"].agreement < 1.0


def _argmax_loop(model, prompt: list[int], steps: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):]


def test_greedy_generate_matches_step_by_step_argmax_and_stops_at_a_stop_token(pair):
    _, student_dir, tokenizer = pair
    student = M.load_model(student_dir, dtype="float32", device="cpu").eval()
    cases = E.prompt_cases(ROWS, tokenizer, limit=3)
    prompts = [c.ids for c in cases]
    assert len({len(p) for p in prompts}) == 3  # different lengths: the batch is left-padded
    expected = [_argmax_loop(student, p, 6) for p in prompts]
    got = E.greedy_generate(student, prompts, pad_id=tokenizer.pad_token_id, stop=[], max_new_tokens=6, batch_size=3)
    assert got == expected
    stop = expected[0][3]
    cut = E.greedy_generate(student, prompts, pad_id=tokenizer.pad_token_id, stop=[stop], max_new_tokens=6)
    assert cut == [e[:e.index(stop)] if stop in e else e for e in expected]


def test_prompt_cases_cut_chats_before_the_last_answer_and_texts_at_a_third(pair):
    tokenizer = pair[2]
    chat, text, system = E.prompt_cases(ROWS, tokenizer, limit=5)
    history = ROWS[0].messages[:1]
    rendered = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    assert chat.ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert (chat.shown, chat.reference) == ("What is the river?", "A blue river.")
    assert system.shown == "Seven?" and system.reference == "Twelve and seven are numbers."
    full = tokenizer(ROWS[1].text)["input_ids"]
    assert text.ids == full[:len(full) // 3]
    assert text.shown + text.reference == tokenizer.decode(full, skip_special_tokens=True)
    assert E.prompt_cases(ROWS, tokenizer, limit=1) == [chat]


def test_sizes_come_from_the_weight_files_and_speed_is_measured(pair):
    teacher_dir, _, tokenizer = pair
    teacher = M.load_model(teacher_dir, dtype="float32", device="cpu")
    files = list(teacher_dir.glob("*.safetensors"))
    assert E.weights_bytes(teacher_dir) == sum(f.stat().st_size for f in files) > 0
    assert M.parameter_count(teacher) == M.count_parameters_from_files(teacher_dir)
    speed = E.tokens_per_second(teacher, E.prompt_cases(ROWS, tokenizer, limit=1)[0].ids,
                                pad_id=tokenizer.pad_token_id, new_tokens=8)
    assert math.isfinite(speed) and speed > 0


def test_stop_ids_merge_the_tokenizer_and_generation_config(pair):
    _, student_dir, tokenizer = pair
    student = M.load_model(student_dir, dtype="float32", device="cpu")
    student.generation_config.eos_token_id = [tokenizer.eos_token_id, 7]
    assert E.stop_ids(tokenizer, student) == sorted({tokenizer.eos_token_id, 7})
    assert json_safe({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0], "b": None}
