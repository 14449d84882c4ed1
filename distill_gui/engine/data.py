"""Training data: read rows, render chat templates, mask prompt tokens, batch.

Files:

- ``.txt``: paragraphs separated by blank lines; every token is learned.
- ``.jsonl``: one JSON object per line, ``{"text": ...}``, ``{"prompt": ..., "response": ...}`` or
  ``{"messages": [{"role": ..., "content": ...}, ...]}``. Chat rows are rendered with the student's chat
  template; with ``loss_on = "response"`` only the assistant turns (including their end-of-turn token) are
  learned, from both the KD and the CE term.

Every problem names the file and line. Training stops at the first bad row (:func:`read_rows`);
the GUI's preview collects all of them (:func:`preview_data`).

Targets are stored already shifted: ``labels[i]`` is the token position ``i`` must predict, or -100
when it is not learned (prompt, padding, the last position), so the trainer flattens and never shifts.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from distill_gui.errors import DataError
from distill_gui.events import EventCallback, PhaseProgress, ignore_events

IGNORE = -100
ROLES = ("system", "user", "assistant", "tool", "developer")
SUFFIXES = (".txt", ".jsonl")


@dataclass
class Row:
    """One parsed example. ``messages`` for chat rows (prompt/response becomes two messages), else ``text``."""

    line: int
    text: str | None = None
    messages: list[dict[str, str]] | None = None


@dataclass
class Problem:
    line: int
    message: str


@dataclass
class Example:
    """A tokenized row. ``labels[i]`` is the target of position ``i`` (-100 = not learned)."""

    input_ids: list[int]
    labels: list[int]
    line: int

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class Encoded:
    """A row as the student sees it: token ids, which tokens are learned, and the rendered text."""

    input_ids: list[int]
    trained: list[bool]               # per token: learned when predicted
    text: str                         # the rendered string that was tokenized
    offsets: list[tuple[int, int]] | None
    truncated: bool


@dataclass
class Segment:
    text: str
    trained: bool


@dataclass
class PreviewRow:
    line: int
    segments: list[Segment]
    n_tokens: int
    n_trained: int
    truncated: bool


@dataclass
class DataPreview:
    """What the Data page shows: first rows as the student sees them, counts, lengths, every problem."""

    path: str
    rows: list[PreviewRow]
    row_count: int                    # valid rows in the file
    token_lengths: list[int]          # per valid row (up to ``max_length``), for the histogram
    problems: list[Problem]
    uses_chat_template: bool


@dataclass
class Datasets:
    train: list[Example]
    eval: list[Example]
    skipped: int = 0                  # rows with nothing to learn after truncation
    notes: list[str] = field(default_factory=list)


# ---- reading ---------------------------------------------------------------------------------


def read_rows(path: str | Path, *, role: str = "train", require_response: bool = True) -> list[Row]:
    """Parse a data file; stop at the first problem.

    Raises:
        DataError: missing file, unsupported suffix, not UTF-8, malformed row, or no rows at all;
            the message names the file and line.
    """
    rows = []
    for item in _parse(Path(path), role, require_response):
        if isinstance(item, Problem):
            raise DataError(f"{path}, line {item.line}: {item.message}")
        rows.append(item)
    if not rows:
        raise DataError(f"{path}: the file has no rows. Add paragraphs (.txt) or JSON lines (.jsonl).")
    return rows


def _parse(path: Path, role: str, require_response: bool) -> Iterator[Row | Problem]:
    raw = _read_bytes(path, role)
    lines = raw.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark from some editors
        lines[0] = lines[0][3:]
    if path.suffix.lower() == ".txt":
        yield from _parse_txt(lines)
    else:
        for number, line in enumerate(lines, start=1):
            text = _decode(line, number)
            if isinstance(text, Problem) or text.strip():
                yield text if isinstance(text, Problem) else _parse_json_row(text, number, require_response)


def _read_bytes(path: Path, role: str) -> bytes:
    if not path.is_file():
        raise DataError(f"{role} data file not found: {path}. Set [data] {role} to an existing .txt or .jsonl file.")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: unsupported data file type '{path.suffix}'. Use .txt (paragraphs) or .jsonl "
                        f"(one JSON object per line).")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the data file ({exc.strerror}).") from None


def _decode(line: bytes, number: int) -> str | Problem:
    try:
        return line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        return Problem(number, f"not UTF-8 text (byte {exc.start + 1} of the line is {line[exc.start]:#04x}). "
                               f"Save the file as UTF-8.")


def _parse_txt(lines: list[bytes]) -> Iterator[Row | Problem]:
    paragraph: list[str] = []
    first = 0
    for number, line in enumerate(lines, start=1):
        text = _decode(line, number)
        if isinstance(text, Problem):
            yield text
            continue
        if text.strip():
            if not paragraph:
                first = number
            paragraph.append(text)
        elif paragraph:
            yield Row(first, text="\n".join(paragraph).strip())
            paragraph = []
    if paragraph:
        yield Row(first, text="\n".join(paragraph).strip())


def _parse_json_row(text: str, number: int, require_response: bool) -> Row | Problem:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Problem(number, f"not valid JSON ({exc.msg} at column {exc.colno}).")
    if not isinstance(obj, dict):
        return Problem(number, f"expected a JSON object, found {type(obj).__name__}.")
    if "messages" in obj:
        return _messages_row(obj["messages"], number, require_response)
    if "prompt" in obj or "response" in obj:
        prompt, response = obj.get("prompt"), obj.get("response")
        if not isinstance(prompt, str):
            return Problem(number, "'prompt' must be a string.")
        if response is None and not require_response:
            return Row(number, messages=[{"role": "user", "content": prompt}])
        if not isinstance(response, str):
            return Problem(number, "'response' is missing or not a string; prompt rows need a response to learn.")
        if not response.strip():
            return Problem(number, "'response' is empty: there is nothing to learn.")
        return Row(number, messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
    if "text" in obj:
        if not isinstance(obj["text"], str):
            return Problem(number, "'text' must be a string.")
        if not obj["text"].strip():
            return Problem(number, "'text' is empty.")
        return Row(number, text=obj["text"])
    keys = ", ".join(repr(k) for k in obj) or "none"
    return Problem(number, f'expected {{"text": ...}}, {{"prompt": ..., "response": ...}} or {{"messages": [...]}}; '
                           f"found keys {keys}.")


def _messages_row(messages: Any, number: int, require_response: bool) -> Row | Problem:
    if not isinstance(messages, list) or not messages:
        return Problem(number, "'messages' must be a non-empty list of {\"role\", \"content\"} objects.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return Problem(number, f"message {i + 1} needs a string 'content'.")
        if message.get("role") not in ROLES:
            return Problem(number, f"message {i + 1} has role {message.get('role')!r}; use one of {', '.join(ROLES)}.")
    if require_response and not any(m["role"] == "assistant" for m in messages):
        return Problem(number, "no assistant message: there is no answer to learn.")
    return Row(number, messages=[{"role": m["role"], "content": m["content"]} for m in messages])


# ---- rendering and tokenizing -----------------------------------------------------------------


def encode_row(row: Row, tokenizer, *, max_length: int, loss_on: str) -> Encoded:
    """Tokenize one row as the student sees it (chat template rendered, learned tokens marked)."""
    if row.text is not None:
        text, spans, specials = row.text, None, True
    else:
        text, spans = render_chat(row.messages or [], tokenizer)
        specials = False  # the template writes the special tokens itself (BOS included)
        if loss_on == "all":
            spans = None
    ids, offsets = _tokenize(tokenizer, text, specials)
    if row.text is not None and tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)  # plain text learns where to stop, too
        offsets = offsets + [(len(text), len(text))] if offsets is not None else None
    if spans is None:
        trained = [True] * len(ids)
    else:
        trained = _mark_spans(offsets, spans) if offsets is not None else _mark_by_prefix(tokenizer, text, spans)
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], trained[:max_length], text, offsets[:max_length] if offsets else None, truncated)


def to_example(encoded: Encoded, line: int) -> Example:
    """Shift: position i predicts token i + 1 when that token is learned."""
    ids, trained = encoded.input_ids, encoded.trained
    labels = [ids[i + 1] if trained[i + 1] else IGNORE for i in range(len(ids) - 1)] + [IGNORE]
    return Example(list(ids), labels, line)


def render_chat(messages: list[dict[str, str]], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The chat rendered with the tokenizer's template, and the character spans of assistant turns.

    A span runs from the start of an assistant turn's content to the end of what the template writes
    for that turn (its end-of-turn token included), found by rendering the conversation up to each turn.
    """
    if not getattr(tokenizer, "chat_template", None):
        return _render_plain(messages, tokenizer)
    full = _apply_template(tokenizer, messages, False)
    spans = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _apply_template(tokenizer, messages[:i], True) if i else ""
        upto = _apply_template(tokenizer, messages[: i + 1], False)
        if before and upto.startswith(before) and full.startswith(upto):
            start, end = len(before), len(upto)
        else:  # templates that rewrite earlier turns: find the content itself
            start = full.find(message["content"], cursor)
            if start < 0:
                continue
            end = start + len(message["content"])
        spans.append((start, end))
        cursor = end
    return full, spans


def _apply_template(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _render_plain(messages: list[dict[str, str]], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """Chat rows for a tokenizer without a chat template: 'User: ...' lines, assistant turns learned."""
    parts, spans, position = [], [], 0
    eos = tokenizer.eos_token or ""
    for message in messages:
        head = f"{message['role'].capitalize()}: "
        body = message["content"] + (eos if message["role"] == "assistant" else "") + "\n"
        if message["role"] == "assistant":
            spans.append((position + len(head), position + len(head) + len(body)))
        parts.append(head + body)
        position += len(head) + len(body)
    return "".join(parts), spans


def _tokenize(tokenizer, text: str, specials: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
    try:
        enc = tokenizer(text, add_special_tokens=specials, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError):  # tokenizers without offsets
        return list(tokenizer(text, add_special_tokens=specials)["input_ids"]), None


def _mark_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """A token is learned when it starts inside a span (special tokens at a span's end included)."""
    marks = []
    for start, end in offsets:
        marks.append(any(a <= start < b or (start == end and a < start <= b) for a, b in spans))
    return marks


def _mark_by_prefix(tokenizer, text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Without offsets: count the tokens of each prefix to place the span boundaries."""
    def count(prefix: str) -> int:
        return len(tokenizer(prefix, add_special_tokens=False)["input_ids"])

    total = count(text)
    marks = [False] * total
    for a, b in spans:
        for i in range(count(text[:a]), min(count(text[:b]), total)):
            marks[i] = True
    return marks


# ---- datasets ---------------------------------------------------------------------------------


def split_eval(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Hold out ``fraction`` of the rows (at least one when > 0, never all), chosen with ``seed``."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def tokenize_rows(rows: list[Row], tokenizer, *, max_length: int, loss_on: str,
                  on_event: EventCallback = ignore_events, label: str = "train") -> tuple[list[Example], int]:
    """Encode rows into examples; rows left with nothing to learn are dropped and counted."""
    examples, skipped = [], 0
    step = max(1, len(rows) // 20)
    for i, row in enumerate(rows):
        example = to_example(encode_row(row, tokenizer, max_length=max_length, loss_on=loss_on), row.line)
        if example.n_targets:
            examples.append(example)
        else:
            skipped += 1
        if (i + 1) % step == 0 or i + 1 == len(rows):
            on_event(PhaseProgress("tokenize", i + 1, len(rows), "rows", f"tokenizing {label} data"))
    return examples, skipped


def read_data(data_cfg, *, seed: int) -> tuple[list[Row], list[Row]]:
    """Read (and split) the train and eval rows of a ``DataConfig``; cheap, so it runs before model loading.

    Raises:
        DataError: a problem in a file (file + line).
    """
    rows = read_rows(data_cfg.train, role="train")
    if data_cfg.eval:
        return rows, read_rows(data_cfg.eval, role="eval")
    return split_eval(rows, data_cfg.eval_fraction, seed)


def load_datasets(data_cfg, tokenizer, *, seed: int, on_event: EventCallback = ignore_events,
                  rows: tuple[list[Row], list[Row]] | None = None) -> Datasets:
    """Read, split and tokenize the train (and eval) data of a ``DataConfig``.

    Args:
        rows: (train, eval) rows already read by :func:`read_data`.

    Raises:
        DataError: a problem in a file (file + line), or no row left with anything to learn.
    """
    train_rows, eval_rows = rows if rows is not None else read_data(data_cfg, seed=seed)
    kwargs = dict(max_length=data_cfg.max_length, loss_on=data_cfg.loss_on, on_event=on_event)
    train, skipped = tokenize_rows(train_rows, tokenizer, label="train", **kwargs)
    held, skipped_eval = tokenize_rows(eval_rows, tokenizer, label="eval", **kwargs)
    if not train:
        raise DataError(f"{data_cfg.train}: no row has anything to learn after truncation to max_length = "
                        f"{data_cfg.max_length} tokens (the responses start after it). Raise [data] max_length "
                        f"or shorten the prompts.")
    notes = []
    if skipped + skipped_eval:
        notes.append(f"{skipped + skipped_eval} row(s) skipped: their response starts after max_length = "
                     f"{data_cfg.max_length} tokens.")
    if not getattr(tokenizer, "chat_template", None) and any(r.messages for r in train_rows[:100]):
        notes.append("The student's tokenizer has no chat template: chat rows are written as 'User: ...' / "
                     "'Assistant: ...' lines.")
    return Datasets(train, held, skipped + skipped_eval, notes)


# ---- batches ----------------------------------------------------------------------------------


class BatchStream:
    """An endless, reproducible sequence of micro-batches over ``examples``.

    Micro-batch ``k`` is a pure function of ``k`` and the seed (each epoch shuffles with its own
    seeded generator), so resuming needs only the count of micro-batches already used.
    """

    def __init__(self, examples: list[Example], batch_size: int, seed: int, pad_id: int) -> None:
        self.examples, self.batch_size, self.seed, self.pad_id = examples, batch_size, seed, pad_id
        self.per_epoch = math.ceil(len(examples) / batch_size)
        self._order_epoch, self._order = -1, list(range(len(examples)))

    def indices(self, k: int) -> list[int]:
        epoch, position = divmod(k, self.per_epoch)
        if epoch != self._order_epoch:
            self._order = list(range(len(self.examples)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(self._order)
            self._order_epoch = epoch
        return self._order[position * self.batch_size:(position + 1) * self.batch_size]

    def batch(self, k: int) -> dict[str, Any]:
        return collate([self.examples[i] for i in self.indices(k)], self.pad_id)


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest row. Returns ``input_ids``, ``attention_mask``, ``labels``: (B, L) tensors."""
    import torch

    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---- preview for the GUI ----------------------------------------------------------------------


def preview_data(path: str | Path, tokenizer, *, max_length: int, loss_on: str, limit: int = 20,
                 max_rows_measured: int = 20_000) -> DataPreview:
    """The first ``limit`` rows as the student sees them, the row count, token lengths, all problems.

    Never raises for problems inside the file (they are listed with line numbers); a missing file or
    unsupported type raises DataError as in training.
    """
    problems: list[Problem] = []
    rows: list[Row] = []
    for item in _parse(Path(path), "train", True):
        (problems if isinstance(item, Problem) else rows).append(item)
    preview, lengths = [], []
    for i, row in enumerate(rows[:max_rows_measured]):
        encoded = encode_row(row, tokenizer, max_length=max_length, loss_on=loss_on)
        lengths.append(len(encoded.input_ids))
        n_trained = to_example(encoded, row.line).n_targets
        if n_trained == 0:
            problems.append(Problem(row.line, f"nothing to learn within max_length = {max_length} tokens "
                                              f"(the response starts after it); the row will be skipped."))
        if i < limit:
            preview.append(PreviewRow(row.line, _segments(encoded), len(encoded.input_ids), n_trained,
                                      encoded.truncated))
    if not rows and not problems:
        problems.append(Problem(0, "the file has no rows."))
    problems.sort(key=lambda p: p.line)
    return DataPreview(str(path), preview, len(rows), lengths, problems,
                       bool(getattr(tokenizer, "chat_template", None)))


def _segments(encoded: Encoded) -> list[Segment]:
    """Consecutive runs of learned / masked tokens as text (from offsets, else by decoding tokens)."""
    segments: list[Segment] = []
    runs: list[tuple[int, int, bool]] = []
    for i, flag in enumerate(encoded.trained):
        if runs and runs[-1][2] == flag:
            runs[-1] = (runs[-1][0], i + 1, flag)
        else:
            runs.append((i, i + 1, flag))
    for index, (a, b, flag) in enumerate(runs):
        if encoded.offsets:
            start = encoded.offsets[a][0] if index else 0
            end = encoded.offsets[runs[index + 1][0]][0] if index + 1 < len(runs) else encoded.offsets[b - 1][1]
            text = encoded.text[start:end]
        else:
            text = f"[{b - a} tokens]"
        segments.append(Segment(text, flag))
    return segments
