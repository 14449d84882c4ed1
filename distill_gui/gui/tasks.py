"""The engine calls the pages make from worker threads (Qt-free, engine imported lazily).

Each function is what one TaskWorker runs: it imports the engine on the worker thread, so torch
and transformers load in the background while the window stays responsive.
"""

from __future__ import annotations

from typing import Any

from distill_gui.config import RunConfig, resolve_paths, validate
from distill_gui.events import EventCallback


def inspect(ref: str, *, trust_remote_code: bool = False, on_event: EventCallback | None = None):
    """``engine.models.inspect_model`` (architecture, sizes, vocabulary, chat template)."""
    from distill_gui.engine.models import inspect_model

    return inspect_model(ref, trust_remote_code=trust_remote_code, on_event=on_event)


def tokenizer_verdict(teacher_ref: str, student_ref: str, *, trust_remote_code: bool = False):
    """``engine.models.check_tokenizer_pair``; a student derived from the teacher shares its tokenizer."""
    from distill_gui.engine.models import check_tokenizer_pair

    if student_ref == "teacher":
        student_ref = teacher_ref
    return check_tokenizer_pair(teacher_ref, student_ref, trust_remote_code=trust_remote_code)


def cached_models() -> list:
    """``engine.models.list_cached_models`` (models already in the local HF cache)."""
    from distill_gui.engine.models import list_cached_models

    return list_cached_models()


def plan(cfg: RunConfig, teacher_info: Any = None, student_info: Any = None) -> Any:
    """``engine.planner.plan_memory`` on a copy of the config with its paths resolved.

    The Models page passes the ModelInfo it already has, so planning never inspects twice.
    """
    from distill_gui.engine.models import ModelInfo
    from distill_gui.engine.planner import plan_memory

    cfg = cfg.copy()
    resolve_paths(cfg)
    infos = {k: v for k, v in (("teacher_info", teacher_info), ("student_info", student_info))
             if isinstance(v, ModelInfo)}
    return plan_memory(cfg, **infos)


def preview(cfg: RunConfig, *, limit: int = 20) -> Any:
    """``engine.data.preview_data`` of ``data.train`` with the student's tokenizer and chat template.

    A student derived from the teacher uses the teacher's tokenizer (it is the teacher's).
    """
    from distill_gui.engine.data import preview_data
    from distill_gui.engine.models import load_tokenizer, resolve_model

    cfg = cfg.copy()
    resolve_paths(cfg)
    if cfg.student.model == "teacher":
        ref, trust, role = cfg.teacher.model, cfg.teacher.trust_remote_code, "teacher"
    else:
        ref, trust, role = cfg.student.model, cfg.student.trust_remote_code, "student"
    folder = resolve_model(ref, weights=False, trust_remote_code=trust, role=role)
    tokenizer = load_tokenizer(folder, trust_remote_code=trust, ref=ref)
    return preview_data(cfg.data.train, tokenizer, max_length=cfg.data.max_length, loss_on=cfg.data.loss_on,
                        limit=limit)


def check_runnable(cfg: RunConfig) -> RunConfig:
    """The config a run gets: a copy with resolved paths, checked like the CLI checks a file.

    Raises:
        ConfigError: a model or the data is not set, or another cross-field rule fails.
    """
    cfg = cfg.copy()
    resolve_paths(cfg)
    validate(cfg, source="the form")
    return cfg


def derived_parameters(teacher: Any, keep: int) -> int:
    """Parameters of a student keeping ``keep`` of the teacher's decoder layers (ModelInfo in).

    Embeddings (and the LM head unless tied) stay whole; the decoder layers share the rest evenly.
    """
    layers = max(int(getattr(teacher, "layers", 0) or 0), 1)
    embed = teacher.vocab_rows * teacher.hidden_size * (1 if teacher.tied_embeddings else 2)
    per_layer = max(teacher.parameters - embed, 0) / layers
    return int(embed + per_layer * min(keep, layers))
