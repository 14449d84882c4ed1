"""Black-box distillation: teacher answers from the Ollama test server (and an HF teacher), resumable
generation, truncation flags, and soft targets from log-probabilities that line up with the student."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from distill_gui.commands.train import format_finished
from distill_gui.config import load_config
from distill_gui.engine import models as M
from distill_gui.engine import trainer as T
from distill_gui.engine.teacher.answers import (
    AnswerFile,
    GenerationSettings,
    OllamaTeacher,
    Prompt,
    generate_answers,
    summarize,
)
from distill_gui.engine.teacher.cache import PAD_LOGPROB, TeacherCache
from distill_gui.engine.teacher.targets import AnswerAligner
from distill_gui.events import Control, Finished, LogMessage, PhaseProgress, StepMetrics

from .helpers import toy_sentence, write_config, write_jsonl

ALTERNATIVE_PROBS = (0.6, 0.25, 0.1)


@pytest.fixture
def ollama_host(ollama_server, monkeypatch):
    """The engine's Ollama client finds the test server through OLLAMA_HOST (no app setting is made)."""
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.url)
    return ollama_server


@pytest.fixture(scope="module")
def tokenizer(toy):
    return M.load_tokenizer(toy.student)


def _reply(prompt) -> str:
    """A deterministic toy-language answer per prompt (chat: the messages; generate: the prompt text)."""
    return toy_sentence(random.Random(json.dumps(prompt))) + " " + toy_sentence(random.Random(str(prompt)[::-1]))


def _student_split(tokenizer):
    """The teacher 'generates' exactly the student's tokens (the same tokenizer, as llama.cpp pieces)."""
    return lambda text: [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def _alternatives(tokenizer):
    """At each position: the generated token and two other whole vocabulary tokens (0.6 / 0.25 / 0.1)."""
    whole = [i for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids
             and tokenizer.decode([i]).isascii() and tokenizer(tokenizer.decode([i]), add_special_tokens=False)[
                 "input_ids"] == [i]]

    def alternatives(index, token):
        (token_id, *_) = tokenizer(token, add_special_tokens=False)["input_ids"]
        others = [whole[(token_id * 7 + shift) % len(whole)] for shift in (1, 2)]
        texts = [token] + [tokenizer.decode([o]) for o in others if o != token_id]
        return [(text, math.log(p)) for text, p in zip(texts, ALTERNATIVE_PROBS)]
    return alternatives


def _prompts(tmp_path, n=8, extra=()):
    rows = [{"prompt": f"tell me about the {animal} number {i}"} for i, animal in
            zip(range(n), ["bird", "fish", "dog", "cat", "child"] * 4)]
    return write_jsonl(tmp_path / "prompts.jsonl", rows + list(extra))


def _config(tmp_path, toy, name, prompts, **sections):
    teacher = {"model": "ollama:teacher", **sections.pop("teacher", {})}
    train = {"max_steps": 2, "log_every": 1, **sections.pop("train", {})}
    return load_config(write_config(tmp_path / f"{name}.toml", teacher_dir="", student_dir=str(toy.student),
                                    data_file=str(prompts), output_dir=str(tmp_path / "runs"), name=name,
                                    teacher=teacher, train=train, **sections))


def _asked(server) -> list[str]:
    """Prompt texts the server was asked, in order (both endpoints)."""
    bodies = [r.body for r in server.requests if r.path in ("/api/generate", "/api/chat")]
    return [b.get("prompt") or b["messages"][-1]["content"] for b in bodies]


def test_an_interrupted_generation_resumes_without_asking_twice(tmp_path, toy, ollama_host):
    server = ollama_host
    server.add_model("teacher", reply=_reply, token_delay=0.005)
    cfg = _config(tmp_path, toy, "resume", _prompts(tmp_path, 10), distill={"loss": "ce"},
                  teacher={"gen_parallel": 3, "gen_num_ctx": 2048, "gen_seed": 7, "gen_max_tokens": 64})
    control = Control()

    def stop_after_four(event):
        if isinstance(event, PhaseProgress) and event.phase == "generate" and event.done >= 4:
            control.stop()

    events = []
    result = T.train(cfg, on_event=lambda e: (events.append(e), stop_after_four(e)), control=control)
    assert result.stopped_early and result.step == 0 and isinstance(events[-1], Finished)
    assert format_finished(events[-1], "run.toml") == ("stopped before training (during generate); what is done is "
                                                       "kept\ncontinue with: distill-gui train run.toml")
    stored = [json.loads(line) for line in (result.run_dir / "teacher-answers.jsonl").read_text().splitlines()]
    first_round = _asked(server)
    assert 4 <= len(stored) < 10 and not (result.run_dir / "checkpoints").exists()

    events = []
    T.train(cfg, on_event=events.append)
    second_round = _asked(server)[len(first_round):]
    stored_prompts = {row["line"] for row in stored}
    prompt_of_line = {i + 1: f"tell me about the {a} number {i}" for i, a in
                      zip(range(10), ["bird", "fish", "dog", "cat", "child"] * 2)}
    assert not {prompt_of_line[line] for line in stored_prompts} & set(second_round)  # never asked twice
    assert sorted(set(first_round + second_round)) == sorted(prompt_of_line.values())
    assert any(isinstance(e, LogMessage) and f"{len(stored)} of 10 teacher answers found" in e.message
               for e in events)
    body = server.requests_to("/api/generate")[-1].body
    assert body["think"] is False and "logprobs" not in body  # loss = "ce": answers only
    assert body["options"] == {"temperature": 0.0, "seed": 7, "num_predict": 64, "num_ctx": 2048}
    assert [e for e in events if isinstance(e, StepMetrics)][-1].step == 2


def test_a_prompt_ollama_shortened_is_flagged_and_left_out(tmp_path, tokenizer, ollama_host):
    ollama_host.add_model("teacher", reply="the dog runs .")
    long_text = " ".join(toy_sentence(random.Random(i)) for i in range(12))  # ~90 words, > num_ctx = 64
    prompts = [Prompt(1, [{"role": "user", "content": "the cat ?"}]),
               Prompt(2, [{"role": "user", "content": long_text}])]
    aligner = AnswerAligner(tokenizer, k=1)
    settings = {}
    for window in (64, 4096):
        gen = GenerationSettings(num_ctx=window, max_tokens=16)
        teacher = OllamaTeacher("teacher", gen, estimate=aligner.estimate)
        answers, _ = generate_answers(prompts, teacher.answer_batch, identity=teacher.identity, settings=gen,
                                      answers=AnswerFile(f"{tmp_path}/answers-{window}.jsonl"))
        teacher.close()
        settings[window] = (gen, answers)
    gen, answers = settings[64]
    assert answers[0].truncated == "" and "shortened" in answers[1].truncated
    assert answers[1].prompt_tokens < aligner.estimate(prompts[1]) * 0.75
    kept, notes = summarize(list(zip(prompts, answers)), gen)
    assert [p.line for p, _ in kept] == [1] and "lines 2" in notes[0] and "gen_num_ctx" in notes[0]
    assert [a.truncated for a in settings[4096][1]] == ["", ""]  # the same prompt fits a larger window


def test_log_probabilities_that_line_up_become_the_students_top_k_targets(tmp_path, toy, tokenizer, ollama_host):
    server = ollama_host
    server.add_model("teacher", reply=_reply, tokens=_student_split(tokenizer), alternatives=_alternatives(tokenizer))
    multi_turn = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "the cat ."},
                               {"role": "user", "content": "and the fish ?"}]}
    prompts = _prompts(tmp_path, 6, extra=[multi_turn])
    cfg = _config(tmp_path, toy, "aligned", prompts, data={"eval_fraction": 0.0, "max_length": 256},
                  teacher={"top_logprobs": 3}, distill={"loss": "forward_kl", "temperature": 1.0})
    events = []
    T.train(cfg, on_event=events.append)
    assert server.requests_to("/api/chat")[0].body["top_logprobs"] == 3  # the multi-turn row went through chat
    assert all(r.body["logprobs"] is True for r in server.requests if r.path in ("/api/generate", "/api/chat"))
    assert any(isinstance(e, LogMessage) and "for 7 of 7 answers" in e.message for e in events)
    lines = (cfg.run_dir() / "teacher-answers.jsonl").read_text().splitlines()
    answers = {a["line"]: a for a in map(json.loads, lines)}
    cache = TeacherCache(cfg.run_dir() / "teacher-cache" / "train")
    assert cache.k == 3 and cache.n_examples == 7
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for index, line in enumerate(sorted(answers)):
        messages = multi_turn["messages"][:-1] if line == 7 else []
        _check_rows(cache, index, tokenizer, messages, answers[line]["response"], im_end)
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert steps and all(math.isfinite(s.kd) and s.kd > 0 for s in steps)


def _check_rows(cache, index, tokenizer, earlier, response, im_end):
    """The rows of the answer's positions hold the server's alternatives as student ids, in order; every
    other learned position (the end of turn, an earlier assistant turn) holds its hard label alone."""
    ids, logprobs = cache.example(index)
    answer_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    taught = [r for r in range(len(ids)) if logprobs[r][0] != 0]
    earlier_rows = sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) + 2
                       for m in earlier if m["role"] == "assistant")  # content, <|im_end|>, newline
    assert taught == list(range(earlier_rows, earlier_rows + len(answer_ids)))
    alternatives = _alternatives(tokenizer)
    for row, token_id in zip(taught, answer_ids):
        want = [(tokenizer(text, add_special_tokens=False)["input_ids"], lp)
                for text, lp in alternatives(0, tokenizer.decode([token_id]))]
        assert ids[row].tolist() == [w[0][0] for w in want] and want[0][0][0] == token_id
        np.testing.assert_allclose(logprobs[row].astype(np.float64), [w[1] for w in want], atol=2e-3)
    assert ids[taught[-1] + 1][0] == im_end  # the end of turn follows the answer
    for row in set(range(len(ids))) - set(taught):
        assert logprobs[row][0] == 0 and (logprobs[row][1:] == np.float16(PAD_LOGPROB)).all()
        assert len(set(ids[row].tolist())) == cache.k


def test_tokens_that_do_not_line_up_turn_log_probabilities_off(tmp_path, toy, ollama_host):
    server = ollama_host
    chunks = lambda text: [text[i:i + 3] for i in range(0, len(text), 3)]  # noqa: E731 - not the student's tokens
    server.add_model("teacher", reply=_reply, tokens=chunks)
    cfg = _config(tmp_path, toy, "misaligned", _prompts(tmp_path, 5), teacher={"top_logprobs": 5})
    events = []
    T.train(cfg, on_event=events.append)
    bodies = [r.body for r in server.requests_to("/api/generate")]
    assert bodies[0]["logprobs"] is True and all("logprobs" not in b for b in bodies[1:])
    assert any(isinstance(e, LogMessage) and "do not line up" in e.message for e in events)
    assert not (cfg.run_dir() / "teacher-cache").exists()  # answers learned with CE only
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert steps and all(s.kd == 0.0 and math.isnan(s.agreement) for s in steps)


def test_an_hf_teacher_answers_greedily_and_is_then_cached(tmp_path, toy, monkeypatch):
    prompts = _prompts(tmp_path, 4)
    cfg = load_config(write_config(
        tmp_path / "hf.toml", teacher_dir=str(toy.teacher), student_dir=str(toy.student), data_file=str(prompts),
        output_dir=str(tmp_path / "runs"), name="hf", data={"eval_fraction": 0.0},
        teacher={"generate": True, "gen_max_tokens": 10, "gen_parallel": 3, "cache_top_k": 4},
        distill={"top_k": 4}, train={"max_steps": 1}))
    events = []
    T.train(cfg, on_event=events.append)
    answers = [json.loads(line) for line in (cfg.run_dir() / "teacher-answers.jsonl").read_text().splitlines()]
    assert sorted(a["line"] for a in answers) == [1, 2, 3, 4]
    teacher = M.load_model(toy.teacher, dtype="float32", device="cpu").eval()
    tok = M.load_tokenizer(toy.teacher)
    first = next(a for a in answers if a["line"] == 1)
    text = tok.apply_chat_template([{"role": "user", "content": "tell me about the bird number 0"}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    generated = []
    with torch.no_grad():  # greedy decoding by hand: the argmax of each next-token distribution
        for _ in range(10):
            nxt = int(teacher(input_ids=torch.tensor([ids + generated])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            generated.append(nxt)
    assert first["response"] == tok.decode(generated, skip_special_tokens=True)
    assert first["done_reason"] == ("stop" if len(generated) < 10 else "length")
    assert TeacherCache(cfg.run_dir() / "teacher-cache" / "train").k == 4
    phases = [e.phase for e in events if isinstance(e, PhaseProgress)]
    assert phases.index("generate") < phases.index("precompute")

    loaded = []  # resuming: answers and cache are on disk, so only the student is loaded
    real_load = M.load_model
    monkeypatch.setattr(M, "load_model", lambda folder, **kw: loaded.append(kw["role"]) or real_load(folder, **kw))
    cfg.train.max_steps = 2
    assert T.train(cfg, resume=True).step == 2 and loaded == ["student"]
