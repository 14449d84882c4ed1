"""Blobs and ``/api/create`` of the Ollama test server (tests/ollama_server.py).

Follows ``server/routes.go`` (HeadBlobHandler, CreateBlobHandler) and ``server/create.go``: the
request is checked before anything is written (400s), then progress lines stream and any later
failure is an ``{"error"}`` line. GGUF files are read with the real ``gguf.GGUFReader``, so the
metadata a model shows (family, parameter size, file type, context length, chat template) is the
metadata the exporter wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tests.ollama_server import (
    _DIGEST,
    _FILE_TYPES,
    _NAME,
    _QUANTIZE_TARGETS,
    CHATML_TEMPLATE,
    LLAMA3_TEMPLATE,
    SAFETENSORS_ARCHITECTURES,
    OllamaTestServer,
    _NDJSONWriter,
    normalize_name,
)

# Bits per weight after quantizing, to shrink the reported size like a real quantization does.
_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q4_K_M": 4.85, "Q4_K_S": 4.6}


class CreateFailure(Exception):
    """A create error: an HTTP status before any output, an ``{"error"}`` line after."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- blobs ------------------------------------------------------------------------------------------------


def handle_blob(handler: Any, method: str, digest: str) -> None:
    server: OllamaTestServer = handler.ollama
    if method == "HEAD":
        handler._record("HEAD", f"/api/blobs/{digest}", None)
        if not _DIGEST.match(digest):
            return handler._error(400, "invalid digest format")
        if _blob_key(digest) in server.blobs:
            return handler._send(200, b"", "text/plain")
        return handler._error(404, f'blob "{digest}" not found')
    if not _DIGEST.match(digest):
        for _ in handler.read_body_chunks():
            pass
        return handler._error(400, "invalid digest format")
    received, actual, path = _receive(handler, server)
    handler._record("POST", f"/api/blobs/{digest}", received)
    key = _blob_key(digest)
    if key in server.blobs:
        path.unlink()
        return handler._send(200, b"", "text/plain")
    if actual != key:
        path.unlink()
        return handler._error(400, f'digest mismatch, expected "{digest}", got "{actual}"')
    final = path.with_name(key.replace(":", "-"))
    os.replace(path, final)
    with server.lock:
        server.blobs[key] = final
    handler._send(201, b"", "text/plain")


def _blob_key(digest: str) -> str:
    return "sha256:" + digest[len("sha256:"):].lower()


def _receive(handler: Any, server: OllamaTestServer) -> tuple[int, str, Path]:
    """Stream the body to a temp file in the blob folder while hashing it."""
    sha = hashlib.sha256()
    received = 0
    fd, name = tempfile.mkstemp(dir=server._blob_dir, prefix="upload-")
    with os.fdopen(fd, "wb") as out:
        for block in handler.read_body_chunks():
            sha.update(block)
            out.write(block)
            received += len(block)
    return received, f"sha256:{sha.hexdigest()}", Path(name)


# -- create -------------------------------------------------------------------------------------------------


def handle_create(handler: Any, body: dict[str, Any]) -> None:
    server: OllamaTestServer = handler.ollama
    name = body.get("model") or body.get("name") or ""
    files = body.get("files") or {}
    if not isinstance(files, dict) or not all(_valid_path(key) for key in files):
        return handler._error(400, "file path must be relative")
    if not _NAME.match(name):
        return handler._error(400, "invalid model name")
    if not body.get("from") and not files:
        return handler._error(400, "neither 'from' or 'files' was specified")
    if files and _detect(files) is None:
        return handler._error(400, "unknown type")
    streaming = body.get("stream", True) is not False
    writer = _NDJSONWriter(handler)
    last: dict[str, Any] = {}
    try:
        for event in _create_events(server, name, body):
            if streaming:
                writer.send(event)
            last = event
    except CreateFailure as failure:
        if streaming and writer.started:
            writer.send({"error": failure.message})
            writer.end()
        else:
            handler._error(failure.status, failure.message)
        return
    if streaming:
        writer.end()
    else:
        handler.json(200, last)


def _valid_path(key: Any) -> bool:
    """Go's fs.ValidPath: relative, slash-separated, no empty, '.' or '..' element."""
    return isinstance(key, str) and bool(key) and all(part not in ("", ".", "..") for part in key.split("/"))


def _detect(files: dict[str, str]) -> str | None:
    for key in files:
        if key.endswith(".safetensors"):
            return "safetensors"
    for key in files:
        if key.endswith((".gguf", ".bin")):
            return "gguf"
    return None


def _create_events(server: OllamaTestServer, name: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    files = body.get("files") or {}
    template = body.get("template") or ""
    system = body.get("system") or ""
    parameters = dict(body.get("parameters") or {})
    if body.get("from"):
        if server.find(body["from"]) is None:
            yield {"status": "pulling manifest"}  # Ollama tries the registry for a name it lacks
        meta, chat_template = _from_model(server, body["from"])
        template = template or meta.pop("template")
        system = system or meta.pop("system")
        parameters = {**meta.pop("parameters"), **parameters}
        yield {"status": f"using existing layer sha256:{meta['digest']}"}
    elif _detect(files) == "gguf":
        meta, chat_template = yield from _read_gguf(server, files)
    else:
        meta, chat_template = yield from _convert_safetensors(server, files)
    yield from _quantize(meta, body.get("quantize") or body.get("quantization"))
    if not template and chat_template:
        detected = _autodetect(chat_template)
        if detected:
            detected_name, template, stops = detected
            parameters.setdefault("stop", stops)
            yield {"status": f"using autodetected template {detected_name}"}
        else:
            template = chat_template  # no Go template: the GGUF's Jinja template is the active one
    elif template and _prefers_jinja(server, template, chat_template):
        template = chat_template  # Ollama >= 0.30 runs (and shows) the GGUF template that can do tools
    yield {"status": "writing manifest"}
    license_text = body.get("license") or ""
    computed = dict(meta, template=template, system=system, parameters=parameters,
                    license="\n".join(license_text) if isinstance(license_text, list) else license_text,
                    reply=f"Hi! I am {normalize_name(name)}, ready to help.",
                    endless=not template)  # no template at all: the documented never-ending output
    computed.pop("name", None)
    server.add_model(name, **{**computed, **server.created_model_defaults})
    yield {"status": "success"}


def _from_model(server: OllamaTestServer, base: str) -> tuple[dict[str, Any], str]:
    source = server.find(base)
    if source is None:  # Ollama would pull it from the registry; the test machine is offline
        raise CreateFailure(f'pull model manifest: Get "https://registry.ollama.ai/v2/library/{base}/manifests/'
                            f'latest": dial tcp: lookup registry.ollama.ai: no such host')
    keep = ("family", "parameter_size", "quantization_level", "format", "context_length", "embedding_length",
            "size", "model_info", "tensors", "digest", "template", "system", "parameters")
    meta = {key: getattr(source, key) for key in keep}
    meta["model_info"] = dict(meta["model_info"] or {})
    meta["parameters"] = dict(meta["parameters"])
    return meta, ""


def _blob_path(server: OllamaTestServer, digest: str) -> Path:
    path = server.blobs.get(_blob_key(digest)) if isinstance(digest, str) and _DIGEST.match(digest) else None
    if path is None:
        hex_part = str(digest).split(":")[-1].split("-")[-1]
        raise CreateFailure(f"open {server._blob_dir}/sha256-{hex_part}: no such file or directory")
    return path


def _read_gguf(server: OllamaTestServer, files: dict[str, str]):
    """Yield parse/validate lines per GGUF file; return (metadata, chat template) of the first one."""
    import gguf

    results = []
    for key in sorted(files):
        yield {"status": "parsing GGUF"}
        path = _blob_path(server, files[key])
        with open(path, "rb") as stream:
            if stream.read(4) != b"GGUF":
                raise CreateFailure("supplied file was not in GGUF format", 400)
        try:
            reader = gguf.GGUFReader(path)
            kv = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
            tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape]}
                       for t in reader.tensors]
            del reader
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a validation failure
            raise CreateFailure(f"failed to validate GGUF with llama-quantize: {exc}") from None
        size = path.stat().st_size
        yield {"status": "validating GGUF model", "digest": files[key], "total": size, "completed": size}
        results.append((kv, tensors, size, files[key]))
    kv, tensors, size, digest = results[0]
    return _gguf_meta(kv, tensors, sum(r[2] for r in results), digest), str(kv.get("tokenizer.chat_template") or "")


def _gguf_meta(kv: dict[str, Any], tensors: list[dict[str, Any]], size: int, digest: str) -> dict[str, Any]:
    arch = str(kv.get("general.architecture") or "")
    file_type = kv.get("general.file_type")
    info = {key: value for key, value in kv.items() if key not in ("general.name", "tokenizer.chat_template")}
    return dict(family=arch, format="gguf", parameter_size=human_number(int(kv.get("general.parameter_count") or 0)),
                quantization_level=_FILE_TYPES.get(file_type, "unknown") if isinstance(file_type, int) else "unknown",
                context_length=int(kv.get(f"{arch}.context_length") or 0),
                embedding_length=int(kv.get(f"{arch}.embedding_length") or 0),
                size=size, model_info=info, tensors=tensors, digest=digest.split(":")[-1])


def _convert_safetensors(server: OllamaTestServer, files: dict[str, str]):
    """Ollama's own converter: config.json decides; only the architectures it knows pass."""
    yield {"status": "converting model"}
    if "config.json" not in files:
        raise CreateFailure("open config.json: file does not exist")
    config = json.loads(_blob_path(server, files["config.json"]).read_text(encoding="utf-8"))
    arch = (config.get("architectures") or ["?"])[0]
    family = SAFETENSORS_ARCHITECTURES.get(arch)
    if family is None:
        raise CreateFailure(f'unsupported architecture "{arch}"')
    chat_template = ""
    if "tokenizer_config.json" in files:  # the converter reads the template only from here
        tokenizer_config = json.loads(_blob_path(server, files["tokenizer_config.json"]).read_text(encoding="utf-8"))
        chat_template = tokenizer_config.get("chat_template") or ""
    parameters = sum(_safetensors_parameters(_blob_path(server, digest))
                     for key, digest in files.items() if key.endswith(".safetensors"))
    context = int(config.get("max_position_embeddings") or 0)
    info = {"general.architecture": family, "general.parameter_count": parameters, "general.file_type": 1,
            f"{family}.context_length": context, f"{family}.embedding_length": int(config.get("hidden_size") or 0)}
    meta = dict(family=family, format="gguf", parameter_size=human_number(parameters), quantization_level="F16",
                context_length=context, embedding_length=int(config.get("hidden_size") or 0), size=parameters * 2,
                model_info=info, tensors=[],
                digest=hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest())
    return meta, chat_template


def _safetensors_parameters(path: Path) -> int:
    with open(path, "rb") as stream:
        header_size = int.from_bytes(stream.read(8), "little")
        header = json.loads(stream.read(header_size))
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for dim in entry["shape"]:
                count *= dim
            total += count
    return total


def _quantize(meta: dict[str, Any], quantize: str | None) -> Iterator[dict[str, Any]]:
    if not quantize:
        return
    target = _QUANTIZE_TARGETS.get(quantize.upper())
    if target is None:
        raise CreateFailure(f"unsupported quantization type {quantize}")
    source = meta["quantization_level"]
    if source not in ("F16", "BF16", "F32"):
        raise CreateFailure("quantization is only supported for F16, BF16 and F32 models")
    if source == target:
        return
    total = int(meta["size"])
    for done in (0, total // 2, total):
        yield {"status": f"quantizing {source} model to {target}", "digest": f"sha256:{meta['digest']}",
               "total": total, "completed": done}
    meta["size"] = int(total * _BITS[target] / _BITS[source])
    meta["quantization_level"] = target
    meta["model_info"] = {**meta["model_info"], "general.file_type": {"Q4_K_M": 15, "Q4_K_S": 14, "Q8_0": 7,
                                                                      "F16": 1, "BF16": 32, "F32": 0}[target]}


def _autodetect(chat_template: str) -> tuple[str, str, list[str]] | None:
    """A stand-in for Ollama's Levenshtein match against its built-in templates (ChatML, Llama 3 only).

    Long templates with tool-calling sections (Qwen2.5/Qwen3) do not match, as in Ollama.
    """
    if "tools" in chat_template:
        return None
    if "<|im_start|>" in chat_template:
        return "chatml", CHATML_TEMPLATE, ["<|im_start|>", "<|im_end|>"]
    if "<|start_header_id|>" in chat_template:
        return "llama3-instruct", LLAMA3_TEMPLATE, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    return None


def _prefers_jinja(server: OllamaTestServer, go_template: str, chat_template: str) -> bool:
    """routes.go shouldUseGoTemplate: since v0.30 a GGUF template with tool support beats a Go one without."""
    newer = tuple(int(p) for p in re.findall(r"\d+", server.version)[:2]) >= (0, 30)
    return newer and "tools" in chat_template and ".Tools" not in go_template


def human_number(count: int) -> str:
    """Ollama's format.HumanNumber: 7615616512 -> "7.6B", 494032768 -> "494.03M"."""
    for scale, suffix, decimals in ((1e9, "B", 1), (1e6, "M", 2)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f}{suffix}" if value == int(value) else f"{value:.{decimals}f}{suffix}"
    if count >= 1e3:
        return f"{count / 1e3:.0f}K"
    return str(count)

