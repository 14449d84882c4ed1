"""Read a SentencePiece ``tokenizer.model`` (a protobuf ``ModelProto``) without the sentencepiece package.

Only the fields GGUF needs are decoded: the pieces (text, score, type), the trainer's special ids and
model type, and the normalizer's ``add_dummy_prefix``. The wire format is protobuf's: a varint key
``field << 3 | wire_type`` followed by a varint, a fixed 32/64-bit value, or a length-prefixed blob.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from distill_gui.errors import ExportInputError

# SentencePiece piece types; the numbers are also GGUF's TokenType values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


@dataclass
class SpmModel:
    pieces: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    model_type: str = "unigram"
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    add_dummy_prefix: bool = True


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) of one message; values are int, float bits or bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _int32(value: int) -> int:
    """Protobuf int32 values are sign-extended to 64 bits on the wire."""
    return value - (1 << 64) if value >= 1 << 63 else value


def read_spm_model(path: Path) -> SpmModel:
    """Parse ``tokenizer.model``.

    Raises:
        ExportInputError: The file is missing or not a SentencePiece model.
    """
    try:
        buf = path.read_bytes()
        model = SpmModel()
        for number, _wire, value in _fields(buf):
            if number == 1:
                _read_piece(value, model)
            elif number == 2:
                _read_trainer(value, model)
            elif number == 3:
                _read_normalizer(value, model)
    except (OSError, ValueError, IndexError, struct.error) as exc:
        raise ExportInputError(f"{path} is not a readable SentencePiece model: {exc}.") from exc
    if not model.pieces:
        raise ExportInputError(f"{path} holds no SentencePiece pieces; is it really a tokenizer.model?")
    return model


def _read_piece(buf: bytes, model: SpmModel) -> None:
    piece, score, kind = "", 0.0, NORMAL
    for number, _wire, value in _fields(buf):
        if number == 1:
            piece = value.decode("utf-8")
        elif number == 2:
            (score,) = struct.unpack("<f", value)
        elif number == 3:
            kind = int(value)
    model.pieces.append(piece)
    model.scores.append(float(score))
    model.types.append(kind)


def _read_trainer(buf: bytes, model: SpmModel) -> None:
    for number, _wire, value in _fields(buf):
        if number == 3:
            model.model_type = MODEL_TYPES.get(int(value), str(value))
        elif number == 40:
            model.unk_id = _int32(int(value))
        elif number == 41:
            model.bos_id = _int32(int(value))
        elif number == 42:
            model.eos_id = _int32(int(value))
        elif number == 43:
            model.pad_id = _int32(int(value))


def _read_normalizer(buf: bytes, model: SpmModel) -> None:
    for number, _wire, value in _fields(buf):
        if number == 3:
            model.add_dummy_prefix = bool(value)
