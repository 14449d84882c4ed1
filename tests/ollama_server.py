"""A loopback Ollama server for tests: a real socket, threads, chunked NDJSON streaming.

It answers as docs/ollama.md documents and Ollama's ``server/routes.go`` / ``create.go`` behave, so the
real ``ollama`` and httpx code runs end to end against it:

- ``GET/HEAD /`` ("Ollama is running"), ``/api/version``, ``/api/tags``, ``POST /api/show``, ``GET /api/ps``
- ``POST /api/chat`` and ``/api/generate``: streaming (chunked NDJSON, one object per line) or not;
  durations in nanoseconds; ``logprobs`` / ``top_logprobs`` (0-20) in Ollama's shape; ``think``
  (a thinking model thinks unless told ``think: false``; ``think: true`` on another model is a 400);
  empty messages/prompt load the model (``done_reason: "load"``), with ``keep_alive: 0`` unload it;
  options ``num_predict`` (-> ``"length"``) and ``stop`` (-> ``"stop"``), merged over the model's parameters.
- ``HEAD/POST /api/blobs/sha256:<hex>`` with digest checking (200 present, 404 absent; 201 created,
  200 already there, 400 mismatch or bad digest).
- ``POST /api/create`` from ``files`` (GGUF read with ``gguf.GGUFReader``, or safetensors + config.json)
  or ``from``; progress lines; failures as ``{"error"}`` lines after the 200, as Ollama does.
- ``DELETE /api/delete``, ``POST /api/copy``; unknown paths answer Go's ``404 page not found``.

Errors before any output are HTTP statuses with ``{"error": ...}``; after the first line they are a
final ``{"error": ...}`` line (the HTTP 200 stays).

Usage (the ``ollama_server`` fixture in tests/conftest.py yields a started server)::

    server.add_model("teacher:7b", reply="Paris is the capital of France.")
    server.add_model("thinker", thinking="Let me think.", reply="42")
    server.add_model("slow", token_delay=0.02, load_delay=0.3)     # slow model
    server.add_model("flaky", fail_after=3)         # {"error"} line after 3 tokens, HTTP 200 kept
    server.add_model("crashy", die_after=3)        # connection cut after 3 tokens (no chunk terminator)
    server.add_model("broken", load_error="model requires more system memory")   # HTTP 500
    server.add_model("rambler", endless=True)      # never stops by itself: done_reason "length"
    server.add_model("student", template=GO_TEMPLATE, parameters={"stop": ["<|im_end|>"]})
    client = OllamaClient(server.url)
    ...
    server.requests_to("/api/create")[0].body      # what the client sent (JSON; byte count for blobs)
    server.wait_for_stream_end().cancelled          # did the client cut the last reply?
    server.streams[-1].final                        # its done line: counters and ns durations as sent
    server.find("student").parameters               # what a create stored
    server.add_blob(b"...")                         # a blob "already uploaded"
    server.version = "0.12.11"                      # older-server behaviour where it differs
    assert server.errors == []                      # no request crashed a handler

Models made through ``/api/create`` get :attr:`OllamaTestServer.created_model_defaults` as their
behaviour (e.g. ``{"token_delay": 0.01}``, or ``{"template": ...}`` to fake a template that did not
land). Two documented behaviours of real Ollama are simulated: a created model with neither a
TEMPLATE nor a chat template in its GGUF rambles (``endless``), as a model with a wrong template does;
and from 0.30 a GGUF chat template with tool support replaces a Go TEMPLATE without (``/api/show``
then reports the Jinja text). Template auto-detection knows ChatML and Llama 3 only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import select
import shutil
import socket
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.ollama.go_format import go_time, go_value, show_parameters  # noqa: F401 (re-exported)

DEFAULT_REPLY = "Hello! I am a test model and I answer in a few short words."
DEFAULT_VERSION = "0.32.15"  # the behaviour modelled is that of recent releases (docs/ollama.md)
ENDLESS_LIMIT = 200  # tokens an endless model produces when the request sets no num_predict

# Go templates as Ollama stores them for two common families (used by auto-detection below).
CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n")
LLAMA3_TEMPLATE = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
    "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")

# convert/convert.go LoadModelMetadata: the architectures Ollama's own safetensors converter knows (subset).
SAFETENSORS_ARCHITECTURES = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": None, "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": None, "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
    "Phi3ForCausalLM": "phi3", "MixtralForCausalLM": "llama",
}
_FILE_TYPES = {0: "unknown", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 14: "Q4_K_S",
               15: "Q4_K_M", 32: "BF16"}
_QUANTIZE_TARGETS = {"Q4_K_M": "Q4_K_M", "Q4_K": "Q4_K_M", "Q4_K_S": "Q4_K_S", "Q8_0": "Q8_0", "F16": "F16",
                     "BF16": "BF16", "F32": "F32"}
_DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
_NAME_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"^(?:[A-Za-z0-9][A-Za-z0-9_.:-]*/)?(?:{_NAME_PART}/)?{_NAME_PART}(?::{_NAME_PART})?$")
_INT_OPTIONS = {"num_predict", "num_ctx", "top_k", "seed", "num_keep", "repeat_last_n", "num_batch", "num_gpu",
                "num_thread"}
_FLOAT_OPTIONS = {"temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                  "frequency_penalty"}


@dataclass
class FakeModel:
    """One model the server knows, with its metadata and how it behaves in chat/generate.

    Attributes:
        reply: The answer text, or a function of the request's messages (chat) or prompt (generate).
        thinking: Reasoning text emitted before the answer; setting it makes the model thinking-capable.
        token_delay / load_delay: Seconds between tokens / for a cold load (a slow model).
        fail_after: After this many tokens, an ``{"error": fail_message}`` line ends the stream.
        die_after: After this many tokens the server cuts the connection mid-stream.
        load_error: The model fails to load: HTTP 500 before any output.
        endless: The model never stops by itself (``done_reason: "length"``).
        tokens: Splits text into the model's generated tokens (default: word pieces, :func:`tokenize`).
        alternatives: ``(index, token) -> [(text, logprob), ...]``, most likely first: the model's top
            candidates at generated position ``index`` for ``top_logprobs`` (default: the token and
            made-up variants, see :func:`_logprob`).
    """

    name: str
    reply: str | Callable[[Any], str] = DEFAULT_REPLY
    thinking: str | None = None
    template: str = CHATML_TEMPLATE
    system: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization_level: str = "Q4_K_M"
    format: str = "gguf"
    context_length: int = 4096
    embedding_length: int = 2048
    size: int = 807_000_000
    size_vram: int | None = None
    capabilities: list[str] | None = None
    model_info: dict[str, Any] | None = None
    tensors: list[dict[str, Any]] = field(default_factory=list)
    license: str = ""
    token_delay: float = 0.0
    load_delay: float = 0.0
    fail_after: int | None = None
    fail_message: str = "llama runner process has terminated: exit status 2"
    die_after: int | None = None
    load_error: str | None = None
    endless: bool = False
    tokens: Callable[[str], list[str]] | None = None
    alternatives: Callable[[int, str], list[tuple[str, float]]] | None = None
    digest: str = ""
    modified_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        self.name = normalize_name(self.name)
        self.digest = self.digest or hashlib.sha256(self.name.encode()).hexdigest()
        if self.capabilities is None:
            self.capabilities = ["completion"] + (["thinking"] if self.thinking is not None else [])
        if self.model_info is None:
            self.model_info = {"general.architecture": self.family, "general.parameter_count": 1_235_814_400,
                               f"{self.family}.context_length": self.context_length,
                               f"{self.family}.embedding_length": self.embedding_length,
                               "general.file_type": 15, "tokenizer.ggml.model": "gpt2"}

    @property
    def can_think(self) -> bool:
        return "thinking" in (self.capabilities or ())


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any  # parsed JSON, raw bytes for blob uploads, None without a body
    headers: dict[str, str]


@dataclass
class StreamRecord:
    """One chat/generate reply the server produced (for cancellation tests)."""

    model: str
    planned_tokens: int
    sent_tokens: int = 0
    cancelled: bool = False
    finished: bool = False
    final: dict[str, Any] | None = None  # the done line as sent (counters and durations in ns)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


@dataclass
class _Loaded:
    expires_at: datetime
    context_length: int


def normalize_name(name: str) -> str:
    """``x`` -> ``x:latest``; names compare case-insensitively, as Ollama's getExistingName does."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def tokenize(text: str) -> list[str]:
    """Split into word pieces with their leading whitespace (stand-ins for BPE tokens)."""
    return re.findall(r"\s*\S+|\s+$", text)


class OllamaTestServer:
    """The server: start it (or use it as a context manager), add models, point a client at ``url``."""

    def __init__(self, *, version: str = DEFAULT_VERSION) -> None:
        """Start serving on a free loopback port.

        Args:
            version: What /api/version reports. Below 0.30 a Go TEMPLATE always wins at create; from
                0.30 a GGUF chat template with tool support wins over a Go template without.
        """
        self.version = version
        self.models: dict[str, FakeModel] = {}
        self.loaded: dict[str, _Loaded] = {}
        self.blobs: dict[str, Path] = {}
        self.requests: list[RecordedRequest] = []
        self.streams: list[StreamRecord] = []
        self.created_model_defaults: dict[str, Any] = {}
        self.lock = threading.RLock()
        self._blob_dir = Path(tempfile.mkdtemp(prefix="ollama-test-blobs-"))
        self.errors: list[str] = []  # tracebacks of handler bugs (a client hanging up is not one)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.ollama = self  # type: ignore[attr-defined]
        # A short poll interval: shutdown() waits for it, and tests start and stop many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="ollama-test-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- test API -------------------------------------------------------------------------------------

    def add_model(self, name: str, **behaviour: Any) -> FakeModel:
        """Install a model (replacing one of the same name); keyword arguments are :class:`FakeModel` fields."""
        model = FakeModel(name=name, **behaviour)
        with self.lock:
            self.models[model.name.lower()] = model
        return model

    def find(self, name: str) -> FakeModel | None:
        with self.lock:
            return self.models.get(normalize_name(name).lower()) if name else None

    def remove_model(self, name: str) -> None:
        with self.lock:
            self.models.pop(normalize_name(name).lower(), None)
            self.loaded.pop(normalize_name(name).lower(), None)

    def add_blob(self, data: bytes) -> str:
        """Store a blob as if uploaded; returns its ``sha256:<hex>`` digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._blob_dir / digest.replace(":", "-")
        path.write_bytes(data)
        with self.lock:
            self.blobs[digest] = path
        return digest

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests whose path starts with ``path`` (and of ``method`` if given)."""
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path) and (method is None or r.method == method)]

    def wait_for_stream_end(self, timeout: float = 5.0) -> StreamRecord:
        """Wait until the latest reply is finished or cancelled; returns its record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.streams and (self.streams[-1].finished or self.streams[-1].cancelled):
                    return self.streams[-1]
            time.sleep(0.005)
        raise TimeoutError("the test server's last stream did not end")

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._blob_dir, ignore_errors=True)

    def __enter__(self) -> OllamaTestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- state used by the handler --------------------------------------------------------------------

    def mark_loaded(self, model: FakeModel, keep_alive: Any, num_ctx: int | None) -> float:
        """Load the model if it is cold (sleeping ``load_delay``); returns the load time in seconds."""
        key = model.name.lower()
        with self.lock:
            cold = key not in self.loaded or self.loaded[key].expires_at <= _now()
        started = time.perf_counter()
        if cold and model.load_delay:
            time.sleep(model.load_delay)
        context = min(num_ctx or 4096, model.context_length)
        with self.lock:
            self.loaded[key] = _Loaded(_now() + _keep_alive(keep_alive), context)
        return time.perf_counter() - started

    def unload(self, model: FakeModel) -> None:
        with self.lock:
            self.loaded.pop(model.name.lower(), None)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _keep_alive(value: Any) -> timedelta:
    """Ollama's keep_alive: seconds (number), a Go duration string, negative = forever; default 5 minutes."""
    if value is None:
        return timedelta(minutes=5)
    if isinstance(value, str):
        match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", value.strip())
        if not match:
            return timedelta(minutes=5)
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
        value = float(match.group(1)) * scale
    seconds = float(value)
    return timedelta(days=365 * 100) if seconds < 0 else timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------------
# The HTTP side


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys
        import traceback

        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client hung up mid-request: normal in cancellation tests
            return
        self.ollama.errors.append(traceback.format_exc())  # type: ignore[attr-defined]


class _NDJSONWriter:
    """Chunked NDJSON on the handler's socket; the 200 status goes out with the first line."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.started = False

    def send(self, obj: dict[str, Any]) -> bool:
        """Write one line; False if the client has gone away."""
        handler = self.handler
        try:
            if not self.started:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/x-ndjson")
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                self.started = True
            data = json.dumps(obj).encode() + b"\n"
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            return True
        except OSError:
            handler.close_connection = True
            return False

    def end(self) -> None:
        try:
            self.handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.handler.close_connection = True

    def cut(self) -> None:
        """Drop the connection mid-body, as a crashed server would."""
        self.handler.close_connection = True
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def client_gone(self) -> bool:
        """An HTTP/1.1 client sends nothing while it reads a reply: a readable socket means it closed."""
        sock = self.handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked replies, like Go's net/http
    server_version = "ollama-test-server"

    ROUTES = {
        ("GET", "/"): "_root", ("HEAD", "/"): "_root",
        ("GET", "/api/version"): "_version", ("HEAD", "/api/version"): "_version",
        ("GET", "/api/tags"): "_tags", ("HEAD", "/api/tags"): "_tags",
        ("POST", "/api/show"): "_show", ("GET", "/api/ps"): "_ps",
        ("POST", "/api/chat"): "_chat", ("POST", "/api/generate"): "_generate",
        ("POST", "/api/create"): "_create", ("DELETE", "/api/delete"): "_delete", ("POST", "/api/copy"): "_copy",
    }

    def setup(self) -> None:
        super().setup()
        # Go's net package sets TCP_NODELAY; without it, headers + first chunk meet delayed ACKs (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    @property
    def ollama(self) -> OllamaTestServer:
        return self.server.ollama  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routing and bodies ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/blobs/") and method in ("HEAD", "POST"):
            from tests.ollama.fake_create import handle_blob

            return handle_blob(self, method, path[len("/api/blobs/"):])
        raw = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                self._record(method, path, raw)
                return self._error(400, f"invalid character in request body: {exc}")
        self._record(method, path, body)
        name = self.ROUTES.get((method, path))
        if name is None:
            known = any(route_path == path for _, route_path in self.ROUTES) or path.startswith("/api/blobs/")
            text = b"405 method not allowed" if known else b"404 page not found"
            return self._send(405 if known else 404, text, "text/plain")
        if method in ("POST", "DELETE") and not isinstance(body, dict):
            return self._error(400, "missing request body")
        getattr(self, name)(body or {})

    def _record(self, method: str, path: str, body: Any) -> None:
        with self.ollama.lock:
            self.ollama.requests.append(RecordedRequest(method, path, body, dict(self.headers.items())))

    def read_body_chunks(self):
        """Yield the request body in pieces (Content-Length or chunked transfer encoding)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            block = self.rfile.read(min(remaining, 1 << 20))
            if not block:
                return
            remaining -= len(block)
            yield block

    def _read_body(self) -> bytes:
        return b"".join(self.read_body_chunks())

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self.json(status, {"error": message})

    # -- simple endpoints -----------------------------------------------------------------------------

    def _root(self, body: Any) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, body: Any) -> None:
        self.json(200, {"version": self.ollama.version})

    def _tags(self, body: Any) -> None:
        with self.ollama.lock:
            models = sorted(self.ollama.models.values(), key=lambda m: m.modified_at, reverse=True)
        entries = [{"name": m.name, "model": m.name, "modified_at": go_time(m.modified_at), "size": m.size,
                    "digest": m.digest, "capabilities": list(m.capabilities or ()),
                    "details": {**_details(m), "context_length": m.context_length,
                                "embedding_length": m.embedding_length}} for m in models]
        self.json(200, {"models": entries})

    def _show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not name:
            return self._error(400, "model is required")
        model = self.ollama.find(name)
        if model is None:
            return self._error(404, f"model '{name}' not found")
        info = {key: ([] if isinstance(value, list) and len(value) > 5 else value)
                for key, value in (model.model_info or {}).items()}
        response = {"license": model.license, "modelfile": _modelfile(model),
                    "parameters": show_parameters(model.parameters), "template": model.template,
                    "system": model.system, "details": _details(model), "model_info": info,
                    "tensors": model.tensors, "capabilities": list(model.capabilities or ()),
                    "modified_at": go_time(model.modified_at)}
        # Go's omitempty on the string fields
        self.json(200, {key: value for key, value in response.items() if value != "" or key == "model_info"})

    def _ps(self, body: Any) -> None:
        now = _now()
        entries = []
        with self.ollama.lock:
            for key, state in list(self.ollama.loaded.items()):
                model = self.ollama.models.get(key)
                if model is None or state.expires_at <= now:
                    self.ollama.loaded.pop(key)
                    continue
                entries.append({"name": model.name, "model": model.name, "size": model.size,
                                "digest": model.digest, "details": _details(model),
                                "expires_at": go_time(state.expires_at),
                                "size_vram": model.size if model.size_vram is None else model.size_vram,
                                "context_length": state.context_length})
        entries.sort(key=lambda e: e["expires_at"], reverse=True)
        self.json(200, {"models": entries})

    def _delete(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name") or ""
        if not _NAME.match(name):
            return self._error(400, f"name {name!r} is invalid")
        if self.ollama.find(name) is None:
            return self._error(404, f"model '{name}' not found")
        self.ollama.remove_model(name)
        self._send(200, b"", "text/plain")

    def _copy(self, body: dict[str, Any]) -> None:
        source, destination = body.get("source") or "", body.get("destination") or ""
        for label, name in (("source", source), ("destination", destination)):
            if not _NAME.match(name):
                return self._error(400, f'{label} "{name}" is invalid')
        model = self.ollama.find(source)
        if model is None:
            return self._error(404, f'model "{source}" not found')
        copied = FakeModel(**{**model.__dict__, "name": destination, "digest": model.digest,
                              "capabilities": list(model.capabilities or ()),
                              "model_info": dict(model.model_info or {})})
        with self.ollama.lock:
            self.ollama.models[copied.name.lower()] = copied
        self._send(200, b"", "text/plain")

    def _create(self, body: dict[str, Any]) -> None:
        from tests.ollama.fake_create import handle_create

        handle_create(self, body)

    # -- inference ------------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        self._infer(body, chat=True)

    def _generate(self, body: dict[str, Any]) -> None:
        self._infer(body, chat=False)

    def _infer(self, body: dict[str, Any], *, chat: bool) -> None:
        requested = body.get("model") or ""
        top = body.get("top_logprobs") or 0
        if not isinstance(top, int) or not 0 <= top <= 20:
            return self._error(400, "top_logprobs must be between 0 and 20")
        if not requested:
            return self._error(400, "model is required") if chat else self._error(404, "model '' not found")
        model = self.ollama.find(requested)
        if model is None:
            return self._error(404, f"model '{requested}' not found")
        think = body.get("think")
        if model.can_think and think is None:
            think = True  # the server turns thinking on for thinking models
        elif not model.can_think and think not in (None, False, ""):
            return self._error(400, f'"{requested}" does not support thinking')
        if not chat and body.get("raw") and (body.get("template") or body.get("system") or body.get("context")):
            return self._error(400, "raw mode does not support template, system, or context")
        messages = (body.get("messages") or []) if chat else []
        prompt = "" if chat else (body.get("prompt") or "")
        empty = not messages if chat else not prompt
        keep_alive = body.get("keep_alive")
        if empty and keep_alive is not None and _keep_alive(keep_alive) == timedelta(0):
            self.ollama.unload(model)
            return self.json(200, _done_line(requested, chat, "unload"))
        options = {**model.parameters, **(body.get("options") or {})}
        problem = _option_type_error(options)
        if problem:
            return self._error(500, problem)
        if model.load_error:
            return self._error(500, model.load_error)
        started = time.perf_counter()
        load_s = self.ollama.mark_loaded(model, keep_alive, options.get("num_ctx"))
        if empty:
            return self.json(200, _done_line(requested, chat, "load"))
        texts = [str(m.get("content") or "") for m in messages] if chat else [str(body.get("system") or ""), prompt]
        if chat and model.system and (not messages or messages[0].get("role") != "system"):
            texts.insert(0, model.system)
        prompt_tokens = sum(len(tokenize(text)) + 4 for text in texts)
        window = options.get("num_ctx")
        if isinstance(window, int) and 4 < window < prompt_tokens:
            # Ollama shortens an over-long prompt silently (HTTP 200): num_keep tokens stay and about half
            # the window is dropped (llm/llama_server.go); prompt_eval_count shows what was evaluated.
            prompt_tokens = 4 + (window - 4) // 2
        reply = model.reply(messages if chat else prompt) if callable(model.reply) else model.reply
        plan, done_reason = _plan(model, reply, bool(think), options)
        self._run_plan(model, requested, chat, body, plan, done_reason,
                       timing=(started, load_s, prompt_tokens), top=top)

    def _run_plan(self, model: FakeModel, requested: str, chat: bool, body: dict[str, Any],
                  plan: list[tuple[str, str]], done_reason: str, *, timing: tuple[float, float, int],
                  top: int) -> None:
        started, load_s, prompt_tokens = timing
        streaming = body.get("stream", True) is not False
        want_logprobs = bool(body.get("logprobs"))
        writer = _NDJSONWriter(self)
        record = StreamRecord(model.name, len(plan))
        with self.ollama.lock:
            self.ollama.streams.append(record)
        lines: list[dict[str, Any]] = []
        eval_started = time.perf_counter()
        for index, (kind, token) in enumerate(plan):
            if model.die_after is not None and index == model.die_after:
                return writer.cut()
            if model.fail_after is not None and index == model.fail_after:
                return self._fail(writer, model.fail_message, streaming)
            if model.token_delay:
                time.sleep(model.token_delay)
            alternatives = model.alternatives(index, token) if model.alternatives and want_logprobs else None
            line = _token_line(requested, chat, kind, token,
                               _logprob(token, top, alternatives) if want_logprobs else None)
            if streaming and (writer.client_gone() or not writer.send(line)):
                record.cancelled = True
                self.close_connection = True
                return
            lines.append(line)
            record.sent_tokens += 1
        eval_ns = int((time.perf_counter() - eval_started) * 1e9) or 1
        final = _done_line(requested, chat, done_reason)
        final.update(total_duration=int((time.perf_counter() - started) * 1e9), load_duration=int(load_s * 1e9),
                     prompt_eval_count=prompt_tokens, prompt_eval_duration=prompt_tokens * 100_000,
                     eval_count=len(plan), eval_duration=eval_ns)
        if not chat and not body.get("raw"):
            final["context"] = list(range(1, prompt_tokens + 1)) + [zlib.crc32(t.encode()) % 32000 for _, t in plan]
        record.final = final
        if streaming:
            writer.send(final)
            writer.end()
        else:
            self.json(200, _accumulate(final, lines, chat))
        record.ended = time.monotonic()
        record.finished = True

    def _fail(self, writer: _NDJSONWriter, message: str, streaming: bool) -> None:
        if streaming and writer.started:
            writer.send({"error": message})
            writer.end()
        else:  # nothing written yet (or stream=false): a plain HTTP error
            self._error(500, message)


def _details(model: FakeModel) -> dict[str, Any]:
    return {"parent_model": "", "format": model.format, "family": model.family, "families": [model.family],
            "parameter_size": model.parameter_size, "quantization_level": model.quantization_level}


def _modelfile(model: FakeModel) -> str:
    lines = ['# Modelfile generated by "ollama show"', "# To build a new Modelfile based on this, replace FROM with:",
             f"# FROM {model.name}", "", f"FROM /root/.ollama/models/blobs/sha256-{model.digest}"]
    if model.template:
        lines.append(f'TEMPLATE """{model.template}"""')
    if model.system:
        lines.append(f'SYSTEM """{model.system}"""')
    lines += [f"PARAMETER {line}" for line in show_parameters(model.parameters).splitlines()]
    return "\n".join(lines) + "\n"


def _option_type_error(options: dict[str, Any]) -> str | None:
    """A wrongly typed option fails at chat time with a 500 (Options.FromMap), as in Ollama."""
    for key, value in options.items():
        if key in _INT_OPTIONS | _FLOAT_OPTIONS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f'option "{key}" must be of type {"integer" if key in _INT_OPTIONS else "float"}'
        if key == "stop" and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
            return 'option "stop" must be of type array of strings'
    return None


def _plan(model: FakeModel, reply: str, think: bool, options: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The tokens to emit, in order, as (kind, text) with kind "thinking" or "content", and the done reason."""
    split = model.tokens or tokenize
    thinking = split(model.thinking) if model.can_think and think and model.thinking else []
    content = reply
    for stop in options.get("stop") or []:
        if stop and stop in content:
            content = content[:content.index(stop)]
    content_tokens = split(content)
    limit = options.get("num_predict")
    limit = int(limit) if isinstance(limit, (int, float)) and limit >= 0 else None
    if model.endless:
        limit = ENDLESS_LIMIT if limit is None else limit
        base = content_tokens or [" again"]
        content_tokens = [base[i % len(base)] for i in range(max(limit - len(thinking), 0) + 1)]
    plan = [("thinking", t) for t in thinking] + [("content", t) for t in content_tokens]
    if limit is not None and len(plan) > limit:
        return plan[:limit], "length"
    return plan, "stop"


def _logprob(token: str, top: int, alternatives: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    """Ollama's logprob entry for one generated token (``bytes`` = the UTF-8 of the text, as server/logprob.go).

    With ``alternatives`` (the model's candidates, most likely first) the token's own log-probability is
    its entry there (or below the last one when it was sampled from outside the list). Without, a
    deterministic made-up distribution: the token has p in [0.4, 0.95); ``token~i`` variants halve the rest.
    """
    def item(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    if alternatives is not None:
        own = dict(alternatives).get(token, min((lp for _, lp in alternatives), default=0.0) - 1.0)
        entry = item(token, own)
        if top > 0:
            entry["top_logprobs"] = [item(text, lp) for text, lp in alternatives[:top]]
        return entry
    p = 0.4 + 0.55 * ((zlib.crc32(token.encode()) % 1000) / 1000)
    entry = item(token, math.log(p))
    if top > 0:
        entry["top_logprobs"] = [item(token, math.log(p))] + [
            item(f"{token}~{i}", math.log((1 - p) * 0.5 ** i)) for i in range(1, top)]
    return entry


def _token_line(model: str, chat: bool, kind: str, token: str, logprob: dict[str, Any] | None) -> dict[str, Any]:
    text, thinking = (token, "") if kind == "content" else ("", token)
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        line: dict[str, Any] = {"model": model, "created_at": go_time(_now()), "message": message, "done": False}
    else:
        line = {"model": model, "created_at": go_time(_now()), "response": text, "done": False}
        if thinking:
            line["thinking"] = thinking
    if logprob is not None:
        line["logprobs"] = [logprob]
    return line


def _done_line(model: str, chat: bool, reason: str) -> dict[str, Any]:
    line: dict[str, Any] = {"model": model, "created_at": go_time(_now())}
    if chat:
        line["message"] = {"role": "assistant", "content": ""}
    else:
        line["response"] = ""
    line.update(done=True, done_reason=reason)
    return line


def _accumulate(final: dict[str, Any], lines: list[dict[str, Any]], chat: bool) -> dict[str, Any]:
    """stream=false: one object with the text, thinking and logprobs of every line."""
    def text(line: dict[str, Any], key: str) -> str:
        if chat:
            return (line.get("message") or {}).get(key, "")
        return line.get("response" if key == "content" else key, "")

    content = "".join(text(line, "content") for line in lines)
    thinking = "".join(text(line, "thinking") for line in lines)
    result = dict(final)
    if chat:
        result["message"] = {"role": "assistant", "content": content, **({"thinking": thinking} if thinking else {})}
    else:
        result["response"] = content
        if thinking:
            result["thinking"] = thinking
    logprobs = [lp for line in lines for lp in line.get("logprobs", [])]
    if logprobs:
        result["logprobs"] = logprobs
    return result
