"""One export, as the CLI and the GUI run it: check -> GGUF -> Modelfile -> (register -> probe).

Every input problem (unknown architecture, missing tokenizer, bad name or type, unwritable folder)
is found before anything is written. Files are written to temporary names and renamed when
complete. Registering is the last step: when Ollama is down or refuses the model, the files stay
and the result says how to register them later with ``ollama create``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..engine.events import PhaseProgress
from ..errors import DistillError, ExportError, ExportInputError
from ..paths import write_text_atomic
from .gguf_file import GGUF_TYPE_NAMES, GGUFExportInfo, plan_export, write_gguf
from .modelfile import ModelfileSpec, build_modelfile
from .names import default_model_name, gguf_file_name, validate_ollama_name

OLLAMA_QUANTIZE_TYPES = ("q4_K_M", "q4_K_S", "q8_0")
QUANTIZABLE_SOURCES = ("f16", "bf16")   # Ollama reads general.file_type 0 (F32) as unknown and refuses it

ProgressCallback = Callable[[PhaseProgress], None]


@dataclass
class ExportResult:
    """What an export produced, and what registering did."""

    name: str
    gguf_path: Path
    modelfile_path: Path
    gguf: GGUFExportInfo
    modelfile: ModelfileSpec
    registered: bool = False
    register_result: Any = None            # distill_gui.ollama.RegisterResult
    probe: Any = None                      # distill_gui.ollama.ChatStats of the probe chat
    register_error: str | None = None      # why registering failed (files are written regardless)
    register_hint: str = ""                # the command that registers the files by hand
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Files written, and registered with a probe that stopped by itself when asked to register."""
        return self.register_error is None


def check_quantize(quantize: str | None, gguf_type: str) -> str | None:
    """The canonical Ollama quantization name, or None; ExportInputError when it cannot work."""
    if not quantize:
        return None
    canonical = next((q for q in OLLAMA_QUANTIZE_TYPES if q.lower() == quantize.lower()), None)
    if canonical is None:
        raise ExportInputError(f"--quantize {quantize!r} is not a type Ollama quantizes to; choose one of "
                               f"{', '.join(OLLAMA_QUANTIZE_TYPES)}.")
    if gguf_type not in QUANTIZABLE_SOURCES:
        raise ExportInputError(f"Ollama can only quantize F16 or BF16 GGUF files, not {gguf_type.upper()}; export "
                               f"with --type f16 to use --quantize {canonical}.")
    return canonical


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder if needed and make sure we can write into it (before any real work)."""
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportInputError(f"cannot write into the output folder {out}: {exc.strerror or exc}. Choose a "
                               f"folder you can write to.") from exc
    return out


def export_model(model_dir: str | Path, out_dir: str | Path, *, gguf_type: str = "f16", name: str | None = None,
                 system: str | None = None, num_ctx: int | None = None, pre_tokenizer: str | None = None,
                 register: bool = False, quantize: str | None = None, ollama_host: str | None = None,
                 on_progress: ProgressCallback | None = None) -> ExportResult:
    """Export ``model_dir`` to ``out_dir/<name>.gguf`` + ``out_dir/Modelfile``; optionally register it.

    Args:
        model_dir: HF folder of the student (e.g. a run's ``final/``).
        out_dir: Output folder (created if missing).
        gguf_type: f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1.
        name: Ollama model name (also names the file); default from the folder.
        system: SYSTEM prompt for the Modelfile (default: the chat template's own, if any).
        num_ctx: Context window for the Modelfile (default min(4096, trained context)).
        pre_tokenizer: llama.cpp pre-tokenizer name when it cannot be detected.
        register: Register into Ollama, verify with show, and run a probe chat.
        quantize: Ask Ollama to quantize on create (q4_K_M, q4_K_S, q8_0); needs f16/bf16.
        ollama_host: Ollama URL (default: settings, then OLLAMA_HOST, then 127.0.0.1:11434).
        on_progress: Receives PhaseProgress events: phase "export" (bytes) then "register-<stage>".
            An exception raised from it cancels: while writing, no partial file is left.

    Raises:
        ExportInputError: The request is wrong (exit 2); nothing was written.
        ExportError: Writing failed (exit 1); no partial file was left.
    """
    if gguf_type not in GGUF_TYPE_NAMES:
        raise ExportInputError(f"GGUF type {gguf_type!r} is not supported; choose one of {', '.join(GGUF_TYPE_NAMES)}.")
    name = validate_ollama_name(name) if name else default_model_name(model_dir)
    quantize = check_quantize(quantize, gguf_type)
    if register:   # the client's own name rules too, before anything is written
        from ..ollama import check_model_name

        check_model_name(name)
    plan = plan_export(model_dir, gguf_type, pre_tokenizer=pre_tokenizer)
    out = prepare_out_dir(out_dir)
    gguf_name = gguf_file_name(name)
    spec = build_modelfile(model_dir, gguf_name, system=system, num_ctx=num_ctx)
    info = write_gguf(plan, out / gguf_name, on_progress=on_progress, model_name=name)
    modelfile_path = out / "Modelfile"
    write_modelfile(modelfile_path, spec.text)
    result = ExportResult(name, out / gguf_name, modelfile_path, info, spec,
                          register_hint=_register_hint(name, modelfile_path, quantize),
                          warnings=info.warnings + spec.warnings)
    if register:
        _register(result, quantize, ollama_host, on_progress)
    return result


def write_modelfile(path: Path, text: str) -> Path:
    """Write the Modelfile atomically (temp name, then rename)."""
    try:
        return write_text_atomic(path, text)
    except OSError as exc:
        raise ExportError(f"writing {path} failed: {exc.strerror or exc}. Check the folder's permissions and "
                          f"free space.") from None


def _register_hint(name: str, modelfile: Path, quantize: str | None) -> str:
    return f"ollama create {name} -f {modelfile}" + (f" --quantize {quantize}" if quantize else "")


def _register(result: ExportResult, quantize: str | None, host: str | None,
              on_progress: ProgressCallback | None) -> None:
    """Register, verify and probe; failures are recorded in the result (the files are already written)."""
    from ..ollama import OllamaClient

    def report(progress) -> None:
        if on_progress is not None:
            on_progress(PhaseProgress(f"register-{progress.stage}", progress.completed or 0, progress.total,
                                      "B" if progress.total else "", progress.message))

    try:
        with OllamaClient(host) as client:
            if not client.is_running():
                result.register_error = (f"Ollama is not running at {client.host}. The files are written; start "
                                         f"Ollama and register them with: {result.register_hint}")
                return
            spec = result.modelfile
            result.register_result = client.register_model(
                result.name, {result.gguf_path.name: result.gguf_path}, template=spec.template, system=spec.system,
                parameters=spec.parameters, quantize=quantize, on_progress=report)
            result.warnings += list(result.register_result.warnings)
            if on_progress is not None:
                on_progress(PhaseProgress("register-probe", 0, None, "", f"probe chat with {result.name}"))
            result.probe = client.probe_chat(result.name)
    except DistillError as exc:
        result.register_error = (f"registering {result.name} failed: {exc.message} The files are written; "
                                 f"register them later with: {result.register_hint}")
        return
    if result.probe.done_reason != "stop":
        result.register_error = (f"{result.name} is registered, but its probe chat did not stop by itself "
                                 f"(done_reason {result.probe.done_reason!r}): the chat template or stop strings "
                                 f"do not fit the model. Check the TEMPLATE in {result.modelfile_path}.")
        return
    result.registered = True
