"""Teacher answers as training data (sequence-level KD) from an Ollama or a Hugging Face teacher.

The prompts file holds ``{"prompt"}`` or ``{"messages"}`` rows (a final assistant turn, if any, is
replaced by the teacher's answer). Each prompt is answered once; every finished answer is appended
to ``<run>/teacher-answers.jsonl`` under a key made of the prompt, the model (name and digest, or a
hash of the weights) and the generation options, so a run that was interrupted, or started again
with the same settings, never asks the teacher twice. A line cut short by a kill is dropped.

Ollama teachers are asked with ``think: false`` (unless ``gen_think``), a fixed ``num_ctx`` (the
model never reloads between requests), temperature, seed and ``num_predict``, with up to
``gen_parallel`` requests in flight (the server queues what it cannot run at once). Prompt-only
rows go through /api/generate, which keeps the bytes of each token's log-probability; multi-turn
rows through /api/chat. With ``top_logprobs > 0`` the first answer is checked against the student's
tokenizer (see teacher_targets) and log-probabilities are only asked for when the tokens line up.

A prompt Ollama shortened to fit its window is flagged: its ``prompt_eval_count`` is well below the
prompt's length in the student's tokenizer (the best estimate of what was sent), while that length
reaches the window. Flagged answers are left out of training with a warning.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from distill_gui.engine.data import Row, read_rows, split_eval
from distill_gui.errors import DataError, ModelError
from distill_gui.events import Control, EventCallback, LogMessage, PhaseProgress, PhaseStopped, Throttle, ignore_events
from distill_gui.paths import write_text_atomic

#: A prompt counts as shortened when Ollama evaluated fewer than this share of the estimated tokens...
TRUNCATION_RATIO = 0.75
#: ...and the estimate reaches this share of the window (a short prompt is never cut).
WINDOW_SHARE = 0.75


@dataclass(frozen=True)
class GenerationSettings:
    """How the teacher answers (the ``gen_*`` keys of [teacher])."""

    temperature: float = 0.0
    seed: int = 42
    max_tokens: int = 512
    num_ctx: int = 4096
    think: bool = False
    top_logprobs: int = 0
    parallel: int = 2

    @classmethod
    def from_config(cls, teacher) -> "GenerationSettings":
        return cls(temperature=float(teacher.gen_temperature), seed=int(teacher.gen_seed),
                   max_tokens=int(teacher.gen_max_tokens), num_ctx=int(teacher.gen_num_ctx),
                   think=bool(teacher.gen_think), top_logprobs=int(teacher.top_logprobs),
                   parallel=int(teacher.gen_parallel))

    def options(self) -> dict[str, Any]:
        """Ollama request options; the same for every request so the model is never reloaded."""
        return {"temperature": self.temperature, "seed": self.seed, "num_predict": self.max_tokens,
                "num_ctx": self.num_ctx}


@dataclass
class Prompt:
    """A conversation up to the answer the teacher writes; ``line`` is its line in the prompts file."""

    line: int
    messages: list[dict[str, str]]

    @property
    def single_turn(self) -> bool:
        """Only an optional system message and one user message (sent through /api/generate)."""
        roles = [m["role"] for m in self.messages]
        return roles in (["user"], ["system", "user"])


@dataclass
class Answer:
    """One teacher answer, as stored in the answers file.

    Attributes:
        tokens: Per generated token ``[bytes hex | None, logprob, [[bytes hex | None, logprob], ...]]``
            when log-probabilities were asked for, else None. Bytes are None where the server's reply
            did not carry them and the token text is not whole UTF-8.
        truncated: Why the prompt or answer is unusable ("" = fine).
    """

    key: str
    line: int
    response: str
    thinking: str = ""
    done_reason: str = ""
    prompt_tokens: int = 0
    answer_tokens: int = 0
    truncated: str = ""
    tokens: list | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Answer":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def row(self, prompt: Prompt) -> Row:
        """The prompt with this answer as the assistant's turn (a training row)."""
        return Row(prompt.line, messages=[*prompt.messages, {"role": "assistant", "content": self.response}])


@dataclass
class AnswerSet:
    """The answers of one run, in prompt order, and what to tell the user about them."""

    train: list[tuple[Prompt, Answer]]
    eval: list[tuple[Prompt, Answer]]
    with_logprobs: bool
    notes: list[str] = field(default_factory=list)

    def rows(self) -> tuple[list[Row], list[Row]]:
        return [a.row(p) for p, a in self.train], [a.row(p) for p, a in self.eval]


# ---- prompts --------------------------------------------------------------------------------------


def read_prompts(path: str | Path, *, role: str = "train") -> list[Prompt]:
    """Prompts of a .jsonl file: ``{"prompt"}`` or ``{"messages"}`` rows (an answer in the row is replaced).

    Raises:
        DataError: the file is missing or malformed, or a row has no prompt (file + line).
    """
    if Path(path).suffix.lower() != ".jsonl":
        raise DataError(f"{path}: the teacher answers prompts from a .jsonl file with {{\"prompt\": ...}} or "
                        f"{{\"messages\": [...]}} rows.")
    prompts = []
    for row in read_rows(path, role=role, require_response=False):
        if row.messages is None:
            raise DataError(f"{path}, line {row.line}: a text row; the teacher needs prompts, written as "
                            f"{{\"prompt\": ...}} or {{\"messages\": [...]}} rows.")
        messages = list(row.messages)
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages or messages[-1]["role"] not in ("user", "tool"):
            raise DataError(f"{path}, line {row.line}: the conversation has no user turn for the teacher "
                            f"to answer.")
        prompts.append(Prompt(row.line, messages))
    return prompts


def split_prompts(data_cfg, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """Train and eval prompts of a ``DataConfig``: the eval file, or the same held-out share as read_data."""
    prompts = read_prompts(data_cfg.train, role="train")
    if data_cfg.eval:
        return prompts, read_prompts(data_cfg.eval, role="eval")
    rows = [Row(p.line, messages=p.messages) for p in prompts]
    train, held = split_eval(rows, data_cfg.eval_fraction, seed)
    by_line = {p.line: p for p in prompts}
    return [by_line[r.line] for r in train], [by_line[r.line] for r in held]


def answer_key(prompt: Prompt, model: dict[str, Any], settings: GenerationSettings) -> str:
    """SHA-256 of what decides an answer: the conversation, the model and the generation options."""
    payload = {"messages": prompt.messages, "model": model, "options": settings.options(), "think": settings.think}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ---- the answers file -------------------------------------------------------------------------------


class AnswerFile:
    """The append-only JSONL of finished answers, safe to append to from several threads."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        """Read every complete line; rewrite the file without a line cut short by a kill."""
        if not self.path.is_file():
            return
        good, bad = [], 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                answer = Answer.from_dict(json.loads(line))
            except (ValueError, TypeError):
                bad += 1
                continue
            good.append(line)
            old = self.answers.get(answer.key)
            if old is None or answer.tokens is not None or old.tokens is None:
                self.answers[answer.key] = answer
        if bad:
            write_text_atomic(self.path, "".join(line + "\n" for line in good))

    def get(self, key: str, need_tokens: bool) -> Answer | None:
        answer = self.answers.get(key)
        if answer is None or (need_tokens and answer.tokens is None):
            return None
        return answer

    def add(self, answer: Answer) -> None:
        """Append one answer and make it durable before returning."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(answer.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.answers[answer.key] = answer


# ---- answering -------------------------------------------------------------------------------------


def truncation_reason(prompt_eval_count: int, estimate: int | None, num_ctx: int) -> str:
    """Why a prompt looks shortened by Ollama ("" when it does not).

    Args:
        prompt_eval_count: Prompt tokens Ollama reports having evaluated.
        estimate: The prompt's length in the student's tokenizer (None: unknown).
        num_ctx: The window the teacher ran with.
    """
    if estimate is None or prompt_eval_count <= 0:
        return ""
    if estimate >= WINDOW_SHARE * num_ctx and prompt_eval_count < TRUNCATION_RATIO * estimate:
        return (f"Ollama evaluated {prompt_eval_count} prompt tokens of about {estimate} sent (num_ctx = "
                f"{num_ctx}): the prompt was shortened")
    return ""


def _hex(token_bytes: Iterable[int] | None, text: str) -> str | None:
    """The token's bytes as hex: the server's bytes, else the text when it is whole UTF-8."""
    if token_bytes is not None:
        return bytes(token_bytes).hex()
    return None if "\ufffd" in text else text.encode("utf-8").hex()


def _token_records(logprobs: Sequence[Any]) -> list:
    return [[_hex(lp.bytes, lp.token), float(lp.logprob),
             [[_hex(alt.bytes, alt.token), float(alt.logprob)] for alt in lp.top_logprobs]] for lp in logprobs]


class OllamaTeacher:
    """Answers prompts through an Ollama server.

    Args:
        model: The Ollama model name (without the ``ollama:`` prefix).
        settings: Generation settings.
        host: Server address ("" = the app settings / OLLAMA_HOST / default).
        estimate: A prompt's length in tokens as best known (the student's tokenizer), to flag
            prompts Ollama shortened.

    Raises:
        ModelError: the model is not installed on the server.
        OllamaError: the server cannot be reached.
    """

    def __init__(self, model: str, settings: GenerationSettings, host: str | None = None,
                 estimate: Callable[[Prompt], int] | None = None) -> None:
        from distill_gui.ollama import OllamaClient

        self.model, self.settings, self.estimate = model, settings, estimate
        self.client = OllamaClient(host, stream_timeout=900.0)
        entry = _find_model(self.client.list_models(), model)
        if entry is None:
            self.client.close()
            raise ModelError(f"Ollama at {self.client.host} has no model '{model}'. Pull it with "
                             f"`ollama pull {model}`, or pick an installed model as the teacher.")
        self.identity = {"ollama": entry.name, "digest": entry.digest}
        self._streams: set[Any] = set()
        self._lock = threading.Lock()
        self._estimate_lock = threading.Lock()  # a fast tokenizer must not encode on two threads at once

    def answer_batch(self, prompts: list[Prompt], keys: list[str], top_logprobs: int) -> list[Answer]:
        """Answer prompts one request at a time (the caller runs several of these in parallel)."""
        return [self.answer(p, k, top_logprobs) for p, k in zip(prompts, keys)]

    def answer(self, prompt: Prompt, key: str, top_logprobs: int) -> Answer:
        s = self.settings
        common = dict(options=s.options(), think=s.think, logprobs=top_logprobs > 0,
                      top_logprobs=top_logprobs if top_logprobs > 0 else None)
        if prompt.single_turn:
            system = prompt.messages[0]["content"] if len(prompt.messages) == 2 else None
            stream = self.client.generate(self.model, prompt.messages[-1]["content"], system=system, **common)
        else:
            stream = self.client.chat(self.model, prompt.messages, **common)
        with self._lock:
            self._streams.add(stream)
        try:
            with stream:
                stats = stream.collect()
        finally:
            with self._lock:
                self._streams.discard(stream)
        estimate = None
        if self.estimate is not None:
            with self._estimate_lock:
                estimate = self.estimate(prompt)
        return Answer(key=key, line=prompt.line, response=stats.content, thinking=stats.thinking,
                      done_reason=stats.done_reason, prompt_tokens=stats.prompt_tokens,
                      answer_tokens=stats.eval_count, truncated=truncation_reason(stats.prompt_tokens, estimate,
                                                                                  s.num_ctx),
                      tokens=_token_records(stats.logprobs) if top_logprobs > 0 else None)

    def cancel(self) -> None:
        """Close every reply in flight (Ollama stops generating them)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()

    def close(self) -> None:
        self.cancel()
        self.client.close()


class HFTeacher:
    """Answers prompts with a Hugging Face teacher (``model.generate``, batches of ``gen_parallel``).

    Greedy when ``temperature == 0``; otherwise sampled from the full distribution at that
    temperature (no top-k / top-p), seeded per batch with ``seed + line of its first prompt``.
    The teacher's own chat template renders the prompts (``enable_thinking = gen_think`` for
    templates that read it). Free it with :meth:`close` before training.
    """

    def __init__(self, ref: str, settings: GenerationSettings, *, dtype: str, device: str, load_in: str = "full",
                 trust_remote_code: bool = False, on_event: EventCallback = ignore_events) -> None:
        from distill_gui.engine import models as M
        from distill_gui.engine.teacher.cache import model_files_hash

        folder = M.resolve_model(ref, trust_remote_code=trust_remote_code, on_event=on_event, role="teacher")
        self.settings, self.device = settings, device
        self.identity = {"hf": ref, "weights": model_files_hash(folder, {"dtype": dtype, "load_in": load_in})}
        self.tokenizer = M.load_tokenizer(folder, trust_remote_code=trust_remote_code, ref=ref)
        self.model = None

        def load():  # on the first prompt without a stored answer: a resumed run may need none
            on_event(PhaseProgress("load", 0, 1, "", f"loading the teacher {ref} to write answers"))
            model = M.load_model(folder, dtype=dtype, device=device, load_in=load_in,
                                 trust_remote_code=trust_remote_code, ref=ref, role="teacher")
            return model.eval()

        self._load = load

    def _render(self, prompt: Prompt) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True,
                                           enable_thinking=self.settings.think)
        turns = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in prompt.messages)
        return turns + "Assistant: "

    def answer_batch(self, prompts: list[Prompt], keys: list[str], top_logprobs: int) -> list[Answer]:
        import torch

        if self.model is None:
            self.model = self._load()
        s, tok = self.settings, self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # generation continues at the right end
        try:
            enc = tok([self._render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        enc = {k: v.to(self.device) for k, v in enc.items()}
        sampling = dict(do_sample=True, temperature=s.temperature, top_k=0, top_p=1.0) if s.temperature > 0 \
            else dict(do_sample=False)
        torch.manual_seed(s.seed + prompts[0].line)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=s.max_tokens, pad_token_id=tok.pad_token_id, **sampling)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        stops = set(_as_list(self.model.generation_config.eos_token_id)) | {tok.eos_token_id}
        answers = []
        for row, (prompt, key) in enumerate(zip(prompts, keys)):
            ids = new[row].tolist()
            end = next((i for i, t in enumerate(ids) if t in stops), None)
            text = tok.decode(ids[:end], skip_special_tokens=True)
            answers.append(Answer(key=key, line=prompt.line, response=text, done_reason="length" if end is None
                                  else "stop", prompt_tokens=int(enc["attention_mask"][row].sum()),
                                  answer_tokens=len(ids) if end is None else end + 1))
        return answers

    def close(self) -> None:
        """Free the teacher's memory (accelerator included)."""
        from distill_gui.engine.device import release_cached_memory

        self.model = None
        release_cached_memory(self.device)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _find_model(entries: Sequence[Any], name: str):
    wanted = {name.lower(), (name if ":" in name.rsplit("/", 1)[-1] else name + ":latest").lower()}
    return next((e for e in entries if e.name.lower() in wanted or e.model.lower() in wanted), None)


def generate_answers(prompts: Sequence[Prompt], answer_batch: Callable[[list[Prompt], list[str], int], list[Answer]],
                     *, identity: dict[str, Any], settings: GenerationSettings, answers: AnswerFile,
                     batch_size: int = 1, workers: int = 1, lines_up: Callable[[Prompt, Answer], bool] | None = None,
                     cancel: Callable[[], None] = lambda: None, on_event: EventCallback = ignore_events,
                     control: Control | None = None) -> tuple[list[Answer], bool]:
    """Answer every prompt that has no stored answer; store each answer as soon as it is finished.

    Args:
        answer_batch: (prompts, keys, top_logprobs) -> their answers; called from ``workers`` threads,
            with up to ``batch_size`` prompts (Ollama: one prompt per request, several requests in
            flight; an HF teacher: one thread, batches).
        identity: The model's identity for the keys.
        lines_up: (prompt, answer with tokens) -> whether the teacher's tokens line up with the
            student's; decides on the first answer whether log-probabilities are asked for at all.
        cancel: Stops the requests in flight (on a stop request or a failure).

    Returns:
        The answers in prompt order, and whether they carry log-probabilities.

    Raises:
        PhaseStopped: Stop was requested; finished answers are kept in the file.
    """
    control = control or Control()
    top = settings.top_logprobs
    keys = [answer_key(p, identity, settings) for p in prompts]
    stored = {k for k in keys if k in answers.answers}
    if top > 0 and lines_up is not None:
        top = _probe_alignment(prompts, keys, answer_batch, answers, top, lines_up, on_event)
    results: list[Answer | None] = [answers.get(k, top > 0) for k in keys]
    missing = [i for i, a in enumerate(results) if a is None]
    total, done = len(prompts), len(prompts) - len(missing)
    found = sum(1 for k, a in zip(keys, results) if a is not None and k in stored)
    if found:
        on_event(LogMessage(f"{found:,} of {total:,} teacher answers found in {answers.path.name}"
                            + ("; asking for the rest." if missing else ".")))
    on_event(PhaseProgress("generate", done, total, "answers", "the teacher is answering the prompts"))
    throttle = Throttle(total)
    batches = iter([missing[i:i + batch_size] for i in range(0, len(missing), max(1, batch_size))])
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="teacher-answer")
    pending: dict[cf.Future, list[int]] = {}
    try:
        while True:
            while len(pending) < max(1, workers) and not control.stop_requested:
                chunk = next(batches, None)
                if chunk is None:
                    break
                future = pool.submit(answer_batch, [prompts[i] for i in chunk], [keys[i] for i in chunk], top)
                pending[future] = chunk
            if not pending:
                break
            finished, _ = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                chunk = pending.pop(future)
                try:
                    answered = future.result()
                except Exception:
                    if control.stop_requested:  # a reply cut by the stop: asked again next time
                        continue
                    raise
                for index, answer in zip(chunk, answered):
                    answers.add(answer)
                    results[index] = answer
                    done += 1
                kind = throttle.due(done)
                if kind:
                    on_event(PhaseProgress("generate", done, total, "answers", f"the teacher answered {done:,} of "
                                           f"{total:,} prompts" if kind == "milestone" else ""))
            if control.pause_requested:
                control.wait_while_paused()
            if control.stop_requested:
                cancel()
                break
    except BaseException:
        cancel()  # a failure ends the phase; the answers finished so far stay stored
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if any(a is None for a in results):
        cancel()
        raise PhaseStopped("generate")
    return [a for a in results if a is not None], top > 0


def _probe_alignment(prompts: Sequence[Prompt], keys: list[str], answer_batch, answers: AnswerFile, top: int,
                     lines_up, on_event: EventCallback, tries: int = 3) -> int:
    """Check answers with log-probabilities against the student (up to ``tries``, skipping empty or cut
    ones); returns ``top``, or 0 when the teacher's tokens do not line up with the student's."""
    for prompt, key in list(zip(prompts, keys))[:tries]:
        probe = answers.get(key, True)
        if probe is None:
            probe = answer_batch([prompt], [key], top)[0]
            answers.add(probe)
        if lines_up(prompt, probe):
            return top
        if probe.response.strip() and not probe.truncated:
            break  # a usable answer that does not line up: the tokenizers differ
    if prompts:
        on_event(LogMessage("The teacher's tokens do not line up with the student's tokenizer, so its "
                            "log-probabilities cannot be used: the student learns from the answers only (CE).",
                            "warning"))
        return 0
    return top


def summarize(pairs: list[tuple[Prompt, Answer]], settings: GenerationSettings) -> tuple[list, list[str]]:
    """Keep the usable answers; notes for the user about the flagged ones (by data line)."""
    kept, cut, long, empty = [], [], [], []
    for prompt, answer in pairs:
        if answer.truncated:
            cut.append(prompt.line)
        elif not answer.response.strip():
            empty.append(prompt.line)
        else:
            if answer.done_reason == "length":
                long.append(prompt.line)
            kept.append((prompt, answer))
    notes = []
    if cut:
        notes.append(f"{len(cut)} prompt(s) were shortened by Ollama to fit num_ctx = {settings.num_ctx} (lines "
                     f"{_lines(cut)}); their answers are left out. Raise [teacher] gen_num_ctx to keep them.")
    if empty:
        notes.append(f"{len(empty)} answer(s) were empty (lines {_lines(empty)}) and are left out.")
    if long:
        notes.append(f"{len(long)} answer(s) stopped at gen_max_tokens = {settings.max_tokens} (lines "
                     f"{_lines(long)}); they are kept, cut where they stopped.")
    return kept, notes


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:8])
    return shown + (f" and {len(lines) - 8} more" if len(lines) > 8 else "")
