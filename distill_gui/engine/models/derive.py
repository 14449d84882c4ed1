"""A student derived from its teacher: the teacher's own layers, a subset of them (DistilBERT-style)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from distill_gui.engine.models.loading import (
    load_model,
    load_tokenizer,
    published_dtype,
    read_model_config,
    resolve_model,
    save_tokenizer,
)
from distill_gui.errors import ModelError
from distill_gui.events import EventCallback, PhaseProgress, ignore_events


def derive_student(teacher_ref: str, keep_layers: list[int], out_dir: str | os.PathLike, *,
                   trust_remote_code: bool = False, on_event: EventCallback | None = None) -> Path:
    """Write a student made of the teacher's decoder layers ``keep_layers`` as a normal HF folder.

    Embeddings, final norm and LM head are copied; layer ``keep_layers[i]`` of the teacher becomes
    layer ``i`` of the student (DistilBERT-style initialisation). An empty ``keep_layers`` keeps every
    other layer (0, 2, 4, ...). A folder already derived with the same teacher and layers is reused.

    Raises:
        ModelError: a layer index is out of range or repeated, or the layers cannot be found.
    """
    on_event = on_event or ignore_events
    out_dir = Path(out_dir)
    marker = out_dir / "derived_from.json"
    teacher_folder = resolve_model(teacher_ref, trust_remote_code=trust_remote_code, on_event=on_event,
                                   role="teacher")
    n_layers = int(read_model_config(teacher_folder).get("num_hidden_layers") or 0)
    keep = _check_keep_layers(list(keep_layers) or list(range(0, n_layers, 2)), n_layers, teacher_ref)
    wanted = {"teacher": teacher_ref, "keep_layers": keep}
    if marker.is_file() and _read_json(marker) == wanted:
        return out_dir
    on_event(PhaseProgress("derive", 0, 1, "", f"deriving the student from layers {keep} of {teacher_ref}"))
    model = load_model(teacher_folder, dtype=published_dtype(teacher_folder), device="cpu",
                       trust_remote_code=trust_remote_code, ref=teacher_ref, role="teacher")
    _keep_decoder_layers(model, keep, teacher_ref)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    save_tokenizer(load_tokenizer(teacher_folder, trust_remote_code=trust_remote_code, ref=teacher_ref), tmp)
    (tmp / "derived_from.json").write_text(json.dumps(wanted), encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    on_event(PhaseProgress("derive", 1, 1, "", f"student derived: {len(keep)} of {n_layers} layers"))
    return out_dir


def _check_keep_layers(keep: list[int], n_layers: int, teacher_ref: str) -> list[int]:
    bad = [i for i in keep if not 0 <= i < n_layers]
    if bad:
        raise ModelError(f"[student] keep_layers: layer(s) {bad} do not exist; the teacher {teacher_ref} has "
                         f"{n_layers} layers (0 to {n_layers - 1}).")
    if sorted(set(keep)) != keep:
        raise ModelError(f"[student] keep_layers = {keep}: give each layer once, in increasing order.")
    return keep


def _keep_decoder_layers(model, keep: list[int], teacher_ref: str) -> None:
    """Replace the model's decoder-layer list by the kept layers and fix per-layer config entries."""
    import torch.nn as nn

    n_layers = model.config.num_hidden_layers
    candidates = [(name, module) for name, module in model.named_modules()
                  if isinstance(module, nn.ModuleList) and len(module) == n_layers]
    if not candidates:
        raise ModelError(f"teacher {teacher_ref}: cannot find its {n_layers} decoder layers to derive a student.")
    name, layers = max(candidates, key=lambda c: sum(p.numel() for p in c[1].parameters()))
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):  # attention caches are indexed by layer
                module.layer_idx = new_index
    setattr(parent, name.rpartition(".")[2], kept)
    config = model.config
    for key, value in list(config.to_dict().items()):
        if isinstance(value, list) and len(value) == n_layers and key != "architectures":
            setattr(config, key, [value[i] for i in keep])  # per-layer settings, e.g. layer_types
    config.num_hidden_layers = len(keep)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

