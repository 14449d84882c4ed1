"""The phases before training that replace a live teacher: answering prompts, and caching top-k.

The trainer calls these in order (each reports ``PhaseProgress`` and reads the ``Control``):

1. :func:`check_config` - combinations that cannot work, as ConfigErrors, before anything is written.
2. :func:`writes_answers` / :func:`read_prompts` / :func:`answer_prompts` - with an ``ollama:`` teacher
   (or ``teacher.generate``), the data file holds prompts; the teacher answers them (phase
   "generate"), and the answered conversations become the training rows.
3. :func:`uses_cache` / :func:`prepare_cache` - the teacher's top-k rows on disk (phase
   "precompute"): from an HF teacher that runs once, alone, and is freed
   (``teacher.cache_top_k > 0``), or from the Ollama answers' log-probabilities. Training then reads
   them through ``source.CachedTeacher`` instead of running a teacher.

A stop request during a phase raises :class:`~distill_gui.engine.teacher.cache.PhaseStopped`; what
was done is kept and the next start continues from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from distill_gui import runfolder
from distill_gui.config import RunConfig, ollama_model
from distill_gui.engine import models as M
from distill_gui.engine.data import Datasets
from distill_gui.engine.teacher.answers import (
    AnswerFile,
    AnswerSet,
    GenerationSettings,
    HFTeacher,
    OllamaTeacher,
    Prompt,
    generate_answers,
    split_prompts,
    summarize,
)
from distill_gui.engine.teacher.cache import (
    CacheKey,
    TeacherCache,
    TeacherTopK,
    examples_hash,
    model_files_hash,
    open_or_build,
    tokenizer_hash,
)
from distill_gui.errors import ConfigError, ModelError
from distill_gui.events import Control, EventCallback, LogMessage, ignore_events

PRECOMPUTE_BATCH = 8          # examples per teacher forward while caching
ANSWER_ROWS_BATCH = 64        # examples per call when building rows from answers


@dataclass
class TeacherCaches:
    """The cached teacher of a run: one cache per split and the vocabulary its ids live in."""

    train: TeacherCache
    eval: TeacherCache | None
    vocab: int


def check_config(cfg: RunConfig) -> None:
    """Reject teacher settings that cannot work together (before anything is written)."""
    teacher, distill = cfg.teacher, cfg.distill
    if ollama_model(teacher.model) is not None and distill.loss != "ce" and teacher.top_logprobs == 0:
        raise ConfigError(f"[teacher] model = '{teacher.model}' gives answers, plus log-probabilities only when "
                          f"asked: loss = '{distill.loss}' needs teacher.top_logprobs >= 1 (soft targets when "
                          f"its tokens line up with the student's), or set distill.loss = 'ce' to learn the "
                          f"answers only.")
    limit = teacher.top_logprobs if ollama_model(teacher.model) is not None else teacher.cache_top_k
    if distill.loss != "ce" and limit and distill.top_k > limit:
        key = "teacher.top_logprobs" if ollama_model(teacher.model) is not None else "teacher.cache_top_k"
        raise ConfigError(f"distill.top_k = {distill.top_k} is more than the teacher's cached entries "
                          f"({key} = {limit}). Lower distill.top_k, or raise {key}.")


def writes_answers(cfg: RunConfig) -> bool:
    """Whether the teacher writes the training answers first (always for an Ollama teacher)."""
    return ollama_model(cfg.teacher.model) is not None or bool(cfg.teacher.generate)


def uses_cache(cfg: RunConfig) -> bool:
    """Whether training reads the teacher's top-k from a cache instead of running it."""
    if cfg.distill.loss == "ce":
        return False
    return ollama_model(cfg.teacher.model) is not None or cfg.teacher.cache_top_k > 0


def read_prompts(cfg: RunConfig) -> tuple[list[Prompt], list[Prompt]]:
    """Train and eval prompts (DataError names file and line for a bad row)."""
    return split_prompts(cfg.data, cfg.train.seed)


# ---- answers ----------------------------------------------------------------------------------------


def answer_prompts(cfg: RunConfig, prompts: tuple[list[Prompt], list[Prompt]], run_dir: Path, *, device: str,
                   teacher_dtype: str, on_event: EventCallback = ignore_events,
                   control: Control | None = None) -> AnswerSet:
    """Have the teacher answer the prompts (phase "generate"); answers stored in the run folder.

    Raises:
        PhaseStopped: stop requested (finished answers are kept).
        ModelError, OllamaError: the teacher cannot be reached or loaded.
    """
    settings = GenerationSettings.from_config(cfg.teacher)
    wanted_logprobs = ollama_model(cfg.teacher.model) is not None and cfg.distill.loss != "ce"
    if not wanted_logprobs:
        settings = dataclasses.replace(settings, top_logprobs=0)
    answers = AnswerFile(run_dir / runfolder.TEACHER_ANSWERS)
    everything = prompts[0] + prompts[1]
    if ollama_model(cfg.teacher.model) is not None:
        from distill_gui.engine.teacher.targets import AnswerAligner

        aligner = AnswerAligner(_student_tokenizer(cfg), k=settings.top_logprobs, loss_on=cfg.data.loss_on)
        teacher = OllamaTeacher(ollama_model(cfg.teacher.model), settings, estimate=aligner.estimate)
        batch, workers, lines_up = 1, settings.parallel, aligner.lines_up
    else:
        teacher = HFTeacher(cfg.teacher.model, settings, dtype=teacher_dtype, device=device,
                            load_in=cfg.teacher.load_in, trust_remote_code=cfg.teacher.trust_remote_code,
                            on_event=on_event)
        batch, workers, lines_up = settings.parallel, 1, None
    try:
        results, with_logprobs = generate_answers(
            everything, teacher.answer_batch, identity=teacher.identity, settings=settings, answers=answers,
            batch_size=batch, workers=workers, lines_up=lines_up,
            cancel=getattr(teacher, "cancel", lambda: None), on_event=on_event, control=control)
    finally:
        teacher.close()
    n_train = len(prompts[0])
    train, notes = summarize(list(zip(prompts[0], results[:n_train])), settings)
    held, eval_notes = summarize(list(zip(prompts[1], results[n_train:])), settings)
    for note in dict.fromkeys(notes + eval_notes):
        on_event(LogMessage(note, "warning"))
    if not train:
        raise ModelError(f"None of the teacher's answers to {cfg.data.train} can be trained on (see the warnings "
                         f"above); check the teacher and [teacher] gen_num_ctx / gen_max_tokens.")
    return AnswerSet(train, held, with_logprobs, notes + eval_notes)


def _student_tokenizer(cfg: RunConfig):
    folder = M.resolve_model(cfg.student.model, weights=False, trust_remote_code=cfg.student.trust_remote_code,
                             role="student")
    return M.load_tokenizer(folder, trust_remote_code=cfg.student.trust_remote_code, ref=cfg.student.model)


# ---- the cache --------------------------------------------------------------------------------------


def prepare_cache(cfg: RunConfig, run_dir: Path, *, tokenizer, datasets: Datasets, answers: AnswerSet | None,
                  device: str, teacher_dtype: str, precision: str, autocast: Callable[[], Any],
                  on_event: EventCallback = ignore_events, control: Control | None = None) -> TeacherCaches | None:
    """Open (or build) the teacher caches of the train and eval examples.

    Returns:
        The caches, or None when an Ollama teacher's answers carry no log-probabilities (then the
        run learns the answers with CE only).

    Raises:
        PhaseStopped: stop requested during the build (the partial cache is kept).
        ModelError: an HF teacher's tokenizer does not match the student's.
    """
    folder = run_dir / runfolder.TEACHER_CACHE
    splits = [("train", datasets.train), ("eval", datasets.eval)]
    common = dict(on_event=on_event, control=control)
    if ollama_model(cfg.teacher.model) is not None:
        if answers is None or not answers.with_logprobs:
            return None
        return _answer_caches(cfg, folder, splits, tokenizer, answers, common)
    ref = cfg.teacher.model
    teacher_folder = M.resolve_model(ref, trust_remote_code=cfg.teacher.trust_remote_code, on_event=on_event,
                                     role="teacher")
    vocab = _check_pair(cfg, teacher_folder, tokenizer)
    identity = model_files_hash(teacher_folder, {"dtype": teacher_dtype, "load_in": cfg.teacher.load_in,
                                                 "precision": precision})
    producer = _LazyTopK(cfg, teacher_folder, k=cfg.teacher.cache_top_k, vocab=vocab, pad_id=tokenizer.pad_token_id,
                         device=device, dtype=teacher_dtype, autocast=autocast, on_event=on_event)
    caches = {}
    try:
        for name, examples in splits:
            if examples:
                key = CacheKey(tokenizer=tokenizer_hash(tokenizer), data=examples_hash(examples), teacher=identity,
                               k=cfg.teacher.cache_top_k, dtype=cfg.teacher.cache_dtype, vocab=vocab)
                caches[name] = open_or_build(folder / name, examples, key, producer, batch_size=PRECOMPUTE_BATCH,
                                             what="teacher's top-k", **common)
    finally:
        producer.close()
    return TeacherCaches(caches["train"], caches.get("eval"), vocab)


def _answer_caches(cfg: RunConfig, folder: Path, splits, tokenizer, answers: AnswerSet, common) -> TeacherCaches:
    from distill_gui.engine.teacher.targets import AnswerAligner, AnswerTargets

    vocab = len(tokenizer)
    aligner = AnswerAligner(tokenizer, k=cfg.teacher.top_logprobs, loss_on=cfg.data.loss_on)
    caches, aligned, total = {}, 0, 0
    for (name, examples), pairs in zip(splits, (answers.train, answers.eval)):
        if not examples:
            continue
        producer = AnswerTargets(aligner, pairs, max_length=cfg.data.max_length, vocab=vocab)
        key = CacheKey(tokenizer=tokenizer_hash(tokenizer), data=examples_hash(examples), teacher=_answers_hash(pairs),
                       k=aligner.k, dtype=cfg.teacher.cache_dtype, vocab=vocab)
        caches[name] = open_or_build(folder / name, examples, key, producer, batch_size=ANSWER_ROWS_BATCH,
                                     what="teacher's log-probabilities", **common)
        aligned, total = aligned + producer.aligned, total + producer.total
    if total:
        common["on_event"](LogMessage(f"Soft targets from the teacher's log-probabilities for {aligned:,} of "
                                      f"{total:,} answers (the others: the answer tokens as hard targets).",
                                      "info" if aligned == total else "warning"))
    return TeacherCaches(caches["train"], caches.get("eval"), vocab)


def _answers_hash(pairs) -> str:
    digest = hashlib.sha256()
    for prompt, answer in pairs:
        digest.update(json.dumps([prompt.line, answer.key, answer.response, answer.tokens]).encode())
    return digest.hexdigest()


def _check_pair(cfg: RunConfig, teacher_folder: Path, tokenizer) -> int:
    """The shared vocabulary of an HF teacher and the student (the same check as the live path)."""
    teacher_tokenizer = M.load_tokenizer(teacher_folder, trust_remote_code=cfg.teacher.trust_remote_code,
                                         ref=cfg.teacher.model)
    rows = int(M.read_model_config(teacher_folder).get("vocab_size") or 0)
    verdict = M.check_tokenizer_pair(cfg.teacher.model, cfg.student.model, teacher_tokenizer=teacher_tokenizer,
                                     student_tokenizer=tokenizer, teacher_rows=rows or None,
                                     student_rows=len(tokenizer))
    if not verdict.compatible:
        raise ModelError(verdict.message)
    return verdict.shared_vocab


class _LazyTopK:
    """The HF teacher's rows; the teacher is loaded on the first call only (a valid cache needs none)."""

    def __init__(self, cfg: RunConfig, folder: Path, *, k: int, vocab: int, pad_id: int, device: str, dtype: str,
                 autocast: Callable[[], Any], on_event: EventCallback) -> None:
        self.cfg, self.folder, self.device, self.dtype, self.on_event = cfg, folder, device, dtype, on_event
        self.options = dict(k=k, vocab=vocab, pad_id=pad_id, device=device, autocast=autocast)
        self.teacher = None
        self.rows: TeacherTopK | None = None

    def __call__(self, examples):
        if self.rows is None:
            from distill_gui.events import PhaseProgress

            cfg = self.cfg
            self.on_event(PhaseProgress("load", 0, 1, "", f"loading the teacher {cfg.teacher.model} to cache its "
                                                          f"top-{self.options['k']}"))
            self.teacher = M.load_model(self.folder, dtype=self.dtype, device=self.device, load_in=cfg.teacher.load_in,
                                        trust_remote_code=cfg.teacher.trust_remote_code, ref=cfg.teacher.model,
                                        role="teacher")
            self.teacher.eval()
            self.teacher.requires_grad_(False)
            self.rows = TeacherTopK(self.teacher, **self.options)
        return self.rows(examples)

    def close(self) -> None:
        """Free the teacher (the point of the cache: it never shares the device with the student)."""
        if self.teacher is None:
            return
        from distill_gui.engine.device import release_cached_memory

        self.teacher = self.rows = None
        release_cached_memory(self.device)
