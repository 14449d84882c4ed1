"""Exported GGUF files compute what the HF model computes.

Each file is read back with gguf.GGUFReader and run through an independent numpy forward
(tests/export/reference.py) at every position of real token sequences.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from distill_gui.export import archs
from distill_gui.export.gguf_file import export_gguf
from tests.export.reference import GGUFModel, hf_logits, kl_and_agreement

ARCH_CASES = [("llama", False), ("llama", True), ("mistral", False), ("qwen2", False), ("qwen2", True),
              ("qwen3", True), ("qwen3", False)]
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}


def _style(arch: str) -> str:
    return "llama" if arch in ("llama", "mistral") else "qwen"


def _max_rel_diff(model, gguf_model, id_lists) -> float:
    worst = 0.0
    for ids in id_lists:
        ref, got = hf_logits(model, ids), gguf_model.logits(ids)
        worst = max(worst, float(np.abs(ref - got).max() / np.abs(ref).max()))
    return worst


@pytest.mark.parametrize("arch,tie", ARCH_CASES)
def test_f32_export_matches_hf_logits_at_every_position(arch, tie, model_factory, sample_ids, tmp_path):
    folder, model, _ = model_factory(arch, tie)
    out = tmp_path / "model.gguf"
    export_gguf(folder, out, gguf_type="f32")
    gguf_model = GGUFModel(out)
    assert gguf_model.arch == GGUF_ARCH[arch]
    assert ("output.weight" in gguf_model.weights) == (not tie)
    assert _max_rel_diff(model, gguf_model, sample_ids[_style(arch)]) < 2e-5


def test_llama_export_without_qk_permutation_is_detected(model_factory, sample_ids, tmp_path, monkeypatch):
    """Control for the test above: skipping the llama q/k reordering gives clearly wrong logits."""
    spec = archs.ARCHS["LlamaForCausalLM"]
    monkeypatch.setitem(archs.ARCHS, "LlamaForCausalLM", replace(spec, permute_qk=False))
    folder, model, _ = model_factory("llama", False)
    out = tmp_path / "unpermuted.gguf"
    export_gguf(folder, out, gguf_type="f32")
    assert _max_rel_diff(model, GGUFModel(out), sample_ids["llama"]) > 0.05


@pytest.mark.parametrize("rope_scaling,arch", [(LLAMA31_ROPE, "llama"),
                                               ({"rope_type": "linear", "factor": 2.0}, "qwen2")])
def test_rope_scaling_round_trips(rope_scaling, arch, model_factory, sample_ids, tmp_path):
    folder, model, _ = model_factory(arch, False, rope_scaling=rope_scaling)
    out = tmp_path / "scaled.gguf"
    export_gguf(folder, out, gguf_type="f32")
    gguf_model = GGUFModel(out)
    assert _max_rel_diff(model, gguf_model, sample_ids[_style(arch)]) < 2e-5
    if rope_scaling["rope_type"] == "llama3":
        # rope_freqs divides the default frequencies into exactly the ones transformers uses.
        head_dim = model.config.head_dim
        default = 10000.0 ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        hf_inv_freq = model.model.rotary_emb.inv_freq.double().numpy()
        np.testing.assert_allclose(default / gguf_model.weights["rope_freqs.weight"], hf_inv_freq, rtol=1e-6)
    else:
        assert gguf_model.kv["qwen2.rope.scaling.type"] == "linear"


def test_yarn_rope_scaling_writes_its_keys(model_factory, tmp_path):
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}
    folder, _, _ = model_factory("qwen2", False, rope_scaling=yarn)
    out = tmp_path / "yarn.gguf"
    export_gguf(folder, out, gguf_type="f16")
    kv = GGUFModel(out).kv
    assert kv["qwen2.rope.scaling.type"] == "yarn"
    assert kv["qwen2.rope.scaling.factor"] == pytest.approx(4.0)
    assert kv["qwen2.rope.scaling.original_context_length"] == 128


@pytest.mark.parametrize("gguf_type,max_kl,min_agreement", [("f16", 2e-5, 0.95), ("bf16", 1e-3, 0.85),
                                                            ("q8_0", 5e-3, 0.8)])
@pytest.mark.parametrize("arch,tie", ARCH_CASES)
def test_16_and_8_bit_exports_agree_with_hf(gguf_type, max_kl, min_agreement, arch, tie, model_factory,
                                            sample_ids, tmp_path):
    folder, model, _ = model_factory(arch, tie)
    out = tmp_path / f"{gguf_type}.gguf"
    export_gguf(folder, out, gguf_type=gguf_type)
    gguf_model = GGUFModel(out)
    ids = [i for seq in sample_ids[_style(arch)] for i in seq]
    kl, agreement = kl_and_agreement(hf_logits(model, ids), gguf_model.logits(ids))
    assert kl < max_kl and agreement >= min_agreement, (kl, agreement)


# relative RMSE of dequantized weights, ~1.5x what gguf.quants gives on Gaussian weights (docs/gguf.md)
REL_RMSE = {"f32": 1e-7, "f16": 1e-3, "bf16": 6e-3, "q8_0": 1.2e-2, "q5_1": 0.06, "q5_0": 0.07, "q4_1": 0.12,
            "q4_0": 0.14}


def _hf_weights_in_gguf_layout(model) -> dict[str, np.ndarray]:
    """HF llama weights renamed to GGUF names, with q/k rows reordered for pair rope (per head)."""
    cfg = model.config
    out = {}
    for name, tensor in model.state_dict().items():
        value = tensor.double().numpy()
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = value
        elif name == "lm_head.weight":
            out["output.weight"] = value
        elif name.startswith("model.layers.0.self_attn.") and name.split(".")[-2] in ("q_proj", "k_proj"):
            heads = cfg.num_attention_heads if "q_proj" in name else cfg.num_key_value_heads
            d = value.shape[0] // heads
            reordered = np.empty_like(value)
            for h in range(heads):
                block = value[h * d:(h + 1) * d]
                reordered[h * d:(h + 1) * d][0::2] = block[: d // 2]
                reordered[h * d:(h + 1) * d][1::2] = block[d // 2:]
            out[f"blk.0.attn_{name.split('.')[-2][0]}.weight"] = reordered
        elif name == "model.layers.0.mlp.down_proj.weight":
            out["blk.0.ffn_down.weight"] = value
        elif name == "model.layers.0.input_layernorm.weight":
            out["blk.0.attn_norm.weight"] = value
    return out


@pytest.mark.parametrize("gguf_type", list(REL_RMSE))
def test_every_type_stores_weights_within_its_precision(gguf_type, model_factory, sample_ids, tmp_path):
    folder, model, _ = model_factory("llama", False)
    out = tmp_path / f"{gguf_type}.gguf"
    info = export_gguf(folder, out, gguf_type=gguf_type)
    gguf_model = GGUFModel(out)
    expected_type = gguf_type.upper()
    low_bit = gguf_type.startswith(("q4", "q5"))
    for name, hf_value in _hf_weights_in_gguf_layout(model).items():
        stored = gguf_model.weights[name]
        rel = np.sqrt(np.mean((stored - hf_value) ** 2) / np.mean(hf_value ** 2))
        if name.endswith("_norm.weight"):
            assert gguf_model.types[name] == "F32" and rel == 0.0
        elif name == "output.weight" and low_bit:  # the head is kept at 8 bits
            assert gguf_model.types[name] == "Q8_0" and rel < REL_RMSE["q8_0"]
        else:
            assert gguf_model.types[name] == expected_type and rel < REL_RMSE[gguf_type], (name, rel)
    assert gguf_model.kv["general.file_type"] == {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_1": 3,
                                                  "q5_0": 8, "q5_1": 9}[gguf_type]
    assert sum(info.tensor_types.values()) == len(gguf_model.weights)
    if low_bit:  # still the same model, if a coarse one
        ids = [i for seq in sample_ids["llama"] for i in seq]
        kl, _ = kl_and_agreement(hf_logits(model, ids), gguf_model.logits(ids))
        assert kl < (0.25 if gguf_type.startswith("q5") else 0.6)


def test_bf16_checkpoint_exports_to_bf16_without_loss(model_factory, sample_ids, tmp_path):
    folder, model, _ = model_factory("qwen3", False, dtype="bfloat16")
    out = tmp_path / "bf16.gguf"
    export_gguf(folder, out, gguf_type="bf16")
    gguf_model = GGUFModel(out)
    np.testing.assert_array_equal(gguf_model.weights["token_embd.weight"],
                                  model.model.embed_tokens.weight.detach().double().numpy())
    # compare with the saved weights widened to float32 (an in-memory .float() would keep bf16-rounded rope buffers)
    import torch
    from transformers import AutoModelForCausalLM

    widened = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    assert _max_rel_diff(widened, gguf_model, sample_ids["qwen"]) < 2e-5


def test_rows_not_divisible_by_the_block_fall_back_to_f16(model_factory, sample_ids, tmp_path):
    folder, model, _ = model_factory("qwen2", False, hidden=48)   # 48 and 120 are not multiples of 32
    out = tmp_path / "q8.gguf"
    info = export_gguf(folder, out, gguf_type="q8_0")
    gguf_model = GGUFModel(out)
    assert gguf_model.types["blk.0.attn_q.weight"] == "F16"
    assert gguf_model.types["blk.0.ffn_down.weight"] == "F16"
    assert any("blk.0.attn_q.weight" in w and "F16" in w for w in info.warnings)
    ids = sample_ids["qwen"][0]
    kl, agreement = kl_and_agreement(hf_logits(model, ids), gguf_model.logits(ids))
    assert kl < 5e-3 and agreement >= 0.8


def test_embedding_rows_beyond_the_tokenizer_get_unique_pad_tokens(model_factory, tmp_path):
    folder, _, tok = model_factory("qwen2", True, extra_rows=8)
    out = tmp_path / "padded.gguf"
    export_gguf(folder, out, gguf_type="f16")
    kv = GGUFModel(out).kv
    tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    assert len(tokens) == len(tok) + 8 == kv["qwen2.vocab_size"]
    assert tokens[len(tok):] == [f"[PAD{i}]" for i in range(len(tok), len(tok) + 8)]
    assert set(types[len(tok):]) == {5}   # UNUSED
    assert len(set(tokens)) == len(tokens)


def test_old_pytorch_bin_checkpoints_export_too(model_factory, sample_ids, tmp_path):
    import shutil

    import torch

    folder, model, _ = model_factory("qwen2", False)
    old = tmp_path / "old"
    shutil.copytree(folder, old, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(model.state_dict(), old / "pytorch_model.bin")
    out = tmp_path / "from-bin.gguf"
    export_gguf(old, out, gguf_type="f32")
    assert _max_rel_diff(model, GGUFModel(out), sample_ids["qwen"]) < 2e-5
