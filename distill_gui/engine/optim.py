"""Optimizer and learning-rate schedule of a run.

AdamW (or bitsandbytes' 8-bit AdamW on CUDA) with weight decay on matrices only (not on norms or
biases), and a linear warm-up followed by a cosine, linear or constant schedule. The schedule is a
pure function of the step, so ``LambdaLR``'s state dict (the step count) restores it exactly.
"""

from __future__ import annotations

import math
from typing import Callable

from distill_gui.engine.device import require_bitsandbytes


def lr_factor(step: int, *, warmup: int, total: int, kind: str) -> float:
    """Multiplier of the peak LR for optimizer step ``step`` (0-based).

    Warm-up rises linearly from 1 / (warmup + 1) to 1; then ``cosine`` falls to 0 at ``total``,
    ``linear`` falls straight to 0, ``constant`` stays at 1.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model, train_cfg, device: str):
    """AdamW over the trainable parameters; decay only on tensors with >= 2 dimensions.

    Raises:
        ConfigError: ``adamw_8bit`` outside CUDA or without bitsandbytes.
    """
    import torch

    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if train_cfg.optimizer == "adamw_8bit":
        require_bitsandbytes("[train] optimizer = 'adamw_8bit'", device)
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=train_cfg.lr)
    return torch.optim.AdamW(groups, lr=train_cfg.lr)


def build_scheduler(optimizer, *, warmup: int, total: int, kind: str):
    """A ``LambdaLR`` following :func:`lr_factor`."""
    import torch

    factor: Callable[[int], float] = lambda step: lr_factor(step, warmup=warmup, total=total, kind=kind)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
