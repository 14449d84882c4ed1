"""One export: check -> GGUF -> Modelfile, as the CLI, the Export page and the demo run it.

Every input problem (unknown architecture, missing tokenizer, bad name or type, a Modelfile text that
cannot be sent, an unwritable folder) is found before anything is written. Files are written to
temporary names and renamed when complete. Registering the result into Ollama is the next step of the
publish workflow (``workflows/publish.py``), which is the one place that joins export/ and ollama/.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from distill_gui.errors import ExportError, ExportInputError
from distill_gui.events import PhaseProgress
from distill_gui.export.gguf_file import GGUF_TYPE_NAMES, GGUFExportInfo, plan_export, write_gguf
from distill_gui.export.modelfile import ModelfileSpec, build_modelfile
from distill_gui.export.modelfile_parse import parse_modelfile, with_from
from distill_gui.export.names import default_model_name, gguf_file_name, validate_ollama_name
from distill_gui.paths import write_text_atomic

OLLAMA_QUANTIZE_TYPES = ("q4_K_M", "q4_K_S", "q8_0")
QUANTIZABLE_SOURCES = ("f16", "bf16")   # Ollama reads general.file_type 0 (F32) as unknown and refuses it
MODELFILE = "Modelfile"

ProgressCallback = Callable[[PhaseProgress], None]


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        modelfile: The generated Modelfile's parts (family, stops, parameters), also when the written
            text is the user's edit of it (``modelfile_text``).
    """

    name: str
    gguf_path: Path
    modelfile_path: Path
    gguf: GGUFExportInfo
    modelfile: ModelfileSpec
    modelfile_text: str
    warnings: list[str] = field(default_factory=list)

    def register_hint(self, quantize: str | None = None) -> str:
        """The command that registers these files by hand."""
        return f"ollama create {self.name} -f {self.modelfile_path}" + (f" --quantize {quantize}" if quantize else "")


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
                 modelfile_text: str | None = None, quantize: str | None = None,
                 on_progress: ProgressCallback | None = None) -> ExportResult:
    """Export ``model_dir`` to ``out_dir/<name>.gguf`` + ``out_dir/Modelfile``.

    Args:
        model_dir: HF folder of the student (e.g. a run's ``final/``).
        out_dir: Output folder (created if missing).
        gguf_type: f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1.
        name: Ollama model name (also names the file); default from the folder.
        system: SYSTEM prompt for the generated Modelfile (default: the chat template's own, if any).
        num_ctx: Context window for the generated Modelfile (default min(4096, trained context)).
        pre_tokenizer: llama.cpp pre-tokenizer name when it cannot be detected.
        modelfile_text: The Modelfile to write instead of the generated one (the Export page's edited
            text); its FROM is pointed at the GGUF, and it must parse (errors name the line).
        quantize: Checked only (Ollama quantizes on create): a type that cannot work fails here,
            before anything is written.
        on_progress: Receives PhaseProgress events of phase "export" (bytes). An exception raised from
            it cancels: no partial file is left.

    Raises:
        ExportInputError: The request is wrong (exit 2); nothing was written.
        ExportError: Writing failed (exit 1); no partial file was left.
    """
    if gguf_type not in GGUF_TYPE_NAMES:
        raise ExportInputError(f"GGUF type {gguf_type!r} is not supported; choose one of {', '.join(GGUF_TYPE_NAMES)}.")
    name = validate_ollama_name(name) if name else default_model_name(model_dir)
    check_quantize(quantize, gguf_type)
    gguf_name = gguf_file_name(name)
    plan = plan_export(model_dir, gguf_type, pre_tokenizer=pre_tokenizer)
    spec = build_modelfile(model_dir, gguf_name, system=system, num_ctx=num_ctx)
    text = spec.text if modelfile_text is None else with_from(modelfile_text, gguf_name)
    parse_modelfile(text)
    out = prepare_out_dir(out_dir)
    info = write_gguf(plan, out / gguf_name, on_progress=on_progress, model_name=name)
    modelfile_path = write_modelfile(out / MODELFILE, text)
    return ExportResult(name, info.path, modelfile_path, info, spec, text, warnings=info.warnings + spec.warnings)


def write_modelfile(path: Path, text: str) -> Path:
    """Write the Modelfile atomically (temp name, then rename)."""
    try:
        return write_text_atomic(path, text)
    except OSError as exc:
        raise ExportError(f"writing {path} failed: {exc.strerror or exc}. Check the folder's permissions and "
                          f"free space.") from None
