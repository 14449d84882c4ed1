"""Models: find, inspect and load teacher and student (``loading``), derive a student from its teacher
(``derive``), and the forward pass the losses use (``forward``).

The names below are the package's API: ``from distill_gui.engine import models as M`` then ``M.load_model``.
"""

from distill_gui.engine.models.derive import derive_student
from distill_gui.engine.models.forward import final_hidden, uses_hidden_path
from distill_gui.engine.models.loading import (
                                               CachedModel,
                                               ModelInfo,
                                               TokenizerVerdict,
                                               apply_lora,
                                               check_tokenizer_pair,
                                               count_parameters_from_files,
                                               estimate_parameters,
                                               hf_cache_dir,
                                               inspect_model,
                                               is_local_ref,
                                               list_cached_models,
                                               load_model,
                                               load_tokenizer,
                                               merged_for_saving,
                                               parameter_count,
                                               published_dtype,
                                               read_model_config,
                                               resolve_model,
                                               save_tokenizer,
                                               unwrap,
)

__all__ = [
    "CachedModel", "ModelInfo", "TokenizerVerdict", "apply_lora", "check_tokenizer_pair",
    "count_parameters_from_files", "derive_student", "estimate_parameters", "final_hidden", "hf_cache_dir",
    "inspect_model", "is_local_ref", "list_cached_models", "load_model", "load_tokenizer", "merged_for_saving",
    "parameter_count", "published_dtype", "read_model_config", "resolve_model", "save_tokenizer", "unwrap",
    "uses_hidden_path",
]
