"""Data: reading rows, chat templates and prompt masks, truncation, batches, the GUI preview, bad input."""

from __future__ import annotations

import json

import pytest

from distill_gui.engine.data import (
    IGNORE,
    BatchStream,
    Row,
    collate,
    encode_row,
    preview_data,
    read_rows,
    split_eval,
    to_example,
)
from distill_gui.errors import DataError, UserInputError

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is red?"},
        {"role": "assistant", "content": "A color."}, {"role": "user", "content": "And seven?"},
        {"role": "assistant", "content": "A number, 7."}]


@pytest.fixture(scope="module")
def qwen_tok(tiny_pair):
    from distill_gui.engine.models import load_tokenizer

    return load_tokenizer(tiny_pair[1])


@pytest.fixture(scope="module")
def llama_tok(tiny_texts):
    from distill_gui.workflows.tiny import train_bpe_tokenizer

    return train_bpe_tokenizer(tiny_texts[:600], vocab_size=400, style="llama")


def _targets(tokenizer, row: Row, loss_on: str = "response", max_length: int = 512) -> str:
    example = to_example(encode_row(row, tokenizer, max_length=max_length, loss_on=loss_on), row.line)
    return tokenizer.decode([t for t in example.labels if t != IGNORE])


def test_txt_file_gives_paragraphs_with_their_first_line(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("first para\nstill first\n\n\n  \nsecond para\n\nthird\n", encoding="utf-8")
    rows = read_rows(path)
    assert [(r.line, r.text) for r in rows] == [(1, "first para\nstill first"), (6, "second para"), (8, "third")]


def test_jsonl_row_shapes(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [{"text": "plain"}, {"prompt": "p", "response": "r"}, {"messages": CHAT}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    rows = read_rows(path)
    assert rows[0].text == "plain" and rows[0].line == 1
    assert rows[1].messages == [{"role": "user", "content": "p"}, {"role": "assistant", "content": "r"}]
    assert rows[2].messages == CHAT and rows[2].line == 3


@pytest.mark.parametrize("style", ["qwen", "llama"])
def test_response_mask_learns_exactly_the_assistant_turns(style, qwen_tok, llama_tok):
    tok = qwen_tok if style == "qwen" else llama_tok
    end = "<|im_end|>\n" if style == "qwen" else "<|eot_id|>"
    learned = _targets(tok, Row(1, messages=CHAT))
    assert learned == f"A color.{end}A number, 7.{end}"


def test_prompt_tokens_are_masked_but_everything_is_learned_with_loss_on_all(qwen_tok):
    row = Row(1, messages=CHAT[1:3])
    encoded = encode_row(row, qwen_tok, max_length=512, loss_on="all")
    example = to_example(encoded, 1)
    # position i predicts token i + 1; only the last position has no target
    assert example.labels[:-1] == encoded.input_ids[1:] and example.labels[-1] == IGNORE
    full = qwen_tok.apply_chat_template(CHAT[1:3], tokenize=False)
    assert qwen_tok.decode(encoded.input_ids) == full


def test_text_rows_learn_every_token_and_the_end(llama_tok):
    row = Row(1, text="the river is blue")
    encoded = encode_row(row, llama_tok, max_length=64, loss_on="response")
    assert encoded.input_ids[0] == llama_tok.bos_token_id and encoded.input_ids[-1] == llama_tok.eos_token_id
    assert _targets(llama_tok, row) == "the river is blue<|eot_id|>"


def test_truncation_to_max_length(qwen_tok):
    row = Row(1, messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 100}])
    encoded = encode_row(row, qwen_tok, max_length=32, loss_on="response")
    assert len(encoded.input_ids) == 32 and encoded.truncated
    assert to_example(encoded, 1).n_targets > 0


def test_a_response_beyond_max_length_has_nothing_to_learn(qwen_tok):
    row = Row(1, messages=[{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "yes"}])
    assert to_example(encode_row(row, qwen_tok, max_length=16, loss_on="response"), 1).n_targets == 0


def test_collate_pads_right_and_padding_is_never_a_target(qwen_tok):
    examples = [to_example(encode_row(Row(i, text=t), qwen_tok, max_length=64, loss_on="all"), i)
                for i, t in enumerate(["short", "a much longer row of text here"])]
    batch = collate(examples, pad_id=qwen_tok.pad_token_id)
    n0 = len(examples[0].input_ids)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(examples[1].input_ids))
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (batch["input_ids"].shape[1] - n0)
    assert (batch["labels"][0, n0:] == IGNORE).all()
    assert (batch["input_ids"][0, n0:] == qwen_tok.pad_token_id).all()


def test_eval_split_is_seeded_disjoint_and_never_takes_everything():
    rows = [Row(i, text=str(i)) for i in range(40)]
    train_a, held_a = split_eval(rows, 0.1, seed=7)
    train_b, held_b = split_eval(rows, 0.1, seed=7)
    assert [r.line for r in held_a] == [r.line for r in held_b] and len(held_a) == 4
    assert {r.line for r in train_a} | {r.line for r in held_a} == set(range(40))
    assert not {r.line for r in train_a} & {r.line for r in held_a}
    assert split_eval(rows[:2], 0.5, seed=1)[0] and split_eval(rows, 0.0, seed=1)[1] == []


def test_batch_stream_is_a_pure_function_of_the_index_and_covers_each_epoch(qwen_tok):
    examples = [to_example(encode_row(Row(i, text=f"row {i}"), qwen_tok, max_length=16, loss_on="all"), i)
                for i in range(10)]
    stream = BatchStream(examples, batch_size=4, seed=3, pad_id=0)
    epoch0 = [i for k in range(stream.per_epoch) for i in stream.indices(k)]
    epoch1 = [i for k in range(stream.per_epoch, 2 * stream.per_epoch) for i in stream.indices(k)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10)) and epoch0 != epoch1
    fresh = BatchStream(examples, batch_size=4, seed=3, pad_id=0)
    assert fresh.indices(4) == stream.indices(4)  # jumping straight to micro-batch 4 (resume)
    assert (fresh.batch(1)["input_ids"] == stream.batch(1)["input_ids"]).all()


# ---- bad input: file + line + what, exit code 2 ----------------------------------------------


@pytest.mark.parametrize("content, line, words", [
    ('{"text": "ok"}\n{"text": "broken\n', 2, "not valid JSON"),
    ('{"text": "ok"}\n\n[1, 2]\n', 3, "expected a JSON object"),
    ('{"prompt": "p"}\n', 1, "'response' is missing"),
    ('{"prompt": "p", "response": ""}\n', 1, "'response' is empty"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', 1, "no assistant message"),
    ('{"messages": [{"role": "boss", "content": "hi"}]}\n', 1, "role 'boss'"),
    ('{"question": "q"}\n', 1, "found keys 'question'"),
    ('{"text": 3}\n', 1, "'text' must be a string"),
])
def test_malformed_rows_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_rows(path)
    assert f"{path}, line {line}:" in info.value.message and words in info.value.message
    assert info.value.exit_code == 2


def test_non_utf8_text_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait\n\nna\u00efve\n".encode("utf-8") + "third \u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt, line 4: not UTF-8"):
        read_rows(path)


@pytest.mark.parametrize("name, content, words", [
    ("missing.jsonl", None, "not found"),
    ("empty.jsonl", "\n\n", "no rows"),
    ("data.csv", "a,b\n", "unsupported data file type"),
])
def test_missing_empty_and_unsupported_files(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError, match=words):
        read_rows(path)


# ---- preview -----------------------------------------------------------------------------------


def test_preview_lists_every_problem_and_shows_rows_as_the_student_sees_them(tmp_path, qwen_tok):
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"prompt": "What is red?", "response": "A color."}), "not json",
             json.dumps({"text": "plain text"}), json.dumps({"prompt": "x"}),
             json.dumps({"prompt": "word " * 80, "response": "late"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    preview = preview_data(path, qwen_tok, max_length=32, loss_on="response")
    assert preview.row_count == 3 and len(preview.token_lengths) == 3 and max(preview.token_lengths) == 32
    assert [p.line for p in preview.problems] == [2, 4, 5]
    assert "nothing to learn" in preview.problems[2].message
    first = preview.rows[0]
    rendered = qwen_tok.apply_chat_template([{"role": "user", "content": "What is red?"},
                                             {"role": "assistant", "content": "A color."}], tokenize=False)
    assert "".join(s.text for s in first.segments) == rendered
    assert [s.text for s in first.segments if s.trained] == ["A color.<|im_end|>\n"]
    assert preview.rows[2].truncated and preview.rows[2].n_trained == 0
