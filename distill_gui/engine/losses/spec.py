"""What a distillation loss computes (``LossSpec``) and what it returns (``LossResult``).

Dependency-free on purpose: the kernels, the fused loss, the float64 reference and Liger's probe all
read these, and nothing here reads them back. The definitions are in ``losses/distill.py``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from distill_gui.config import LOSSES

if TYPE_CHECKING:
    from distill_gui.config import DistillConfig

#: Floor of the teacher's remaining probability mass in ``tail`` mode (log of 0 is not a number).
TAIL_FLOOR = 1e-8


IGNORE_INDEX = -100


TOP_K_MODES = ("renorm", "tail")


@dataclass(frozen=True)
class LossSpec:
    """What to compute: the divergence and its settings (see the module docstring)."""

    loss: str = "forward_kl"
    temperature: float = 2.0
    alpha: float = 0.9
    beta: float = 0.5
    skew: float = 0.1
    top_k: int = 0
    top_k_mode: str = "renorm"
    chunk_tokens: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("alpha", "beta", "skew"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.top_k < 0 or self.chunk_tokens < 0:
            raise ValueError("top_k and chunk_tokens must be >= 0")
        if self.top_k_mode not in TOP_K_MODES:
            raise ValueError(f"top_k_mode must be renorm or tail, got {self.top_k_mode!r}")

    @classmethod
    def from_config(cls, distill: "DistillConfig") -> "LossSpec":
        """The spec of a RunConfig's [distill] section."""
        return cls(loss=distill.loss, temperature=float(distill.temperature), alpha=float(distill.alpha),
                   beta=float(distill.beta), skew=float(distill.skew), top_k=int(distill.top_k),
                   top_k_mode=distill.top_k_mode, chunk_tokens=int(distill.chunk_tokens))


@dataclass
class LossResult:
    """The result of one call.

    Attributes:
        loss: scalar to backward(): alpha * kd + (1 - alpha) * ce (ce alone for loss "ce").
        kd: detached scalar, the T^2-scaled KD term with the same normalisation.
        ce: detached scalar, the hard-label cross-entropy (T = 1), same normalisation.
        agree: detached scalar, counted tokens where student and teacher argmax agree (NaN for "ce").
        n_tokens: counted tokens (labels != -100) in this call.
    """

    loss: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor
    agree: torch.Tensor
    n_tokens: int

