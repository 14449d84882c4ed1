"""Publish a student: export -> Modelfile -> register into Ollama -> verify, for the CLI, the Export page and
the demo alike.

:func:`register_export` sends an exported GGUF with what its Modelfile says (TEMPLATE, SYSTEM, PARAMETER),
reads the model back, and runs a probe chat that must stop by itself. :func:`publish` is the CLI's
whole flow: it exports, then registers when asked; a registration that fails leaves the files and says
how to register them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill_gui.errors import DistillError
from distill_gui.events import PhaseProgress
from distill_gui.export.modelfile_parse import parse_modelfile, with_from
from distill_gui.export.names import validate_ollama_name
from distill_gui.export.pipeline import ExportResult, check_quantize, export_model, write_modelfile
from distill_gui.ollama import (
    ChatStats,
    OllamaClient,
    OllamaUnavailable,
    RegisterError,
    RegisterResult,
    check_model_name,
    register_model,
)

ProgressCallback = Callable[[PhaseProgress], None]


class ProbeFailed(RegisterError):
    """The model is registered in Ollama, but its probe chat did not stop by itself."""


@dataclass
class Registration:
    """A registration that passed every check: read-back and probe chat."""

    name: str
    host: str
    result: RegisterResult
    probe: ChatStats
    template_checked: bool

    @property
    def stops(self) -> list[str]:
        return list(self.result.info.stop)

    @property
    def warnings(self) -> list[str]:
        return list(self.result.warnings)


def register_export(name: str, gguf_path: str | Path, modelfile_text: str, *, quantize: str | None = None,
                    host: str | None = None, modelfile_path: str | Path | None = None,
                    on_progress: ProgressCallback | None = None) -> Registration:
    """Upload the GGUF, create ``name`` from the Modelfile's parts, read it back, and run a probe chat.

    ``modelfile_path``: the Modelfile next to the GGUF is rewritten with ``modelfile_text`` first (the
    user may have edited it after exporting), so the file on disk always says what was registered.

    Raises:
        ExportInputError: The Modelfile text cannot be sent (line named), or the name is not valid.
        OllamaError: Ollama is not running, refused the model, or the read-back differs (RegisterError).
        ProbeFailed: Registered, but the probe chat did not stop by itself (TEMPLATE or stops do not fit).
    """
    gguf_path = Path(gguf_path)
    modelfile_text = with_from(modelfile_text, gguf_path.name)
    parts = parse_modelfile(modelfile_text)
    validate_ollama_name(name)
    check_model_name(name)
    if modelfile_path is not None:
        write_modelfile(Path(modelfile_path), modelfile_text)

    def report(progress: Any) -> None:
        if on_progress is not None:
            on_progress(PhaseProgress(f"register-{progress.stage}", progress.completed or 0, progress.total,
                                      "B" if progress.total else "", progress.message))

    with OllamaClient(host) as client:
        if not client.is_running():
            raise OllamaUnavailable(f"Ollama is not running at {client.host}. Start it (`ollama serve` or the "
                                    f"Ollama app), then register again; the exported files are kept.",
                                    host=client.host)
        result = register_model(client, name, {gguf_path.name: gguf_path}, template=parts.template,
                                system=parts.system, parameters=parts.parameters or None, quantize=quantize,
                                on_progress=report)
        if on_progress is not None:
            on_progress(PhaseProgress("register-probe", 0, None, "", f"probe chat with {name}"))
        probe = client.probe_chat(name)
        host_used = client.host
    if probe.done_reason != "stop":
        raise ProbeFailed(f"{name} is registered in Ollama, but its probe chat did not stop by itself (done_reason "
                          f"{probe.done_reason!r} after {probe.eval_count} tokens): the TEMPLATE or the stop "
                          f"strings do not fit the model. Fix the Modelfile's TEMPLATE / PARAMETER stop lines and "
                          f"register again, or remove the model (`ollama rm {name}`).",
                          host=host_used, model=name, details=probe.content[:4000])
    return Registration(name=name, host=host_used, result=result, probe=probe,
                        template_checked=parts.template is not None)


@dataclass
class Published:
    """What :func:`publish` did: the export, and the registration or why there is none."""

    export: ExportResult
    quantize: str | None = None
    registration: Registration | None = None
    register_error: str | None = None        # why registering failed (the files are written regardless)
    warnings: list[str] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        return self.registration is not None

    @property
    def register_hint(self) -> str:
        return self.export.register_hint(self.quantize)


def publish(model_dir: str | Path, out_dir: str | Path, *, gguf_type: str = "f16", name: str | None = None,
            system: str | None = None, num_ctx: int | None = None, pre_tokenizer: str | None = None,
            register: bool = False, quantize: str | None = None, host: str | None = None,
            on_progress: ProgressCallback | None = None) -> Published:
    """Export, then (when ``register``) register and probe; see the module docstring.

    Raises:
        ExportInputError: The request is wrong; nothing was written.
        ExportError: Writing failed; no partial file was left.
    """
    quantize = check_quantize(quantize, gguf_type)
    if register and name:   # the client's own name rules too, before anything is written
        check_model_name(validate_ollama_name(name))
    export = export_model(model_dir, out_dir, gguf_type=gguf_type, name=name, system=system, num_ctx=num_ctx,
                          pre_tokenizer=pre_tokenizer, quantize=quantize, on_progress=on_progress)
    done = Published(export, quantize=quantize, warnings=list(export.warnings))
    if not register:
        return done
    try:
        done.registration = register_export(export.name, export.gguf_path, export.modelfile_text, quantize=quantize,
                                            host=host, on_progress=on_progress)
        done.warnings += done.registration.warnings
    except ProbeFailed as exc:
        done.register_error = exc.message
    except OllamaUnavailable as exc:
        done.register_error = (f"Ollama is not running at {exc.host}. The files are written; start Ollama and "
                               f"register them with: {done.register_hint}")
    except DistillError as exc:
        done.register_error = (f"registering {export.name} failed: {exc.message} The files are written; "
                               f"register them later with: {done.register_hint}")
    return done
