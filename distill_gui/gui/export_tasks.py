"""What the Export page runs in its workers (Qt-free; export/ and ollama/ do the work).

Exporting and registering are the pipeline the CLI uses too (``export.export_model`` with the user's
edited Modelfile text, then ``workflows.publish.register_export``: upload, create, read back, a probe chat
that must stop by itself); :func:`export_files` and :func:`register_files` only add Cancel and the
page's result records.

A checkpoint folder (``checkpoints/step-N``) holds weights and config but no tokenizer; it is exported
through a staging folder that links its files next to the tokenizer of the run's ``final/`` or its
student model folder (:func:`stage_checkpoint`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from distill_gui.config import read_toml
from distill_gui.errors import ConfigError, DistillError, ExportInputError
from distill_gui.events import PhaseProgress
from distill_gui.export import GGUF_TYPE_NAMES, build_modelfile, estimate_gguf_size, validate_ollama_name
from distill_gui.export.names import default_model_name, gguf_file_name
from distill_gui.export.pipeline import export_model
from distill_gui.paths import user_data_dir
from distill_gui.runfolder import RunFolder
from distill_gui.workflows.publish import register_export

ProgressCallback = Callable[[PhaseProgress], None]

# Ollama's quantized sizes relative to F16, from llama.cpp's bits per weight (Q4_K_M 4.85, Q4_K_S 4.58,
# Q8_0 8.5): an estimate shown with "≈", the exact size comes from Ollama.
QUANTIZE_BITS = {"q4_K_M": 4.85, "q4_K_S": 4.58, "q8_0": 8.5}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                   "generation_config.json")


class Cancelled(DistillError):
    """The user cancelled the export or the registration."""


class CancelFlag:
    """Set from the GUI thread; the worker's progress callback raises :class:`Cancelled` when set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled; nothing was left half-written.")


# ---- sources -------------------------------------------------------------------------------------------


def stage_checkpoint(checkpoint: Path, run_dir: Path, staging: Path) -> Path:
    """A folder with the checkpoint's weights + config and a tokenizer, for exporting a ``step-N``.

    The tokenizer comes from the run's ``final/``, else from the run's student model when it is a local
    folder. Files are hard-linked (copied where links are impossible), never moved.

    Raises:
        ExportInputError: The checkpoint holds only a LoRA adapter, or no tokenizer can be found.
    """
    if (checkpoint / "adapter_config.json").is_file() and not any(checkpoint.glob("model*.safetensors")):
        raise ExportInputError(f"{checkpoint} holds only a LoRA adapter, not a whole model; export the run's "
                               f"final/ folder (the adapter is merged there).")
    tokenizer_dir = _tokenizer_source(run_dir)
    if tokenizer_dir is None:
        raise ExportInputError(f"{checkpoint} has no tokenizer, and neither has {run_dir / 'final'} or the run's "
                               f"student model folder; export the run's final/ folder instead.")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for source in [p for p in tokenizer_dir.iterdir() if p.name in TOKENIZER_FILES]:
        _link(source, staging / source.name)
    for source in checkpoint.iterdir():
        if source.is_file() and (source.suffix in (".safetensors", ".bin") or source.name.endswith(".json")) \
                and source.name != "state.json":
            _link(source, staging / source.name)
    return staging


def _tokenizer_source(run_dir: Path) -> Path | None:
    candidates = [run_dir / "final"]
    config = _run_config(run_dir)
    student = str(config.get("student", {}).get("model", ""))
    teacher = str(config.get("teacher", {}).get("model", ""))
    if student:
        candidates.append(Path(teacher if student == "teacher" else student).expanduser())
    for folder in candidates:
        if folder.is_dir() and any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
            return folder
    return None


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def default_out_dir(run_dir: Path | None, model_dir: Path) -> Path:
    """``<run>/export`` for a run; ``<user data>/exports/<folder name>`` for any other folder."""
    if run_dir is not None:
        return run_dir / "export"
    return user_data_dir() / "exports" / default_model_name(model_dir)


@dataclass
class SourceInfo:
    """What the Export page needs to know about the chosen model folder."""

    model_dir: Path                      # the folder exported (a staging folder for a checkpoint)
    chosen: Path                         # the folder the user chose (names derive from it)
    run_dir: Path | None
    sizes: dict[str, int | str]          # GGUF type -> bytes, or why it cannot be exported
    base_name: str                       # model name suggested from the run / folder
    installed: list[str]                 # models Ollama has now (for the version tag); empty if down
    trained_ctx: int | None
    export_settings: dict[str, Any]      # the run config's [export] section


def inspect_source(run_dir: Path | None, checkpoint: str, folder: Path | None,
                   host: str | None = None) -> SourceInfo:
    """Resolve a run + checkpoint (or any HF folder) to an exportable folder, its sizes and a name base.

    Raises:
        ExportInputError: The folder has no config.json, or a checkpoint cannot be staged.
    """
    if run_dir is not None:
        chosen = run_dir / "final" if checkpoint == "final" else run_dir / "checkpoints" / checkpoint
        model_dir = chosen if checkpoint == "final" else stage_checkpoint(
            chosen, run_dir, user_data_dir() / "export-staging" / f"{run_dir.name}-{checkpoint}")
    elif folder is not None:
        chosen = model_dir = folder
    else:
        raise ExportInputError("Choose a run or a Hugging Face model folder to export.")
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ExportInputError(f"{chosen} is not a Hugging Face model folder: it has no config.json.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportInputError(f"{config_file} cannot be read: {exc}.") from None
    trained = config.get("max_position_embeddings")
    return SourceInfo(model_dir=model_dir, chosen=chosen, run_dir=run_dir, sizes=type_sizes(model_dir),
                      base_name=default_model_name(chosen), installed=installed_model_names(host),
                      trained_ctx=int(trained) if isinstance(trained, int) else None,
                      export_settings=_run_export_settings(run_dir))


def _run_export_settings(run_dir: Path | None) -> dict[str, Any]:
    section = _run_config(run_dir).get("export", {}) if run_dir is not None else {}
    return dict(section) if isinstance(section, dict) else {}


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.toml as a dict; empty when missing or unreadable."""
    try:
        return read_toml(RunFolder(run_dir).config)[0]
    except ConfigError:
        return {}


# ---- sizes and names -----------------------------------------------------------------------------------


def type_sizes(model_dir: str | Path) -> dict[str, int | str]:
    """GGUF type -> estimated bytes, or the reason the folder cannot be exported at that type."""
    sizes: dict[str, int | str] = {}
    for gguf_type in GGUF_TYPE_NAMES:
        try:
            sizes[gguf_type] = estimate_gguf_size(model_dir, gguf_type)
        except DistillError as exc:
            sizes[gguf_type] = exc.message
    return sizes


def quantized_size(f16_bytes: int, quantize: str) -> int:
    """Approximate size after Ollama quantizes an F16 GGUF to ``quantize``."""
    return int(f16_bytes * QUANTIZE_BITS[quantize] / 16)


def suggest_name(base: str, existing: list[str]) -> str:
    """``base:vN`` with N one above the highest ``vN`` tag of ``base`` among ``existing`` model names."""
    base = base.split(":", 1)[0]
    versions = [int(m.group(1)) for name in existing
                if (m := re.fullmatch(re.escape(base.lower()) + r":v(\d+)", name.lower()))]
    return f"{base}:v{max(versions, default=0) + 1}"


def installed_model_names(host: str | None = None) -> list[str]:
    """Names Ollama has now; empty when it is not reachable (a suggestion must not fail)."""
    from distill_gui.ollama import OllamaClient, OllamaError

    try:
        with OllamaClient(host, timeout=3.0, connect_timeout=1.0) as client:
            return [entry.name for entry in client.list_models()]
    except OllamaError:
        return []


def preview_modelfile(model_dir: str | Path, name: str, *, system: str | None, num_ctx: int | None) -> Any:
    """``build_modelfile`` for the GGUF the export will write (an ExportInputError for a bad name)."""
    validate_ollama_name(name)
    return build_modelfile(model_dir, gguf_file_name(name), system=system or None, num_ctx=num_ctx)


# ---- the Modelfile text --------------------------------------------------------------------------------


















# ---- export and register -------------------------------------------------------------------------------


@dataclass
class ExportedFiles:
    name: str
    gguf_path: Path
    modelfile_path: Path
    size: int
    seconds: float
    gguf_type: str
    warnings: list[str]


def export_files(model_dir: str | Path, out_dir: str | Path, *, gguf_type: str, name: str, modelfile_text: str,
                 quantize: str | None = None, cancel: CancelFlag | None = None,
                 on_event: ProgressCallback | None = None) -> ExportedFiles:
    """``export_model`` with the user's Modelfile text, cancellable (no partial file is left).

    Raises:
        ExportInputError: Bad input; nothing was written.
        ExportError: Writing failed; no partial file was left.
        Cancelled: ``cancel`` was set; no partial file was left.
    """
    result = export_model(model_dir, out_dir, gguf_type=gguf_type, name=name, modelfile_text=modelfile_text,
                          quantize=quantize, on_progress=_cancellable(cancel, on_event))
    return ExportedFiles(result.name, result.gguf_path, result.modelfile_path, result.gguf.nbytes,
                         result.gguf.seconds, gguf_type, list(result.warnings))


@dataclass
class RegisterOutcome:
    """A registration that passed every check: read-back and probe chat."""

    name: str
    host: str
    template_checked: bool
    stops: list[str]
    uploaded: int               # bytes sent (0 when Ollama had the blob already)
    statuses: list[str]
    probe_reply: str
    probe_seconds: float
    quantization: str
    warnings: list[str]


def register_files(name: str, gguf_path: str | Path, modelfile_text: str, *, quantize: str | None = None,
                   host: str | None = None, modelfile_path: str | Path | None = None,
                   cancel: CancelFlag | None = None, on_event: ProgressCallback | None = None) -> RegisterOutcome:
    """``register_export`` (upload, create, read back, probe chat), cancellable; see workflows/publish.py."""
    done = register_export(name, gguf_path, modelfile_text, quantize=quantize, host=host,
                           modelfile_path=modelfile_path, on_progress=_cancellable(cancel, on_event))
    result = done.result
    return RegisterOutcome(name=name, host=done.host, template_checked=done.template_checked, stops=done.stops,
                           uploaded=result.bytes_uploaded, statuses=list(result.statuses),
                           probe_reply=done.probe.content.strip(), probe_seconds=done.probe.total_s,
                           quantization=result.info.quantization_level, warnings=done.warnings)


def _cancellable(cancel: CancelFlag | None, on_event: ProgressCallback | None) -> ProgressCallback:
    """A progress callback that raises Cancelled once ``cancel`` is set (the pipeline then cleans up)."""
    def progress(event: PhaseProgress) -> None:
        if cancel is not None:
            cancel.check()
        if on_event is not None:
            on_event(event)

    return progress
