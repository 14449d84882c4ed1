"""Modelfiles: TEMPLATEs that render chats exactly like the model's own chat template, stops, num_ctx."""

from __future__ import annotations

import pytest

from distill_gui.errors import ExportInputError
from distill_gui.export import gotemplate
from distill_gui.export.chat_templates import derive_template, ollama_values
from distill_gui.export.modelfile import build_modelfile
from tests.export.chat_families import ALPACA, FAMILIES, LLAMA31

CONVERSATION = [
    {"role": "system", "content": "You answer in one short line.\nNever use lists."},
    {"role": "user", "content": "What is distillation?"},
    {"role": "assistant", "content": "A small model learns from a big one."},
    {"role": "user", "content": "Why use a temperature?\nExplain briefly."},
    {"role": "assistant", "content": "It softens the teacher's probabilities."},
    {"role": "user", "content": "Thanks! One more: what is KL?"},
]


def _hf_tokenizer(template: str, bos: str, eos: str):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, eos: 1, **({bos: 2} if bos else {})}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                  unk_token="<unk>", eos_token=eos, bos_token=bos or None)
    tok.chat_template = template
    return tok


def _hf_text(template, bos, eos, add_bos, messages) -> str:
    text = _hf_tokenizer(template, bos, eos).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text[len(bos):] if add_bos and bos and text.startswith(bos) else text   # llama.cpp adds BOS itself


@pytest.mark.parametrize("name,template,bos,eos,add_bos,family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_emitted_template_renders_a_multi_turn_chat_like_hf(name, template, bos, eos, add_bos, family):
    choice = derive_template(template, bos=bos, eos=eos, add_bos=add_bos)
    assert choice.family == family and choice.go_template, choice.warnings
    conversations = [CONVERSATION, CONVERSATION[1:4], CONVERSATION[1:2]]
    if name in ("gemma2", "mistral-v0.1"):     # their templates refuse a system message
        conversations = conversations[1:]
    for messages in conversations:
        expected = _hf_text(template, bos, eos, add_bos, messages)
        assert gotemplate.render(choice.go_template, ollama_values(messages, choice.default_system)) == expected


def test_a_default_system_prompt_becomes_the_modelfile_system():
    name, template, bos, eos, add_bos, _ = FAMILIES[0]   # Qwen2.5 inserts its own system prompt
    choice = derive_template(template, bos=bos, eos=eos, add_bos=add_bos)
    assert choice.default_system == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    messages = CONVERSATION[1:2]
    assert "You are Qwen" in _hf_text(template, bos, eos, add_bos, messages)
    assert gotemplate.render(choice.go_template, ollama_values(messages, choice.default_system)) == \
        _hf_text(template, bos, eos, add_bos, messages)


@pytest.mark.parametrize("template,family", [(ALPACA, None), (LLAMA31, "llama3")])
def test_templates_we_cannot_reproduce_get_no_template_and_a_warning(template, family):
    choice = derive_template(template, bos="<s>", eos="</s>", add_bos=True)
    assert choice.family == family and choice.go_template is None
    assert any("Ollama >= 0.30" in w for w in choice.warnings)


def test_stops_cover_each_family_end_of_turn_token():
    ends = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "inst": "</s>", "gemma": "<end_of_turn>",
            "phi3": "<|end|>", "zephyr": "</s>"}
    for _, template, bos, eos, add_bos, family in FAMILIES:
        assert ends[family] in derive_template(template, bos=bos, eos=eos, add_bos=add_bos).stop


def parse_modelfile(text: str) -> dict:
    """A small Modelfile reader: instructions, triple-quoted multi-line values, repeated PARAMETERs."""
    out: dict = {"PARAMETER": {}}
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        if not line.strip() or line.startswith("#"):
            pos = end + 1
            continue
        command, rest = line.split(" ", 1)
        if rest.startswith('"""'):
            close = text.index('"""', pos + len(command) + 4)
            value, pos = text[pos + len(command) + 4:close], close + 4
        else:
            value, pos = rest, end + 1
        if command.upper() == "PARAMETER":
            key, raw = value.split(" ", 1)
            out["PARAMETER"].setdefault(key, []).append(raw.strip('"'))
        else:
            out[command.upper()] = value
    return out


def test_modelfile_of_a_chatml_student(model_factory):
    folder, _, tok = model_factory("qwen2", True)
    spec = build_modelfile(folder, "student.gguf", system="Be brief.")
    parsed = parse_modelfile(spec.text)
    assert parsed["FROM"] == "./student.gguf"
    assert parsed["TEMPLATE"] == spec.template and spec.family == "chatml"
    assert parsed["SYSTEM"] == "Be brief."
    assert parsed["PARAMETER"]["stop"] == ["<|im_start|>", "<|im_end|>"] == spec.parameters["stop"]
    assert parsed["PARAMETER"]["num_ctx"] == ["512"] and spec.parameters["num_ctx"] == 512  # trained context 512
    messages = CONVERSATION[:4]
    assert gotemplate.render(spec.template, ollama_values(messages, spec.system)) == \
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_modelfile_of_a_llama3_student_leaves_bos_to_llama_cpp(model_factory):
    folder, _, tok = model_factory("llama", False)
    spec = build_modelfile(folder, "student.gguf", num_ctx=256)
    assert spec.family == "llama3" and "<|eot_id|>" in spec.stop and spec.parameters["num_ctx"] == 256
    hf = tok.apply_chat_template(CONVERSATION[1:4], tokenize=False, add_generation_prompt=True)
    assert hf.startswith(tok.bos_token)
    assert gotemplate.render(spec.template, ollama_values(CONVERSATION[1:4], None)) == hf[len(tok.bos_token):]


def test_num_ctx_is_clamped_to_the_trained_context_and_must_be_positive(model_factory):
    folder, _, _ = model_factory("qwen2", True)
    spec = build_modelfile(folder, "m.gguf", num_ctx=100_000)
    assert spec.parameters["num_ctx"] == 512 and any("trained context" in w for w in spec.warnings)
    with pytest.raises(ExportInputError, match="num_ctx"):
        build_modelfile(folder, "m.gguf", num_ctx=0)


def test_a_sentencepiece_mistral_student_exports_end_to_end(spm_proto, tmp_path, sample_ids):
    """tokenizer.model + Mistral v0.2 chat template -> "llama" vocab, [INST] TEMPLATE, matching logits."""
    import json

    import numpy as np

    from distill_gui.export import export_model
    from distill_gui.workflows.tiny import make_tiny_model
    from tests.export.chat_families import MISTRAL_V02
    from tests.export.reference import GGUFModel, hf_logits

    proto, sp = spm_proto
    folder = tmp_path / "mistral"
    model = make_tiny_model("mistral", sp.get_piece_size(), init_std=0.2, bos_token_id=1, eos_token_id=2)
    model.save_pretrained(str(folder))
    (folder / "tokenizer.model").write_bytes(proto)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
         "chat_template": MISTRAL_V02}))
    result = export_model(folder, tmp_path / "out", name="mistral-student", gguf_type="f32")
    gguf_model = GGUFModel(result.gguf_path)
    assert gguf_model.kv["tokenizer.ggml.model"] == "llama" and gguf_model.kv["tokenizer.ggml.add_bos_token"]
    assert result.modelfile.family == "inst" and result.modelfile.template is not None
    assert "</s>" in result.modelfile.stop
    ids = [1] + sp.encode("The teacher explains 12 rivers to the student.")
    ref = hf_logits(model, ids)
    assert np.abs(gguf_model.logits(ids) - ref).max() < 2e-5 * np.abs(ref).max()
