"""Register a model into Ollama from local files: blobs, create, read-back check.

The flow (docs/ollama.md), what ``ollama create -f Modelfile`` does, minus the Modelfile:

1. check the name and the file keys before anything is sent;
2. sha256 each file, ``HEAD /api/blobs/<digest>``, and ``POST`` only the blobs the server lacks
   (progress in bytes; 201 created, 200 already there, 400 digest mismatch);
3. ``POST /api/create`` with ``files`` (key -> digest), ``template``, ``system``, ``parameters``,
   ``quantize``, streaming its status lines (never the removed ``modelfile`` field);
4. ``POST /api/show`` and compare the template, system prompt and every parameter sent (``stop``
   above all) with what the server now reports; a difference is a :class:`RegisterError` (except
   Ollama choosing the GGUF's own Jinja template over TEMPLATE, which is a warning).
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from distill_gui.ollama.client import OllamaClient
from distill_gui.ollama.errors import BlobDigestMismatch, OllamaInputError, OllamaStreamError, RegisterError
from distill_gui.ollama.types import ModelInfo, RegisterProgress, RegisterResult

CHUNK_BYTES = 1 << 20  # 1 MiB: progress granularity, and how much of a file sits in memory at once

_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"(?:[A-Za-z0-9][A-Za-z0-9_.:-]{{0,349}}/)?(?:{_PART}/)?{_PART}(?::{_PART})?")

ProgressFn = Callable[[RegisterProgress], None]


def check_model_name(name: str, host: str = "") -> None:
    """Raise :class:`OllamaInputError` unless ``name`` is ``[host/][namespace/]model[:tag]`` as Ollama accepts it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise OllamaInputError(
            f"{name!r} is not a valid Ollama model name. Use [namespace/]name[:tag] made of letters, digits, "
            f"'_', '-' and '.', e.g. my-student:latest.", host=host, model=str(name))


def check_file_key(key: str, host: str = "") -> None:
    """Raise unless ``key`` is a relative forward-slash path without ``.``/``..`` parts (Go's fs.ValidPath)."""
    parts = key.split("/") if isinstance(key, str) else [""]
    if not key or "\\" in key or any(part in ("", ".", "..") for part in parts):
        raise OllamaInputError(
            f"File name {key!r} cannot be sent to Ollama: use a relative path with forward slashes and no "
            f"'.' or '..' parts, e.g. 'model.gguf'.", host=host)


def register_model(client: OllamaClient, name: str, files: Mapping[str, str | Path], *,
                   template: str | None = None, system: str | None = None,
                   parameters: Mapping[str, Any] | None = None, quantize: str | None = None,
                   on_progress: ProgressFn | None = None) -> RegisterResult:
    """Upload files as blobs (only missing ones), create the model, and check what landed.

    Args:
        name: ``[namespace/]name[:tag]``; an existing model of that name is replaced.
        files: Relative forward-slash name -> local path, e.g. ``{"student.gguf": Path(...)}``;
            a ``*.gguf`` key makes a GGUF import, ``*.safetensors`` keys a conversion.
        template: A Go template (TEMPLATE); None keeps the GGUF's own chat template.
        system: Default system prompt.
        parameters: e.g. ``{"stop": ["<|im_end|>"], "num_ctx": 4096, "temperature": 0.7}``.
        quantize: ``q4_K_M``, ``q4_K_S``, ``q8_0``... (the source must be F16/BF16/F32).
        on_progress: Called with :class:`RegisterProgress` while hashing, uploading and creating;
            an exception raised from it aborts the registration.

    Raises:
        OllamaInputError: Bad name, bad file key or a missing file (nothing was sent).
        RegisterError: Create failed, or the read-back template / parameters differ from what was sent.
    """
    report = on_progress or (lambda progress: None)
    paths = _checked_files(name, files, client.host)
    parameters = {key: value for key, value in (parameters or {}).items() if value is not None} or None
    digests: dict[str, str] = {}
    uploaded: list[str] = []
    skipped: list[str] = []
    sent_bytes = 0
    for key, path in paths.items():
        digests[key] = digest_file(path, key, report)
        if upload_blob(client, key, path, digests[key], report):
            uploaded.append(key)
            sent_bytes += path.stat().st_size
        else:
            skipped.append(key)
    statuses = create_model(client, name, digests, template=template, system=system, parameters=parameters,
                            quantize=quantize, report=report)
    report(RegisterProgress("verify", f"checking what Ollama stored for {name}"))
    info = client.show(name)
    warnings = verify_registration(info, client.host, template=template, system=system, parameters=parameters)
    return RegisterResult(name=name, digests=digests, uploaded=tuple(uploaded), skipped=tuple(skipped),
                          bytes_uploaded=sent_bytes, statuses=tuple(statuses), info=info,
                          warnings=tuple(_warnings(statuses, template) + warnings))


def _checked_files(name: str, files: Mapping[str, str | Path], host: str) -> dict[str, Path]:
    check_model_name(name, host)
    if not files:
        raise OllamaInputError("No files to register: give at least the model's .gguf file.", host=host, model=name)
    paths = {}
    for key, path in files.items():
        check_file_key(key, host)
        path = Path(path)
        if not path.is_file():
            raise OllamaInputError(f"Cannot register {name}: the file {path} does not exist (or is not a file).",
                                   host=host, model=name)
        paths[key] = path
    return paths


def digest_file(path: Path, key: str, report: ProgressFn) -> str:
    """``sha256:<hex>`` of the file, reading it in 1 MiB pieces with progress."""
    total = path.stat().st_size
    sha = hashlib.sha256()
    done = 0
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK_BYTES):
            sha.update(block)
            done += len(block)
            report(RegisterProgress("hash", f"checking {key}", key, done, total))
    return f"sha256:{sha.hexdigest()}"


def upload_blob(client: OllamaClient, key: str, path: Path, digest: str, report: ProgressFn) -> bool:
    """Send the file as blob ``digest`` unless the server has it. Returns True if it was sent."""
    total = path.stat().st_size
    if client.has_blob(digest):
        report(RegisterProgress("upload", f"{key} is already on the server", key, total, total))
        return False

    def pieces():
        sent = 0
        with open(path, "rb") as stream:
            while block := stream.read(CHUNK_BYTES):
                yield block
                sent += len(block)
                report(RegisterProgress("upload", f"uploading {key}", key, sent, total))

    report(RegisterProgress("upload", f"uploading {key}", key, 0, total))
    try:
        client.push_blob(digest, pieces(), total, what=path.name)
    except BlobDigestMismatch as exc:
        raise RegisterError(
            f"{path} changed while it was being uploaded to Ollama at {client.host} (digest mismatch). Make "
            f"sure nothing writes to it, then register again.", host=client.host, details=exc.details) from None
    return True


def create_model(client: OllamaClient, name: str, digests: Mapping[str, str], *, template: str | None,
                 system: str | None, parameters: Mapping[str, Any] | None, quantize: str | None,
                 report: ProgressFn) -> list[str]:
    """``POST /api/create`` and follow its progress lines; returns the status lines in order."""
    statuses: list[str] = []
    report(RegisterProgress("create", f"creating {name}"))
    try:
        for status, completed, total in client.create(name, digests, template=template, system=system,
                                                      parameters=parameters, quantize=quantize):
            statuses.append(status)
            report(RegisterProgress("create", status, None, completed, total))
    except OllamaStreamError as exc:
        if exc.server_message is None:  # the connection broke: that message already says what to do
            raise
        server_message = exc.server_message
        raise RegisterError(
            f"Ollama at {client.host} could not create model '{name}': {server_message.strip()}. "
            f"{_create_hint(server_message)}", host=client.host, model=name, details=server_message) from None
    if "success" not in statuses:
        raise RegisterError(f"Ollama at {client.host} stopped creating model '{name}' without reporting success "
                            f"(last status: {statuses[-1] if statuses else 'none'}). Try again; the server's log "
                            f"has the details.", host=client.host, model=name)
    return statuses


def _create_hint(message: str) -> str:
    text = message.lower()
    if "unsupported architecture" in text:
        return "Ollama's own converter does not know this architecture: register a GGUF file instead."
    if "quantization is only supported" in text:
        return "Only F16, BF16 or F32 files can be quantized by Ollama: export F16, or register without quantize."
    if "gguf" in text:
        return ("The GGUF file does not load in this Ollama's llama.cpp: update Ollama, or check the export "
                "(architecture, tokenizer).")
    if "no such file" in text or "not found" in text:
        return "A blob the request names is missing on the server: register again to upload it."
    return "The server's log (`ollama serve` output) has the details."


def verify_registration(info: ModelInfo, host: str, *, template: str | None, system: str | None,
                        parameters: Mapping[str, Any] | None) -> list[str]:
    """Compare what was sent with ``/api/show``; raise :class:`RegisterError` listing every difference.

    One difference is not an error: Ollama >= 0.30 may run the GGUF's own Jinja chat template instead
    of the TEMPLATE sent, when that template offers more (tool calls); ``/api/show`` then reports the
    Jinja text. That template is the one the model was trained with, so this returns a warning and
    leaves the verdict to the probe chat.

    Returns:
        Warnings for the user (possibly empty).
    """
    problems, warnings = [], []
    if template is not None and info.template.strip() != template.strip():
        if _is_jinja(info.template) and not _is_jinja(template):
            warnings.append(f"Ollama runs '{info.name}' with the chat template inside the GGUF instead of the "
                            f"TEMPLATE sent (it prefers it when it supports more, e.g. tools); check the probe "
                            f"chat's answer.")
        else:
            problems.append("the chat template differs from the one sent")
    if system and info.system.strip() != system.strip():
        problems.append(f"the system prompt is {info.system[:80]!r}, not {system[:80]!r}")
    for key, sent in (parameters or {}).items():
        if not _same_parameter(sent, info.parameters.get(key)):
            problems.append(f"parameter {key} is {info.parameters.get(key)!r}, not {sent!r}")
    if problems:
        details = (f"template sent:\n{template}\n\ntemplate stored:\n{info.template}\n\n"
                   f"parameters stored:\n{info.parameters_text}")
        raise RegisterError(
            f"Model '{info.name}' was created in Ollama at {host}, but what it reports back differs from what "
            f"was sent: {'; '.join(problems)}. Chats with it would likely be garbled or never stop. Compare with "
            f"`ollama show {info.name} --modelfile`.", host=host, model=info.name, details=details)
    return warnings


def _is_jinja(template: str) -> bool:
    return "{%" in template or "{{ message" in template or "messages[" in template


def _same_parameter(sent: Any, stored: Any) -> bool:
    if stored is None:
        return False
    if isinstance(sent, (list, tuple)) or isinstance(stored, list):
        sent_items = list(sent) if isinstance(sent, (list, tuple)) else [sent]
        stored_items = stored if isinstance(stored, list) else [stored]
        return sorted(map(str, sent_items)) == sorted(map(str, stored_items))
    if isinstance(sent, bool) or isinstance(stored, bool):
        return sent == stored
    if isinstance(sent, (int, float)) and isinstance(stored, (int, float)):
        return math.isclose(float(sent), float(stored), rel_tol=1e-6, abs_tol=1e-12)
    return str(sent) == str(stored)


def _warnings(statuses: list[str], template: str | None) -> list[str]:
    warnings = []
    for status in statuses:
        if status.startswith("using autodetected template") and template is None:
            warnings.append(f"Ollama {status[len('using '):]} for the GGUF's chat template; check that its stop "
                            f"tokens match the ones the model was trained with.")
    return warnings
