"""Training presets for the Train page (Qt-free).

A preset changes only the distill / train / data-length keys it names; models, data files and
export settings stay as the user set them. Values go through ``RunConfig.set``, so a preset can
never produce a config the CLI would reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill_gui.config import RunConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str                  # one sentence, shown as the tooltip
    values: dict[str, Any] = field(default_factory=dict)


PRESETS: tuple[Preset, ...] = (
    Preset(
        "Quick test",
        "A few minutes: 50 steps on short sequences, to see that models, data and memory work.",
        {
            "data.max_length": 256, "distill.loss": "forward_kl", "distill.temperature": 2.0,
            "distill.alpha": 0.9, "distill.top_k": 0,
            "train.max_steps": 50, "train.epochs": 0, "train.batch_size": 2, "train.grad_accum": 1,
            "train.lr": 1e-4, "train.warmup_steps": 5, "train.scheduler": "constant",
            "train.log_every": 5, "train.eval_every": 25, "train.save_every": 50,
            "train.gradient_checkpointing": False,
        },
    ),
    Preset(
        "Balanced",
        "The usual run: forward KL at T = 2 with 10 % hard labels, 1000 steps, cosine schedule.",
        {
            "data.max_length": 1024, "distill.loss": "forward_kl", "distill.temperature": 2.0,
            "distill.alpha": 0.9, "distill.top_k": 0,
            "train.max_steps": 1000, "train.epochs": 0, "train.batch_size": 4, "train.grad_accum": 4,
            "train.lr": 5e-5, "train.warmup_steps": 50, "train.scheduler": "cosine",
            "train.log_every": 10, "train.eval_every": 200, "train.save_every": 200,
            "train.gradient_checkpointing": False,
        },
    ),
    Preset(
        "Max quality",
        "Three epochs of skewed forward KL (DistiLLM) on long sequences, with gradient checkpointing to fit.",
        {
            "data.max_length": 2048, "distill.loss": "skew_forward_kl", "distill.skew": 0.1,
            "distill.temperature": 1.0, "distill.alpha": 0.9, "distill.top_k": 0,
            "train.max_steps": 0, "train.epochs": 3, "train.batch_size": 4, "train.grad_accum": 8,
            "train.lr": 2e-5, "train.warmup_steps": 100, "train.scheduler": "cosine",
            "train.log_every": 10, "train.eval_every": 250, "train.save_every": 250,
            "train.gradient_checkpointing": True,
        },
    ),
)


def preset_by_name(name: str) -> Preset:
    for preset in PRESETS:
        if preset.name == name:
            return preset
    raise KeyError(f"unknown preset {name!r}; presets: {', '.join(p.name for p in PRESETS)}")


def apply_preset(cfg: RunConfig, name: str) -> list[str]:
    """Set the preset's keys on ``cfg``; returns the dotted keys that were set."""
    preset = preset_by_name(name)
    for key, value in preset.values.items():
        cfg.set(key, value, source=f"preset '{name}'")
    return list(preset.values)


def matching_preset(cfg: RunConfig) -> str | None:
    """The name of the preset whose every value ``cfg`` has, else None ("Custom")."""
    for preset in PRESETS:
        if all(cfg.get(key) == value for key, value in preset.values.items()):
            return preset.name
    return None
