"""The distillation losses: ``distill_loss`` (one call per micro-batch, chunked and fused), what it computes
(``spec``), the chunk kernels (``kernels``, ``fused``, ``liger``) and the float64 reference the tests compare
against (``reference``).
"""

from distill_gui.engine.losses.distill import auto_chunk_tokens, distill_loss
from distill_gui.engine.losses.fused import release_workspace
from distill_gui.engine.losses.spec import IGNORE_INDEX, TAIL_FLOOR, TOP_K_MODES, LossResult, LossSpec

__all__ = ["IGNORE_INDEX", "TAIL_FLOOR", "TOP_K_MODES", "LossResult", "LossSpec", "auto_chunk_tokens",
           "distill_loss", "release_workspace"]
