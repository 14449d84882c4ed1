"""Lining a black-box teacher's tokens up with the student's: token bytes, reasoning skipped, refusals."""

from __future__ import annotations

import pytest

from distill_gui.engine.teacher.answers import Answer, Prompt
from distill_gui.engine.teacher.targets import AnswerAligner, _answer_tokens, token_bytes_table
from distill_gui.workflows.tiny import sample_text, train_bpe_tokenizer

TEXT = "Hello world! It's café, naïve Grüße 東京 🙂\n  indented\tcode()"


@pytest.fixture(scope="module")
def byte_level():
    return {style: train_bpe_tokenizer(sample_text(600), vocab_size=400, style=style) for style in ("qwen", "llama")}


@pytest.mark.parametrize("style", ["qwen", "llama"])
def test_byte_level_token_bytes_spell_the_text_including_split_characters(byte_level, style):
    tokenizer = byte_level[style]
    table = token_bytes_table(tokenizer)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    pieces = [table[i] for i in ids]
    assert b"".join(pieces) == TEXT.encode("utf-8")
    assert any(not _is_utf8(p) for p in pieces)  # the tiny vocabulary splits some characters into bytes
    assert all(table[i] is None for i in tokenizer.all_special_ids)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_sentencepiece_token_bytes_use_spaces_and_byte_fallback():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    bytes_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator(sample_text(600), trainer=trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>", *bytes_tokens], show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    table = token_bytes_table(tokenizer)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert "<0x0A>" in tokenizer.convert_ids_to_tokens(ids)  # the newline came through byte fallback
    # llama.cpp pieces of SentencePiece tokens carry the leading space the prefix "▁" stands for
    assert b"".join(table[i] for i in ids) == b" " + TEXT.encode("utf-8")


def _records(pieces: list[bytes | None]) -> list:
    return [[None if p is None else p.hex(), -0.5, []] for p in pieces]


def test_reasoning_tokens_before_the_answer_are_skipped_and_unknown_bytes_refused():
    answer = "the cat ."
    thinking = [b"<think>", b"hm", b"</think>", b"\n"]
    content = [b"the", b" cat", b" ."]
    tokens = _records(thinking + content + [b""])  # an end-of-generation token without text
    assert _answer_tokens(tokens, answer.encode()) == tokens[4:7]
    assert _answer_tokens(_records(content[:2] + [None]), answer.encode()) is None
    assert _answer_tokens(_records([b"the", b" dog", b" ."]), answer.encode()) is None


def test_an_answer_whose_text_was_replaced_does_not_line_up(byte_level):
    """Without bytes (the chat path) a token that is not whole UTF-8 arrives as U+FFFD: no soft targets."""
    tokenizer = byte_level["qwen"]
    aligner = AnswerAligner(tokenizer, k=3)
    prompt = Prompt(1, [{"role": "user", "content": "hi"}])
    response = "Grüße aus 東京"
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    table = token_bytes_table(tokenizer)
    exact = Answer(key="k", line=1, response=response, tokens=_records([table[i] for i in ids]))
    assert aligner.lines_up(prompt, exact)
    replaced = [table[i] if _is_utf8(table[i]) else None for i in ids]  # what the chat path can know
    assert None in replaced
    assert not aligner.lines_up(prompt, Answer(key="k", line=1, response=response, tokens=_records(replaced)))
