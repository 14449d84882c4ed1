"""Soft targets from a black-box teacher's answers: its tokens lined up with the student's tokenizer.

Ollama reports, for each generated token, its text/bytes, log-probability and up to 20 alternatives.
They can train the student token by token only when the teacher's tokens ARE the student's tokens:

1. the answer's bytes are found in the student's rendering of the conversation (its chat template);
2. the student's tokens covering exactly those bytes equal the teacher's generated tokens, one for
   one, byte for byte (tokens generated before the answer, e.g. reasoning, are skipped by matching
   the answer from its end);
3. each alternative is mapped to the student id whose bytes it has (alternatives the student's
   vocabulary does not have are dropped).

Then the position predicting answer token j gets the teacher's alternatives (the chosen token always
among them, replacing the least likely alternative when sampling picked a token outside the list) as
its top-k row. Every other learned position - the end-of-turn token, answers that do not line up,
earlier assistant turns - gets the hard label as a certain teacher (log-probability 0), which makes
its KD term a cross-entropy on that label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from distill_gui.engine.data import IGNORE, Encoded, Example, Row, encode_row, render_chat
from distill_gui.engine.teacher.answers import Answer, Prompt
from distill_gui.engine.teacher.cache import PAD_LOGPROB

NO_LIMIT = 1 << 30


def byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character for each byte, inverted (character -> byte).

    Bytes that are visible Latin-1 characters stand for themselves; the other 68 are mapped, in
    order, to the characters from U+0100 on.
    """
    visible = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shown = set(visible)
    extra = [b for b in range(256) if b not in shown]
    mapping = {chr(b): b for b in visible}
    mapping.update({chr(0x100 + n): b for n, b in enumerate(extra)})
    return mapping


def _decoder_types(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if "type" in node:
                found.add(str(node["type"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(backend.to_str()).get("decoder"))
    return found


def token_bytes_table(tokenizer) -> list[bytes | None]:
    """The bytes each token id stands for; None for special tokens and ids that are not text.

    Byte-level BPE (GPT-2, Llama 3, Qwen): each character of the token maps back to one byte.
    SentencePiece (Llama 2, Mistral): ``▁`` is a space and ``<0xNN>`` is the byte NN.
    """
    size = len(tokenizer)
    table: list[bytes | None] = [None] * size
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    byte_level = "ByteLevel" in _decoder_types(tokenizer)
    alphabet = byte_level_alphabet() if byte_level else {}
    for token, index in tokenizer.get_vocab().items():
        if index >= size or index in special:
            continue
        if byte_level:
            try:
                table[index] = bytes(alphabet[c] for c in token)
            except KeyError:  # an added token written as plain text
                table[index] = token.encode("utf-8")
        elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            table[index] = bytes([int(token[3:5], 16)])
        else:
            table[index] = token.replace("\u2581", " ").encode("utf-8")
    return table


@dataclass
class Alignment:
    """Where an answer's tokens sit in the student's rendering, and the teacher's rows for them.

    Attributes:
        encoded: The row as the student tokenizes it (no truncation).
        rows: Position p (predicting token p + 1) -> (student ids, logprobs), most likely first.
    """

    encoded: Encoded
    rows: dict[int, tuple[list[int], list[float]]]


class AnswerAligner:
    """Lines a teacher's answers up with a student tokenizer.

    Args:
        tokenizer: The student's tokenizer.
        k: Entries per row (the alternatives asked for).
        loss_on: The run's ``data.loss_on``.
    """

    def __init__(self, tokenizer, *, k: int, loss_on: str = "response") -> None:
        self.tokenizer, self.k, self.loss_on = tokenizer, max(1, k), loss_on
        self.table = token_bytes_table(tokenizer)
        self.lookup: dict[bytes, int] = {}
        for index, piece in enumerate(self.table):
            if piece is not None and piece not in self.lookup:
                self.lookup[piece] = index

    def estimate(self, prompt: Prompt) -> int:
        """The prompt's length in student tokens, with its chat template (an estimate of what was sent)."""
        text, _ = render_chat(prompt.messages, self.tokenizer)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def lines_up(self, prompt: Prompt, answer: Answer) -> bool:
        return self.align(answer.row(prompt), answer) is not None

    def align(self, row: Row, answer: Answer) -> Alignment | None:
        """The teacher's rows for the answer's positions, or None when the tokens do not line up."""
        if not answer.tokens or not answer.response:
            return None
        encoded = encode_row(row, self.tokenizer, max_length=NO_LIMIT, loss_on=self.loss_on)
        positions = self._answer_positions(encoded, answer.response)
        teacher = _answer_tokens(answer.tokens, answer.response.encode("utf-8"))
        if positions is None or teacher is None or len(teacher) != len(positions):
            return None
        ids = [encoded.input_ids[i] for i in positions]
        if any(self.table[i] != bytes.fromhex(t[0]) for i, t in zip(ids, teacher)):
            return None
        rows = {}
        for index, chosen, (hex_bytes, logprob, alternatives) in zip(positions, ids, teacher):
            if index > 0:
                rows[index - 1] = self._entries(chosen, float(logprob), alternatives)
        return Alignment(encoded, rows)

    def _answer_positions(self, encoded: Encoded, response: str) -> list[int] | None:
        """Indices of the student tokens spelling exactly the answer (the last occurrence of its text)."""
        if encoded.offsets is None:
            return None
        start = encoded.text.rfind(response)
        if start < 0:
            return None
        end = start + len(response)
        inside = [i for i, (a, b) in enumerate(encoded.offsets) if start <= a and b <= end and b > a]
        if not inside or inside != list(range(inside[0], inside[-1] + 1)):
            return None
        spelled = b"".join(self.table[encoded.input_ids[i]] or b"\x00" for i in inside)
        return inside if spelled == response.encode("utf-8") else None

    def _entries(self, chosen: int, logprob: float, alternatives: list) -> tuple[list[int], list[float]]:
        best: dict[int, float] = {}
        for hex_bytes, alt_logprob in alternatives:
            index = self.lookup.get(bytes.fromhex(hex_bytes)) if hex_bytes is not None else None
            if index is not None and float(alt_logprob) > best.get(index, -np.inf):
                best[index] = float(alt_logprob)
        ranked = sorted(best.items(), key=lambda item: -item[1])[:self.k]
        if chosen not in dict(ranked):
            ranked = ranked[:self.k - 1] + [(chosen, logprob)]
            ranked.sort(key=lambda item: -item[1])
        return [i for i, _ in ranked], [lp for _, lp in ranked]


def _answer_tokens(tokens: list, answer: bytes) -> list | None:
    """The generated tokens that spell ``answer``, found from the end (earlier ones are reasoning)."""
    end = len(tokens)
    while end and tokens[end - 1][0] == "":  # an end-of-generation token without text
        end -= 1
    spelled, start = b"", end
    while start > 0 and len(spelled) < len(answer):
        hex_bytes = tokens[start - 1][0]
        if hex_bytes is None:
            return None
        spelled = bytes.fromhex(hex_bytes) + spelled
        start -= 1
    return tokens[start:end] if spelled == answer else None


class AnswerTargets:
    """Cache rows for examples made from answers (a ``RowProducer`` for teacher_cache.open_or_build).

    Args:
        aligner: The student's aligner.
        pairs: The (prompt, answer) pairs of one split; examples find theirs by data line.
        max_length, loss_on: The run's data settings (must match how the examples were made).
        vocab: Shared vocabulary size (filler ids are below it).
    """

    def __init__(self, aligner: AnswerAligner, pairs: Sequence[tuple[Prompt, Answer]], *, max_length: int,
                 vocab: int) -> None:
        self.aligner, self.max_length, self.vocab = aligner, max_length, vocab
        self.by_line = {prompt.line: (prompt, answer) for prompt, answer in pairs}
        self.aligned = self.total = 0

    def __call__(self, examples: Sequence[Example]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self._rows(example) for example in examples]

    def _rows(self, example: Example) -> tuple[np.ndarray, np.ndarray]:
        prompt, answer = self.by_line[example.line]
        alignment = self.aligner.align(answer.row(prompt), answer)
        self.total += 1
        ok = alignment is not None and alignment.encoded.input_ids[:len(example.input_ids)] == example.input_ids
        self.aligned += ok
        taught = alignment.rows if ok else {}
        k = self.aligner.k
        positions = [p for p, label in enumerate(example.labels) if label != IGNORE]
        ids = np.zeros((len(positions), k), dtype=np.int32)
        logprobs = np.full((len(positions), k), PAD_LOGPROB, dtype=np.float32)
        for r, p in enumerate(positions):
            entry = taught.get(p)
            if entry is None or entry[0].count(example.labels[p]) != 1:
                entry = ([example.labels[p]], [0.0])  # no teacher row: the label, certain
            n = len(entry[0])
            ids[r, :n], logprobs[r, :n] = entry
            ids[r, n:] = _fillers(set(entry[0]), k - n)
        return ids, logprobs


def _fillers(used: set[int], count: int) -> list[int]:
    """``count`` distinct ids not in ``used`` (for slots a row leaves empty)."""
    out, candidate = [], 0
    while len(out) < count:
        if candidate not in used:
            out.append(candidate)
        candidate += 1
    return out
