"""The forward pass the losses need: final hidden states + LM head, so logits are projected chunk by chunk."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from distill_gui.engine.models.loading import unwrap

if TYPE_CHECKING:  # torch loads when a model runs, not when the GUI imports this package
    import torch


def final_hidden(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """(N, H) final hidden states and the LM head, or (N, V) logits and None.

    The hidden-state path lets the loss project chunk by chunk; it is used when the model's logits are
    exactly ``head(hidden)`` (checked once per model: no soft-capping or logit scaling).
    """
    lm = unwrap(model)
    if uses_hidden_path(model):
        backbone = getattr(lm, lm.base_model_prefix)
        hidden = backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        return hidden.reshape(-1, hidden.shape[-1]), lm.get_output_embeddings()
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return logits.reshape(-1, logits.shape[-1]), None


_HEAD_CHECKS: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def uses_hidden_path(model) -> bool:
    """True when ``head(backbone(x))`` reproduces the model's logits (checked once per model, on 4 tokens)."""
    if model not in _HEAD_CHECKS:
        _HEAD_CHECKS[model] = _check_hidden_path(model)
    return _HEAD_CHECKS[model]


def _check_hidden_path(model) -> bool:
    import torch

    lm = unwrap(model)
    head = lm.get_output_embeddings()
    backbone = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    if not isinstance(head, torch.nn.Linear) or backbone is None or backbone is lm:
        return False
    device = head.weight.device
    ids = torch.tensor([[1, 2, 3, 4]], device=device) % max(1, head.out_features)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits.float()
            hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
            projected = head(hidden).float()
    except Exception:  # an unusual model: the plain logits path always works
        return False
    finally:
        model.train(was_training)
    return projected.shape == logits.shape and torch.allclose(projected, logits, rtol=1e-3, atol=1e-3)

