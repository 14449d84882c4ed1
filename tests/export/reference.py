"""An independent float64 forward pass over the weights of a GGUF file, as llama.cpp computes it.

It knows nothing of the exporter: it reads the file with ``gguf.GGUFReader``, dequantizes with
``gguf.quants`` and follows llama.cpp's conventions: RMSNorm, q/k/v (+bias), Qwen3 per-head q/k
norms, rope on adjacent pairs ("NORM") for llama and on halves ("NEOX") for qwen2/qwen3, optional
``rope_freqs`` divisors and linear position scaling, grouped-query causal attention, SwiGLU, and
the output head (``output.weight`` or, when absent, the tied ``token_embd.weight``).
"""

from __future__ import annotations

import numpy as np

NEOX_ARCHS = ("qwen2", "qwen3")


class GGUFModel:
    def __init__(self, path) -> None:
        import gguf

        reader = gguf.GGUFReader(str(path))
        self.kv = {name: field.contents() for name, field in reader.fields.items()}
        self.types = {t.name: t.tensor_type.name for t in reader.tensors}
        self.weights = {t.name: self._dequantize(t) for t in reader.tensors}
        self.arch = self.kv["general.architecture"]

    @staticmethod
    def _dequantize(tensor) -> np.ndarray:
        import gguf

        kind = tensor.tensor_type
        if kind in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = np.asarray(tensor.data, dtype=np.float64)
        else:
            data = gguf.quants.dequantize(np.asarray(tensor.data), kind).astype(np.float64)
        return data.reshape(tuple(int(d) for d in reversed(tensor.shape)))

    def hp(self, key: str, default=None):
        return self.kv.get(f"{self.arch}.{key}", default)

    # ---- building blocks -----------------------------------------------------------------------
    def _rms(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        eps = self.hp("attention.layer_norm_rms_epsilon")
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    def _rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: (T, H, D); rotates the first rope.dimension_count dims of each head."""
        n_rot = self.hp("rope.dimension_count")
        theta = self.hp("rope.freq_base")
        freqs = theta ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
        if "rope_freqs.weight" in self.weights:
            freqs = freqs / self.weights["rope_freqs.weight"]
        scale = 1.0
        if self.hp("rope.scaling.type") == "linear":
            scale = 1.0 / self.hp("rope.scaling.factor")
        angles = (positions[:, None] * scale) * freqs[None, :]          # (T, n_rot/2)
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
        out = x.copy()
        if self.arch in NEOX_ARCHS:
            a, b = x[..., : n_rot // 2], x[..., n_rot // 2: n_rot]
            out[..., : n_rot // 2] = a * cos - b * sin
            out[..., n_rot // 2: n_rot] = a * sin + b * cos
        else:
            a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
            out[..., 0:n_rot:2] = a * cos - b * sin
            out[..., 1:n_rot:2] = a * sin + b * cos
        return out

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        y = x @ self.weights[f"{name}.weight"].T
        if f"{name}.bias" in self.weights:
            y = y + self.weights[f"{name}.bias"]
        return y

    def _attention(self, x: np.ndarray, i: int) -> np.ndarray:
        w, T = self.weights, x.shape[0]
        n_head, n_kv = self.hp("attention.head_count"), self.hp("attention.head_count_kv")
        d = self.hp("attention.key_length")
        q = self._linear(x, f"blk.{i}.attn_q").reshape(T, n_head, d)
        k = self._linear(x, f"blk.{i}.attn_k").reshape(T, n_kv, d)
        v = self._linear(x, f"blk.{i}.attn_v").reshape(T, n_kv, d)
        if f"blk.{i}.attn_q_norm.weight" in w:
            q = self._rms(q, w[f"blk.{i}.attn_q_norm.weight"])
            k = self._rms(k, w[f"blk.{i}.attn_k_norm.weight"])
        positions = np.arange(T, dtype=np.float64)
        q, k = self._rope(q, positions), self._rope(k, positions)
        group = n_head // n_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)   # head h uses kv head h // group
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d)
        scores = scores + np.triu(np.full((T, T), -np.inf), 1)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        out = np.einsum("hqk,khd->qhd", probs, v).reshape(T, n_head * d)
        return self._linear(out, f"blk.{i}.attn_output")

    def logits(self, ids: list[int]) -> np.ndarray:
        """(T, n_vocab) float64 logits at every position."""
        w = self.weights
        x = w["token_embd.weight"][np.asarray(ids)]
        for i in range(self.hp("block_count")):
            x = x + self._attention(self._rms(x, w[f"blk.{i}.attn_norm.weight"]), i)
            h = self._rms(x, w[f"blk.{i}.ffn_norm.weight"])
            gate = self._linear(h, f"blk.{i}.ffn_gate")
            x = x + self._linear(gate / (1 + np.exp(-gate)) * self._linear(h, f"blk.{i}.ffn_up"), f"blk.{i}.ffn_down")
        x = self._rms(x, w["output_norm.weight"])
        head = w.get("output.weight", w["token_embd.weight"])
        return x @ head.T


def hf_logits(model, ids: list[int]) -> np.ndarray:
    """(T, vocab) logits of a transformers model, as float64."""
    import torch

    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    return out.double().numpy()


def kl_and_agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Mean KL(softmax(reference) || softmax(other)) per position, and top-1 agreement."""
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = log_softmax(reference), log_softmax(other)
    kl = float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=-1)))
    agree = float(np.mean(reference.argmax(-1) == other.argmax(-1)))
    return kl, agree
