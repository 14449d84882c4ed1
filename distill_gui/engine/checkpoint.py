"""Checkpoints: everything needed to continue a run exactly where it stopped.

``<run_dir>/checkpoints/step-N/`` holds

- the student as a Hugging Face folder (``config.json`` + safetensors; for a LoRA student only the
  adapter), so a checkpoint loads with ``from_pretrained`` and converts to GGUF unchanged;
- ``trainer_state.pt``: optimizer, LR scheduler, gradient scaler and RNG states;
- ``state.json``: step, data position (micro-batches used), epoch, elapsed time, the config used.

A checkpoint is written to ``.step-N.tmp`` and renamed when complete, so a process killed while
saving leaves only a temp folder that is ignored and cleaned up later. Which checkpoints count (and
which is the latest) is decided in one place: ``distill_gui/runfolder.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from distill_gui.errors import TrainingError
from distill_gui.paths import write_text_atomic
from distill_gui.runfolder import CHECKPOINT_STATE, TRAINER_STATE, RunFolder, checkpoint_name


def save_checkpoint(run_dir: str | os.PathLike, step: int, *, model, optimizer, scheduler, scaler,
                    state: dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/step-<step>`` atomically and keep only the newest ``keep`` checkpoints.

    Raises:
        TrainingError: the disk is full or the folder cannot be written (the previous checkpoints stay).
    """
    import torch

    folder = RunFolder(run_dir).checkpoints
    final = folder / checkpoint_name(step)
    tmp = folder / f".{checkpoint_name(step)}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        torch.save({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }, tmp / TRAINER_STATE)
        _write_json(tmp / CHECKPOINT_STATE, {**state, "step": step})
        if final.exists():  # the same step saved again (a stop right after a scheduled save)
            old = folder / f".step-{step}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(f"Cannot write the checkpoint {final} ({exc.strerror or exc}). Free disk space and "
                            f"resume the run with --resume; earlier checkpoints are intact.") from None
    prune_checkpoints(run_dir, keep)
    return final


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and leftovers of interrupted saves."""
    for _, path in RunFolder(run_dir).complete_checkpoints()[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    folder = RunFolder(run_dir).checkpoints
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.startswith(".step-"):
                shutil.rmtree(child, ignore_errors=True)


def read_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``state.json``."""
    path = Path(checkpoint) / CHECKPOINT_STATE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Cannot read the checkpoint state {path} ({exc}). Delete that checkpoint folder to "
                            f"resume from the one before it.") from None


def load_trainer_state(checkpoint: str | os.PathLike, *, optimizer, scheduler, scaler) -> None:
    """Restore optimizer, scheduler, scaler and RNG states in place."""
    import torch

    path = Path(checkpoint) / TRAINER_STATE
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: say which one
        raise TrainingError(f"Cannot read {path} ({exc}). Delete that checkpoint folder to resume from the "
                            f"one before it.") from None
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    if scaler is not None and data.get("scaler") is not None:
        scaler.load_state_dict(data["scaler"])
    set_rng_state(data["rng"])


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU, CUDA) random states."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))
