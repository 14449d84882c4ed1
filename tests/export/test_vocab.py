"""The tokenizer written into a GGUF tokenizes like the HF tokenizer it came from."""

from __future__ import annotations

import json

import pytest

from distill_gui.errors import ExportInputError
from distill_gui.export.gguf_file import export_gguf
from distill_gui.export.pretokenizer import detect_pre_tokenizer
from distill_gui.export.vocab import load_vocab
from tests.export.reference import GGUFModel
from tests.export.tokenize_ref import bpe_encode, spm_encode

TRICKY = [
    "Hello world",
    "  two leading spaces and trailing   ",
    "digits 1234567 and 3.14159 and 1,000,000",
    "unicode: café naïve Grüße 東京 привет 🙂🙂",
    "it's they'll WE'RE I'M you'D",
    "tabs\tand\nnew lines\n\n\nend",
    "x = y + 2; if (a<b) { return a->c; }",
    "",
    "a",
]


@pytest.fixture(scope="module")
def exported_kv(model_factory, tmp_path_factory):
    """GGUF key/values of one export per tokenizer style."""
    out = {}
    for arch, style in (("llama", "llama"), ("qwen2", "qwen")):
        folder, _, tok = model_factory(arch, False)
        path = tmp_path_factory.mktemp("vocab") / f"{style}.gguf"
        export_gguf(folder, path, gguf_type="f16")
        out[style] = (GGUFModel(path).kv, tok)
    return out


@pytest.mark.parametrize("style", ["llama", "qwen"])
@pytest.mark.parametrize("text", TRICKY)
def test_bpe_tokenization_through_the_gguf_vocab_matches_hf(style, text, exported_kv):
    kv, tok = exported_kv[style]
    assert bpe_encode(kv, text) == tok(text).input_ids


@pytest.mark.parametrize("style", ["llama", "qwen"])
def test_special_tokens_inside_text_match_hf(style, exported_kv):
    kv, tok = exported_kv[style]
    turn_end = "<|eot_id|>" if style == "llama" else "<|im_end|>"
    text = f"question 42{turn_end}\nanswer{turn_end}{turn_end} tail"
    assert bpe_encode(kv, text) == tok(text).input_ids
    assert tok.convert_tokens_to_ids(turn_end) in bpe_encode(kv, text)


def test_digit_splitting_follows_the_detected_pre_tokenizer(tmp_path):
    """Llama-3's multi-digit tokens need llama-bpe's 1-3 digit groups; qwen2's single digits would miss them.

    (A Qwen vocabulary has no multi-digit tokens at all, so there the two regexes cannot disagree.)
    """
    from distill_gui.workflows.tiny import make_tiny_model, save_tokenizer, train_bpe_tokenizer

    digit_text = [f"{i * 7919 % 100000} and {i * 31 % 1000} items" for i in range(400)]
    for style, pre, wrong in (("llama", "llama-bpe", "qwen2"),):
        tok = train_bpe_tokenizer(digit_text, vocab_size=400, style=style)
        folder = tmp_path / style
        make_tiny_model("qwen2", len(tok), hidden=32, layers=1).save_pretrained(str(folder))
        save_tokenizer(tok, folder)
        export_gguf(folder, folder / "m.gguf", gguf_type="f16")
        kv = GGUFModel(folder / "m.gguf").kv
        text = "numbers 73251 and 998 and 4096"
        assert kv["tokenizer.ggml.pre"] == pre
        assert bpe_encode(kv, text) == tok(text).input_ids
        assert bpe_encode({**kv, "tokenizer.ggml.pre": wrong}, text) != tok(text).input_ids


def test_bpe_metadata_matches_the_hf_tokenizer(exported_kv):
    for style, pre, adds_bos in (("llama", "llama-bpe", True), ("qwen", "qwen2", False)):
        kv, tok = exported_kv[style]
        assert kv["tokenizer.ggml.model"] == "gpt2"
        assert kv["tokenizer.ggml.pre"] == pre
        assert kv["tokenizer.ggml.add_bos_token"] is adds_bos
        assert (tok("x").input_ids[0] == tok.bos_token_id) is adds_bos
        assert kv["tokenizer.ggml.add_eos_token"] is False
        assert kv["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
        assert kv["tokenizer.ggml.eot_token_id"] == tok.eos_token_id   # <|eot_id|> / <|im_end|>
        assert kv["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
        assert kv["tokenizer.chat_template"] == tok.chat_template
        assert set(kv["tokenizer.ggml.token_type"][i] for i in tok.all_special_ids) == {3}   # CONTROL
        if adds_bos:
            assert kv["tokenizer.ggml.bos_token_id"] == tok.bos_token_id


def test_an_unknown_pre_tokenizer_is_a_clear_error_unless_one_is_chosen(model_factory, tmp_path):
    folder, _, _ = model_factory("qwen2", False)
    tok_json = json.loads((folder / "tokenizer.json").read_text())
    tok_json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+|\s+"
    odd = tmp_path / "odd"
    odd.mkdir()
    for item in folder.iterdir():
        (odd / item.name).write_bytes(item.read_bytes())
    (odd / "tokenizer.json").write_text(json.dumps(tok_json))
    with pytest.raises(ExportInputError, match="--pre-tokenizer"):
        load_vocab(odd, 512)
    assert load_vocab(odd, 512, pre_tokenizer="qwen2").pre == "qwen2"
    with pytest.raises(ExportInputError, match="not a name llama.cpp knows"):
        load_vocab(odd, 512, pre_tokenizer="my-own")


@pytest.mark.parametrize("steps,name", [
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "smollm"),
])
def test_other_common_pre_tokenizers_are_named(steps, name):
    assert detect_pre_tokenizer({"pre_tokenizer": steps, "model": {"type": "BPE"}}, "x") == name


DEEPSEEK_V3_PRE = r"""{"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
  {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false},
  {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}"""


def test_deepseek_v3_and_r1_distill_tokenizers_are_named():
    """The pre_tokenizer block as DeepSeek-V3 / R1-Distill tokenizer.json files publish it."""
    tok_json = {"pre_tokenizer": json.loads(DEEPSEEK_V3_PRE), "model": {"type": "BPE"}}
    assert detect_pre_tokenizer(tok_json, "x") == "deepseek-v3"


def test_special_ids_fall_back_to_config_json(model_factory):
    """Qwen's tokenizer config names no bos_token; config.json's bos_token_id still reaches the GGUF."""
    folder, _, tok = model_factory("qwen2", False)
    config = {"bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"), "eos_token_id": [tok.eos_token_id, 7]}
    vocab = load_vocab(folder, len(tok), model_config=config)
    assert vocab.special_ids["bos"] == config["bos_token_id"] and vocab.add_bos is False
    assert vocab.special_ids["eos"] == tok.eos_token_id   # the tokenizer config wins where it names one


def test_a_folder_without_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(ExportInputError, match="has no tokenizer"):
        load_vocab(tmp_path, 100)


# ---- SentencePiece -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spm_folder(tmp_path_factory, spm_proto):
    """A folder with a SentencePiece tokenizer.model and its tokenizer_config.json."""
    proto, sp = spm_proto
    folder = tmp_path_factory.mktemp("spm")
    (folder / "tokenizer.model").write_bytes(proto)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
         "chat_template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"}))
    return folder, sp


def test_sentencepiece_pieces_scores_and_types_are_copied(spm_folder):
    folder, sp = spm_folder
    vocab = load_vocab(folder, sp.get_piece_size() + 4)
    n = sp.get_piece_size()
    assert vocab.model == "llama" and vocab.pre == "default"
    assert vocab.tokens[:n] == [sp.id_to_piece(i) for i in range(n)]
    assert vocab.scores[:n] == pytest.approx([sp.get_score(i) for i in range(n)])
    expected_types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1
                      for i in range(n)]
    assert vocab.types[:n] == expected_types
    assert vocab.tokens[n:] == [f"[PAD{i}]" for i in range(n, n + 4)]
    assert vocab.special_ids == {"bos": 1, "eos": 2, "unk": 0}
    assert vocab.add_bos is True and vocab.add_space_prefix is True


@pytest.mark.parametrize("text", [t for t in TRICKY if t])
def test_sentencepiece_tokenization_through_the_gguf_vocab_matches_sentencepiece(text, spm_folder, tmp_path):
    folder, sp = spm_folder
    vocab = load_vocab(folder, sp.get_piece_size())
    kv = {"tokenizer.ggml.tokens": vocab.tokens, "tokenizer.ggml.scores": vocab.scores,
          "tokenizer.ggml.token_type": vocab.types, "tokenizer.ggml.bos_token_id": vocab.special_ids["bos"],
          "tokenizer.ggml.add_bos_token": vocab.add_bos, "tokenizer.ggml.add_space_prefix": vocab.add_space_prefix}
    assert spm_encode(kv, text) == [sp.bos_id()] + sp.encode(text)
