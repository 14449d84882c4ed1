"""Architectures the exporter knows: HF config -> GGUF hyper-parameters, HF tensor names -> GGUF names.

Supported: LlamaForCausalLM, MistralForCausalLM (written as GGUF ``llama``), Qwen2ForCausalLM and
Qwen3ForCausalLM. The traps this module handles (see docs/gguf.md):

- llama.cpp's ``llama`` arch rotates adjacent pairs (GGML "NORM" rope) while HF rotates halves, so
  q/k rows (and biases) are reordered inside each head. Qwen2/Qwen3 use "NEOX" rope: no reordering.
- Llama-3.1/3.2 ``rope_type: llama3`` needs a ``rope_freqs.weight`` tensor of per-frequency divisors.
- Tied embeddings: no ``output.weight``; llama.cpp reuses ``token_embd.weight``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distill_gui.errors import ExportInputError


@dataclass(frozen=True)
class ArchSpec:
    """How one HF architecture maps onto a GGUF architecture."""

    hf_class: str
    gguf_arch: str
    permute_qk: bool          # reorder q/k rows from HF half-rotation to GGML pair-rotation
    qk_norm: bool = False     # per-head RMSNorm on q and k (Qwen3)


ARCHS = {
    "LlamaForCausalLM": ArchSpec("LlamaForCausalLM", "llama", permute_qk=True),
    "MistralForCausalLM": ArchSpec("MistralForCausalLM", "llama", permute_qk=True),
    "Qwen2ForCausalLM": ArchSpec("Qwen2ForCausalLM", "qwen2", permute_qk=False),
    "Qwen3ForCausalLM": ArchSpec("Qwen3ForCausalLM", "qwen3", permute_qk=False, qk_norm=True),
}

# HF per-layer suffix -> GGUF per-layer name (without the "blk.N." prefix).
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_REQUIRED_LAYER = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                   "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_IGNORED_RE = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


@dataclass
class HParams:
    """The hyper-parameters GGUF needs, read from config.json."""

    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int
    rms_eps: float
    rope_theta: float
    tie_embeddings: bool | None       # None: config.json does not say (decided by whether lm_head exists)
    rope_type: str = "default"
    rope: dict[str, Any] = field(default_factory=dict)   # the full rope-scaling dict


def arch_for(config: dict[str, Any], where: str) -> ArchSpec:
    """The ArchSpec for a config, or a clear error naming what is supported."""
    names = config.get("architectures") or []
    name = names[0] if names else f"(model_type {config.get('model_type', '?')!r}, no 'architectures')"
    if name not in ARCHS:
        raise ExportInputError(f"{where}: architecture {name} is not supported for GGUF export. Supported: "
                               f"{', '.join(ARCHS)}.")
    return ARCHS[name]


def read_hparams(config: dict[str, Any], where: str) -> HParams:
    """Hyper-parameters from a HF config dict (transformers 4 and 5 layouts)."""
    try:
        hidden = int(config["hidden_size"])
        n_heads = int(config["num_attention_heads"])
        hp = HParams(
            n_layers=int(config["num_hidden_layers"]),
            hidden=hidden,
            intermediate=int(config["intermediate_size"]),
            n_heads=n_heads,
            n_kv_heads=int(config.get("num_key_value_heads") or n_heads),
            head_dim=int(config.get("head_dim") or hidden // n_heads),
            context_length=int(config.get("max_position_embeddings") or 4096),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=10000.0,
            tie_embeddings=(None if config.get("tie_word_embeddings") is None
                            else bool(config["tie_word_embeddings"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportInputError(f"{where}: config.json lacks or has a bad value for {exc}.") from exc
    act = config.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ExportInputError(f"{where}: hidden_act {act!r} is not supported (GGUF llama/qwen use SiLU).")
    rope = _rope_dict(config)
    hp.rope = rope
    hp.rope_theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    hp.rope_type = str(rope.get("rope_type") or rope.get("type") or "default")
    if hp.rope_type not in ("default", "llama3", "linear", "yarn", "dynamic"):
        raise ExportInputError(f"{where}: rope type {hp.rope_type!r} is not supported (supported: default, "
                               f"llama3, linear, yarn, dynamic).")
    return hp


def _rope_dict(config: dict[str, Any]) -> dict[str, Any]:
    """Merge transformers 5 ``rope_parameters`` and transformers 4 ``rope_scaling``."""
    params = dict(config.get("rope_parameters") or {})
    if "full_attention" in params and isinstance(params["full_attention"], dict):
        params = dict(params["full_attention"])  # per-layer-type layout
    params.update(config.get("rope_scaling") or {})
    return params


def gguf_tensor_name(hf_name: str, n_layers: int) -> str | None:
    """The GGUF name of a HF tensor; None for tensors that are dropped; ExportInputError if unknown."""
    if _IGNORED_RE.search(hf_name):
        return None
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    match = _LAYER_RE.match(hf_name)
    if match and int(match.group(1)) < n_layers and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    return ""  # unknown: the caller collects these into one message


def map_tensor_names(names: list[str], spec: ArchSpec, hp: HParams, where: str) -> dict[str, str]:
    """``{hf_name: gguf_name}`` for every tensor to write, in a stable order; errors name the problem."""
    mapping: dict[str, str] = {}
    unknown = []
    for name in names:
        gguf_name = gguf_tensor_name(name, hp.n_layers)
        if gguf_name == "":
            unknown.append(name)
        elif gguf_name is not None:
            mapping[name] = gguf_name
    if unknown:
        hint = (" They look like unmerged LoRA weights: merge the adapter into the model first."
                if any("lora_" in n or "base_layer" in n for n in unknown) else
                " Remove extra modules (e.g. distillation projections) before saving the model.")
        raise ExportInputError(f"{where}: {len(unknown)} tensor(s) the {spec.hf_class} exporter does not know, "
                               f"e.g. {', '.join(unknown[:3])}.{hint}")
    if hp.tie_embeddings is None:
        hp.tie_embeddings = "lm_head.weight" not in mapping
    if hp.tie_embeddings or "lm_head.weight" not in mapping:
        mapping.pop("lm_head.weight", None)
        if not hp.tie_embeddings:
            raise ExportInputError(f"{where}: lm_head.weight is missing but tie_word_embeddings is false. "
                                   f"Save the model again (or set tie_word_embeddings to true if it is tied).")
    _check_complete(set(mapping.values()), spec, hp, where)
    return dict(sorted(mapping.items(), key=lambda item: _order_key(item[1])))


def _check_complete(names: set[str], spec: ArchSpec, hp: HParams, where: str) -> None:
    needed = ["token_embd.weight", "output_norm.weight"]
    for i in range(hp.n_layers):
        needed += [f"blk.{i}.{n}" for n in _REQUIRED_LAYER]
        if spec.qk_norm:
            needed += [f"blk.{i}.attn_q_norm.weight", f"blk.{i}.attn_k_norm.weight"]
    missing = [n for n in needed if n not in names]
    if missing:
        raise ExportInputError(f"{where}: the checkpoint lacks {len(missing)} tensor(s) a {spec.hf_class} needs, "
                               f"e.g. {', '.join(missing[:3])} (GGUF names). Is the model folder complete?")


def _order_key(gguf_name: str) -> tuple[int, int, str]:
    """token_embd first, then blocks in order, then output_norm/output (llama.cpp's usual order)."""
    if gguf_name.startswith("blk."):
        return (1, int(gguf_name.split(".")[1]), gguf_name)
    return (0 if gguf_name.startswith(("token_embd", "rope_freqs")) else 2, 0, gguf_name)


def permute_for_pair_rope(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k output rows from HF half-rotation to GGML adjacent-pair rotation.

    Inside each head of size D, row ``i`` moves to ``2i`` and row ``i + D/2`` to ``2i + 1``.

    Args:
        rows: Weight (n_heads * D, in_features) or bias (n_heads * D,).
        n_heads: Heads the rows belong to (n_kv_heads for k under GQA).
    """
    head_dim = rows.shape[0] // n_heads
    tail = rows.shape[1:]
    return (rows.reshape(n_heads, 2, head_dim // 2, *tail)
            .swapaxes(1, 2)
            .reshape(rows.shape))


def llama3_rope_factors(hp: HParams) -> np.ndarray:
    """Per-frequency divisors of Llama-3.1 rope scaling, shape (head_dim // 2,), float32.

    llama.cpp divides each rotary frequency by ``rope_freqs[i]``: 1 for short wavelengths, ``factor``
    for long ones, a smooth blend in between (the same schedule transformers applies to inv_freq).
    """
    rope = hp.rope
    try:
        factor = float(rope["factor"])
        low = float(rope.get("low_freq_factor", 1.0))
        high = float(rope.get("high_freq_factor", 4.0))
        old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportInputError(f"llama3 rope scaling lacks or has a bad value for {exc}.") from exc
    inv_freq = 1.0 / hp.rope_theta ** (np.arange(0, hp.head_dim, 2, dtype=np.float64) / hp.head_dim)
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_ctx / wavelen - low) / (high - low)
    factors = 1.0 / ((1 - smooth) / factor + smooth)
    factors = np.where(wavelen < old_ctx / high, 1.0, factors)
    factors = np.where(wavelen > old_ctx / low, factor, factors)
    return factors.astype(np.float32)
