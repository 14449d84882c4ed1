"""What the Export page runs in its workers (Qt-free; export/ and ollama/ do the work).

The page lets the user edit the Modelfile, so it cannot hand everything to ``export_model`` (which
writes the Modelfile it generates): :func:`export_files` writes the GGUF with ``export_gguf`` and the
user's Modelfile text, and :func:`register_files` reads TEMPLATE / SYSTEM / PARAMETER back out of that
text (:func:`parse_modelfile`) and registers with the same client calls the CLI uses, then verifies
with a probe chat that must stop by itself.

A checkpoint folder (``checkpoints/step-N``) holds weights and config but no tokenizer; it is exported
through a staging folder that links its files next to the tokenizer of the run's ``final/`` or its
student model folder (:func:`stage_checkpoint`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..engine.events import PhaseProgress
from ..errors import DistillError, ExportInputError
from ..export import GGUF_TYPE_NAMES, build_modelfile, check_quantize, estimate_gguf_size, validate_ollama_name
from ..export.names import default_model_name, gguf_file_name
from ..export.pipeline import write_modelfile
from ..paths import user_data_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ProgressCallback = Callable[[PhaseProgress], None]

# Ollama's quantized sizes relative to F16, from llama.cpp's bits per weight (Q4_K_M 4.85, Q4_K_S 4.58,
# Q8_0 8.5): an estimate shown with "≈", the exact size comes from Ollama.
QUANTIZE_BITS = {"q4_K_M": 4.85, "q4_K_S": 4.58, "q8_0": 8.5}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                   "generation_config.json")
INT_PARAMETERS = frozenset({"top_k", "repeat_last_n", "seed", "num_predict", "num_keep", "num_ctx", "num_batch",
                            "num_gpu", "main_gpu", "num_thread", "draft_num_predict"})
FLOAT_PARAMETERS = frozenset({"temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                              "frequency_penalty"})
BOOL_PARAMETERS = frozenset({"use_mmap"})
LIST_PARAMETERS = frozenset({"stop"})


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


def checkpoint_choices(run_dir: Path) -> list[str]:
    """``final`` (when present) then ``step-N`` checkpoints of a run, newest first."""
    choices = ["final"] if (run_dir / "final" / "config.json").is_file() else []
    steps = []
    folder = run_dir / "checkpoints"
    if folder.is_dir():
        for child in folder.iterdir():
            match = re.fullmatch(r"step-(\d+)", child.name)
            if match and (child / "config.json").is_file():
                steps.append(int(match.group(1)))
    return choices + [f"step-{n}" for n in sorted(steps, reverse=True)]


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
        return tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
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
    from ..ollama import OllamaClient, OllamaError

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


@dataclass
class ModelfileParts:
    """What the create API needs from a Modelfile."""

    from_: str = ""
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s*(.*)$", re.S)


def parse_modelfile(text: str) -> ModelfileParts:
    """Read FROM / TEMPLATE / SYSTEM / PARAMETER lines (values bare, ``"…"`` or ``\"\"\"…\"\"\"``).

    Raises:
        ExportInputError: Naming the line: an unknown instruction or parameter, a value of the wrong
            type, an unclosed quote, no FROM, or an instruction the Register step cannot send
            (ADAPTER, MESSAGE, LICENSE: use ``ollama create`` for those).
    """
    parts = ModelfileParts()
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            raise ExportInputError(f"Modelfile line {number}: {line.strip()!r} is not an instruction.")
        instruction, rest = match.group(1).upper(), match.group(2)
        if rest.lstrip().startswith('"""'):
            value, index = _triple_quoted(lines, index, rest.lstrip()[3:], number)
        else:
            value = _unquote(rest.strip(), number)
        _apply(parts, instruction, value, number)
    if not parts.from_:
        raise ExportInputError("The Modelfile has no FROM line; add FROM ./<model>.gguf (Reset restores it).")
    return parts


def _triple_quoted(lines: list[str], index: int, first: str, number: int) -> tuple[str, int]:
    collected = [first]
    while '"""' not in collected[-1]:
        if index >= len(lines):
            raise ExportInputError(f'Modelfile line {number}: the """ opened here is never closed.')
        collected.append(lines[index])
        index += 1
    joined = "\n".join(collected)
    value, _, tail = joined.partition('"""')
    if tail.strip():
        raise ExportInputError(f'Modelfile line {number}: text after the closing """: {tail.strip()!r}.')
    return value, index


def _unquote(value: str, number: int) -> str:
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise ExportInputError(f"Modelfile line {number}: the quote in {value!r} is not closed.")
        return value[1:-1]
    return value


def _apply(parts: ModelfileParts, instruction: str, value: str, number: int) -> None:
    if instruction == "FROM":
        parts.from_ = value
    elif instruction == "TEMPLATE":
        parts.template = value
    elif instruction == "SYSTEM":
        parts.system = value
    elif instruction == "PARAMETER":
        name, _, raw = value.strip().partition(" ")
        parsed = _parameter_value(name, _unquote(raw.strip(), number), number)
        if name in LIST_PARAMETERS:
            parts.parameters.setdefault(name, []).append(parsed)
        else:
            parts.parameters[name] = parsed
    elif instruction in ("ADAPTER", "MESSAGE", "LICENSE", "REQUIRES", "RENDERER", "PARSER", "DRAFT"):
        raise ExportInputError(f"Modelfile line {number}: {instruction} cannot be sent by Register (it sends FROM, "
                               f"TEMPLATE, SYSTEM and PARAMETER); remove it, or register by hand with "
                               f"`ollama create NAME -f Modelfile`.")
    else:
        raise ExportInputError(f"Modelfile line {number}: unknown instruction {instruction}; the known ones are "
                               f"FROM, TEMPLATE, SYSTEM, PARAMETER, ADAPTER, LICENSE, MESSAGE.")


def _parameter_value(name: str, raw: str, number: int) -> Any:
    try:
        if name in INT_PARAMETERS:
            return int(raw)
        if name in FLOAT_PARAMETERS:
            return float(raw)
        if name in BOOL_PARAMETERS:
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
    except ValueError:
        kind = "a whole number" if name in INT_PARAMETERS else "a number" if name in FLOAT_PARAMETERS else "true/false"
        raise ExportInputError(f"Modelfile line {number}: PARAMETER {name} must be {kind}, not {raw!r}.") from None
    if name in LIST_PARAMETERS:
        if not raw:
            raise ExportInputError(f"Modelfile line {number}: PARAMETER stop needs a value.")
        return raw
    raise ExportInputError(f"Modelfile line {number}: unknown parameter {name!r}. Known: "
                           f"{', '.join(sorted(INT_PARAMETERS | FLOAT_PARAMETERS | BOOL_PARAMETERS | LIST_PARAMETERS))}.")


def with_from(text: str, gguf_name: str) -> str:
    """The Modelfile text with its (first) FROM pointing at ``./<gguf_name>``; a FROM is added if missing."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^\s*FROM\s", line, re.I):
            lines[index] = f"FROM ./{gguf_name}"
            return "\n".join(lines) + "\n"
    return f"FROM ./{gguf_name}\n" + text


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
    """Write ``<out>/<file>.gguf`` and ``<out>/Modelfile`` (the user's text, FROM set to the GGUF).

    Everything is checked before the first byte is written: the name, the quantize choice, the
    Modelfile text, the output folder.

    Raises:
        ExportInputError: Bad input; nothing was written.
        ExportError: Writing failed; no partial file was left.
        Cancelled: ``cancel`` was set; no partial file was left.
    """
    from ..export.gguf_file import plan_export, write_gguf
    from ..export.pipeline import prepare_out_dir

    validate_ollama_name(name)
    check_quantize(quantize, gguf_type)
    gguf_name = gguf_file_name(name)
    text = with_from(modelfile_text, gguf_name)
    parse_modelfile(text)
    plan = plan_export(model_dir, gguf_type)
    out = prepare_out_dir(out_dir)

    def progress(event: PhaseProgress) -> None:
        if cancel is not None:
            cancel.check()
        if on_event is not None:
            on_event(event)

    info = write_gguf(plan, out / gguf_name, on_progress=progress, model_name=name)
    modelfile_path = write_modelfile(out / "Modelfile", text)
    return ExportedFiles(name, info.path, modelfile_path, info.nbytes, info.seconds, gguf_type,
                         list(info.warnings))




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
    """Upload the GGUF, create ``name`` from the Modelfile's parts, read it back, and run a probe chat.

    ``modelfile_path``: the Modelfile next to the GGUF is rewritten with ``modelfile_text`` first (the
    user edited it after exporting), so the file on disk always says what was registered.

    Raises:
        ExportInputError: The Modelfile text cannot be sent (line named).
        OllamaError: Ollama is not running, refused the model, or the read-back differs (RegisterError).
        RegisterError: The probe chat did not stop by itself (a template or stop strings that do not fit).
        Cancelled: ``cancel`` was set.
    """
    from ..ollama import OllamaClient, OllamaUnavailable, RegisterError

    gguf_path = Path(gguf_path)
    modelfile_text = with_from(modelfile_text, gguf_path.name)
    parts = parse_modelfile(modelfile_text)
    validate_ollama_name(name)
    if modelfile_path is not None:
        write_modelfile(Path(modelfile_path), modelfile_text)

    def report(progress: Any) -> None:
        if cancel is not None:
            cancel.check()
        if on_event is not None:
            on_event(PhaseProgress(f"register-{progress.stage}", progress.completed or 0, progress.total,
                                   "B" if progress.total else "", progress.message))

    with OllamaClient(host) as client:
        if not client.is_running():
            raise OllamaUnavailable(f"Ollama is not running at {client.host}. Start it (`ollama serve` or the "
                                    f"Ollama app), then press Register again; the exported files are kept.",
                                    host=client.host)
        result = client.register_model(name, {gguf_path.name: gguf_path}, template=parts.template,
                                       system=parts.system, parameters=parts.parameters or None,
                                       quantize=quantize, on_progress=report)
        if on_event is not None:
            on_event(PhaseProgress("register-probe", 0, None, "", f"probe chat with {name}"))
        probe = client.probe_chat(name)
        host_used = client.host
    if probe.done_reason != "stop":
        raise RegisterError(f"{name} is registered, but its probe chat did not stop by itself (done_reason "
                            f"{probe.done_reason!r} after {probe.eval_count} tokens): the TEMPLATE or the stop "
                            f"strings do not fit the model. Press Reset to restore the generated Modelfile, or fix "
                            f"its TEMPLATE / PARAMETER stop lines, and register again.",
                            host=host_used, model=name, details=probe.content[:4000])
    return RegisterOutcome(name=name, host=host_used, template_checked=parts.template is not None,
                           stops=list(result.info.stop), uploaded=result.bytes_uploaded,
                           statuses=list(result.statuses), probe_reply=probe.content.strip(),
                           probe_seconds=probe.total_s, quantization=result.info.quantization_level,
                           warnings=list(result.warnings))
