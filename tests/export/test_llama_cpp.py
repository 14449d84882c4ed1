"""Opt-in: llama.cpp itself loads our GGUF files, tokenizes like HF and computes the HF logits.

Needs the ``llama_cpp`` package (llama-cpp-python, compiled locally); skipped where it is missing.
It is not a dependency of the app. To run it:

    python -m venv /tmp/llvenv
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" /tmp/llvenv/bin/pip install llama-cpp-python
    PYTHONPATH=/tmp/llvenv/lib/python3.11/site-packages python -m pytest tests/export/test_llama_cpp.py
"""

from __future__ import annotations

import numpy as np
import pytest

from distill_gui.export import export_gguf
from tests.export.reference import hf_logits
from tests.export.test_gguf_roundtrip import ARCH_CASES, LLAMA31_ROPE
from tests.export.test_vocab import TRICKY

llama_cpp = pytest.importorskip("llama_cpp")


def _load(path):
    return llama_cpp.Llama(str(path), logits_all=True, n_ctx=256, flash_attn=False, verbose=False,
                           type_k=0, type_v=0)   # GGML_TYPE_F32 KV cache: exact comparisons


@pytest.mark.parametrize("arch,tie,rope", [(a, t, None) for a, t in ARCH_CASES] + [("llama", False, "llama3")])
def test_llama_cpp_logits_match_hf(arch, tie, rope, model_factory, bpe_tokenizers, tmp_path):
    folder, model, tok = model_factory(arch, tie, rope_scaling=LLAMA31_ROPE if rope else None)
    out = tmp_path / "m.gguf"
    export_gguf(folder, out, gguf_type="f32")
    llm = _load(out)
    text = "The teacher explains 12 rivers and 7 mountains to the small student quickly."
    ids = llm.tokenize(text.encode(), add_bos=True, special=True)
    assert ids == tok(text).input_ids
    llm.reset()
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    ref = hf_logits(model, ids)
    assert np.abs(got - ref).max() < 2e-5 * np.abs(ref).max()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llama_cpp_tokenizes_tricky_text_like_hf(arch, model_factory, tmp_path):
    folder, _, tok = model_factory(arch, False)
    out = tmp_path / "m.gguf"
    export_gguf(folder, out, gguf_type="f16")
    llm = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
    turn_end = "<|eot_id|>" if arch == "llama" else "<|im_end|>"
    for text in TRICKY + [f"question 42{turn_end}\nanswer{turn_end} tail"]:
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == tok(text).input_ids, text


def test_llama_cpp_reads_a_sentencepiece_export(spm_proto, tmp_path):
    import json

    from distill_gui.workflows.tiny import make_tiny_model

    proto, sp = spm_proto
    folder = tmp_path / "spm"
    model = make_tiny_model("mistral", sp.get_piece_size(), init_std=0.2, bos_token_id=1, eos_token_id=2)
    model.save_pretrained(str(folder))
    (folder / "tokenizer.model").write_bytes(proto)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    export_gguf(folder, tmp_path / "m.gguf", gguf_type="f32")
    llm = _load(tmp_path / "m.gguf")
    for text in [t for t in TRICKY if t]:
        assert llm.tokenize(text.encode(), add_bos=True) == [sp.bos_id()] + sp.encode(text), text
    ids = [sp.bos_id()] + sp.encode("The teacher explains 12 rivers to the student.")
    llm.reset()
    llm.eval(ids)
    ref = hf_logits(model, ids)
    assert np.abs(np.asarray(llm.scores[: len(ids)], dtype=np.float64) - ref).max() < 2e-5 * np.abs(ref).max()
