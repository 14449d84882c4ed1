"""Fixtures for export tests: tiny HF model folders of every supported architecture, built on the spot."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bpe_tokenizers(tiny_texts):
    """{"qwen": tokenizer, "llama": tokenizer}: byte-level BPEs trained once per session."""
    from distill_gui.workflows.tiny import train_bpe_tokenizer

    return {style: train_bpe_tokenizer(tiny_texts, vocab_size=512, style=style) for style in ("qwen", "llama")}


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory, bpe_tokenizers):
    """``make(arch, tie=False, **kwargs) -> (folder, hf_model, tokenizer)``, cached per argument set.

    Weights use init_std 0.2 so logits are far from flat and weight errors show up in them.
    """
    from distill_gui.workflows.tiny import make_tiny_model, save_tokenizer

    cache = {}

    def make(arch: str, tie: bool = False, *, style: str | None = None, extra_rows: int = 0,
             rope_scaling: dict | None = None, hidden: int = 64, dtype: str = "float32"):
        key = (arch, tie, style, extra_rows, repr(rope_scaling), hidden, dtype)
        if key in cache:
            return cache[key]
        style = style or ("llama" if arch in ("llama", "mistral") else "qwen")
        tok = bpe_tokenizers[style]
        model = make_tiny_model(arch, len(tok) + extra_rows, tie=tie, init_std=0.2, hidden=hidden,
                                heads=4, kv_heads=2, seed=len(cache), rope_scaling=rope_scaling,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id)
        folder = tmp_path_factory.mktemp(f"{arch}_{'tied' if tie else 'untied'}")
        if dtype != "float32":
            import torch

            model = model.to(getattr(torch, dtype))
        model.save_pretrained(str(folder))
        save_tokenizer(tok, folder)
        cache[key] = (folder, model, tok)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def sample_ids(bpe_tokenizers):
    """Two token sequences per tokenizer style (with BOS where the style adds one)."""
    texts = ["The teacher explains 12 rivers and 7 mountains to the small student quickly.",
             "Why is the blue stone heavy? Because 3.14 is never 1,000; it's always café."]
    return {style: [tok(t).input_ids for t in texts] for style, tok in bpe_tokenizers.items()}


@pytest.fixture(scope="session")
def spm_proto(tiny_texts):
    """(tokenizer.model bytes, SentencePieceProcessor): a BPE-type SentencePiece with Llama-style settings."""
    import io

    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(tiny_texts), model_writer=proto, vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        minloglevel=2)
    return proto.getvalue(), sentencepiece.SentencePieceProcessor(model_proto=proto.getvalue())
