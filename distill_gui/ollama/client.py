"""The one client for a local Ollama server (Qt-free).

Built on the official ``ollama`` package where it does the job (chat streams, ps, create, delete,
copy) and on httpx directly where that package falls short (docs/ollama.md): it has no
version(), drops ``name``/``capabilities``/``context_length`` from list, ``system`` from show, and the
``bytes`` of logprobs. Every call runs through :func:`~distill_gui.ollama._boundary.translate`, so only
:class:`~distill_gui.ollama.errors.OllamaError` subclasses come out.

Timeouts are explicit (the ``ollama`` package has none by default):

=================  ===============================================================================
``connect_timeout``  establishing a connection (a refused one fails at once regardless)
``timeout``          whole answer of quick requests: version, list, show, ps, delete, copy, blob HEAD
``stream_timeout``   the longest silence inside a stream: chat/generate (covers loading a big model
                     before the first token), create, and each piece of a blob upload
=================  ===============================================================================
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping, Sequence

import httpx
import ollama

from distill_gui import __version__
from distill_gui.ollama._boundary import status_error, stream_error_line, translate
from distill_gui.ollama._host import is_loopback, resolve_host
from distill_gui.ollama.errors import BlobDigestMismatch, OllamaError, OllamaInputError
from distill_gui.ollama.stream import ChatStream, StreamPart
from distill_gui.ollama.types import ChatStats, LoadedModel, ModelEntry, ModelInfo, TokenLogprob

_METRIC_KEYS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration")


class OllamaClient:
    """A connection to one Ollama server.

    Args:
        host: Server URL or ``host[:port]``. Empty: the app settings' ``ollama_host``, then
            ``OLLAMA_HOST``, then ``http://127.0.0.1:11434``. ``0.0.0.0`` is dialled as 127.0.0.1.
        timeout: Seconds for quick requests.
        stream_timeout: Longest silence, in seconds, inside a streamed reply or upload.
        connect_timeout: Seconds to establish a connection.

    Raises:
        OllamaInputError: The host is not a valid address.
    """

    def __init__(self, host: str | None = None, *, timeout: float = 30.0, stream_timeout: float = 600.0,
                 connect_timeout: float = 5.0) -> None:
        try:
            self.host = resolve_host(host)
        except ValueError as exc:
            raise OllamaInputError(f"The Ollama address {host!r} is not valid ({exc}). Use e.g. "
                                   f"http://127.0.0.1:11434 or localhost:11434.", host=str(host)) from None
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._quick = httpx.Timeout(timeout, connect=connect_timeout)
        self._slow = httpx.Timeout(stream_timeout, connect=connect_timeout)
        # A proxy cannot reach our loopback; httpx would still route through HTTP(S)_PROXY otherwise.
        trust_env = not is_loopback(self.host)
        headers = {"User-Agent": f"distill-gui/{__version__}"}
        # One transport (one connection pool, one TLS context) behind the three clients: building a
        # transport costs ~25 ms, and connections are then reused across them.
        transport = httpx.HTTPTransport()
        common = dict(trust_env=trust_env, transport=transport)
        self._http = httpx.Client(base_url=self.host, timeout=self._quick, headers=headers, **common)
        self._ollama = ollama.Client(host=self.host, timeout=self._quick, **common)
        self._ollama_stream = ollama.Client(host=self.host, timeout=self._slow, **common)

    # -- server ------------------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True if an Ollama server answers at the host (a cheap ``GET /``); never raises."""
        try:
            return self._http.get("/").status_code == 200
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        """The server's version, e.g. ``"0.12.11"``."""
        return str(self._get_json("GET", "/api/version", action="asking the version").get("version", ""))

    # -- models ------------------------------------------------------------------------------------------

    def list_models(self) -> list[ModelEntry]:
        """The installed models, newest first (as the server orders them)."""
        data = self._get_json("GET", "/api/tags", action="listing models")
        return [ModelEntry.from_json(entry) for entry in data.get("models") or ()]

    def show(self, name: str) -> ModelInfo:
        """Template, system prompt, parameters and GGUF metadata of one model.

        Raises:
            ModelNotFound: The model is not installed.
        """
        _check_name_given(name, self.host)
        data = self._get_json("POST", "/api/show", json={"model": name}, action="reading the model's details",
                              model=name)
        return ModelInfo.from_json(name, data)

    def ps(self) -> list[LoadedModel]:
        """The models loaded in memory now, longest time left first."""
        with translate(self.host, "listing loaded models", timeout=self.timeout):
            response = self._ollama.ps()
            return [LoadedModel.from_json(entry.model_dump()) for entry in response.models]

    def delete(self, name: str) -> None:
        """Remove a model (its blobs go when no other model uses them)."""
        _check_name_given(name, self.host)
        with translate(self.host, "deleting the model", model=name, timeout=self.timeout):
            self._ollama.delete(name)

    def copy(self, source: str, destination: str) -> None:
        """Make ``destination`` another name for ``source`` (no data is copied)."""
        _check_name_given(source, self.host)
        _check_name_given(destination, self.host)
        with translate(self.host, f"copying the model to '{destination}'", model=source, timeout=self.timeout):
            self._ollama.copy(source, destination)

    # -- inference ---------------------------------------------------------------------------------------

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], *, options: Mapping[str, Any] | None = None,
             system: str | None = None, think: bool | str | None = None, keep_alive: float | str | None = None,
             logprobs: bool = False, top_logprobs: int | None = None,
             format: str | dict[str, Any] | None = None) -> ChatStream:
        """Stream a chat reply. Nothing is sent until the stream is iterated.

        Args:
            model: An installed model name.
            messages: ``[{"role": "user", "content": "..."}, ...]`` (roles: system, user, assistant, tool).
            options: Per-request options such as ``{"temperature": 0, "num_ctx": 4096, "num_predict": 128}``.
            system: A system prompt put before ``messages``.
            think: For thinking models: False for plain answers (the server turns thinking *on* when
                this is left out), True, or "low"/"medium"/"high". True on a model that cannot think
                is a 400 from the server.
            keep_alive: Seconds (number) or a Go duration ("10m") to keep the model loaded; 0 unloads.
            logprobs, top_logprobs: Per-token log-probabilities and 0-20 alternatives (Ollama >= 0.12.11).
            format: ``"json"`` or a JSON schema for structured output.

        Returns:
            A :class:`ChatStream` of :class:`ChatChunk` items ending with :class:`ChatStats`.
        """
        _check_name_given(model, self.host)
        _check_top_logprobs(top_logprobs, self.host)
        chat_messages = _checked_messages(messages, system, self.host)

        def open_parts() -> Iterator[Any]:
            return self._ollama_stream.chat(
                model=model, messages=chat_messages, stream=True, think=think, logprobs=logprobs or None,
                top_logprobs=top_logprobs, format=format, options=dict(options) if options else None,
                keep_alive=keep_alive)

        return ChatStream(open_parts, _chat_part, host=self.host, model=model, action="chatting",
                          timeout=self.stream_timeout)

    def generate(self, model: str, prompt: str, *, system: str | None = None, template: str | None = None,
                 suffix: str | None = None, raw: bool = False, options: Mapping[str, Any] | None = None,
                 think: bool | str | None = None, keep_alive: float | str | None = None,
                 logprobs: bool = False, top_logprobs: int | None = None,
                 format: str | dict[str, Any] | None = None) -> ChatStream:
        """Stream a completion of ``prompt``; same stream type as :meth:`chat` (``ChatStats.context`` set).

        Sent with httpx directly so that logprobs keep their ``bytes`` (the ``ollama`` package drops
        them), which a black-box teacher needs to line tokens up with a student's vocabulary.
        ``raw=True`` skips the model's template (it cannot be combined with ``template``/``system``).
        """
        _check_name_given(model, self.host)
        _check_top_logprobs(top_logprobs, self.host)
        body = _without_none({
            "model": model, "prompt": prompt, "system": system, "template": template, "suffix": suffix,
            "raw": raw or None, "options": dict(options) if options else None, "think": think,
            "keep_alive": keep_alive, "logprobs": logprobs or None, "top_logprobs": top_logprobs,
            "format": format, "stream": True,
        })
        return ChatStream(lambda: self._ndjson("/api/generate", body, model=model, action="generating"),
                          _generate_part, host=self.host, model=model, action="generating",
                          timeout=self.stream_timeout)

    def probe_chat(self, name: str, prompt: str = "Say hi.", *, max_tokens: int = 256) -> ChatStats:
        """A short chat to check that a model loads and stops by itself.

        A healthy model ends with ``done_reason == "stop"``; ``"length"`` means it ran into
        ``max_tokens`` - typically a wrong template or missing stop tokens (docs/ollama.md).
        """
        stream = self.chat(name, [{"role": "user", "content": prompt}], think=False,
                           options={"num_predict": max_tokens})
        with stream:
            return stream.collect()

    # -- registering -------------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """True if the server already stores the blob ``sha256:<hex>``."""
        with translate(self.host, "checking for an uploaded file", timeout=self.timeout):
            response = self._http.head(f"/api/blobs/{digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise status_error(response.status_code, _error_text(response), self.host, "checking for an uploaded file")

    def push_blob(self, digest: str, pieces: Iterable[bytes], size: int, *, what: str) -> None:
        """``POST /api/blobs/<digest>`` with ``size`` bytes from ``pieces`` (an iterator, read once).

        Raises:
            BlobDigestMismatch: the bytes sent do not hash to ``digest`` (the file changed meanwhile).
            OllamaError: any other failure, naming ``what`` was being sent.
        """
        action = f"uploading {what}"
        with translate(self.host, action, timeout=self.stream_timeout):
            # An explicit Content-Length: httpx would otherwise send a generator chunked.
            response = self._http.post(f"/api/blobs/{digest}", content=pieces,
                                       headers={"Content-Length": str(size)}, timeout=self._slow)
        if response.status_code in (200, 201):
            return
        message = _error_text(response)
        if response.status_code == 400 and "digest mismatch" in message:
            raise BlobDigestMismatch(f"Ollama at {self.host} received {what} with another digest than announced.",
                                     host=self.host, details=message)
        raise status_error(response.status_code, message, self.host, action)

    def create(self, name: str, files: Mapping[str, str], *, template: str | None = None,
               system: str | None = None, parameters: Mapping[str, Any] | None = None,
               quantize: str | None = None) -> Iterator[tuple[str, int | None, int | None]]:
        """``POST /api/create`` with ``files`` (key -> ``sha256:<hex>`` of an uploaded blob), streamed.

        Yields (status, completed, total) per progress line. Connection failures and error lines raise
        the client's errors (an error line from the server: :class:`OllamaStreamError` with its message).
        """
        with translate(self.host, "creating the model", model=name, timeout=self.stream_timeout):
            lines = self._ollama_stream.create(
                model=name, files=dict(files), template=template, system=system,
                parameters=dict(parameters) if parameters else None, quantize=quantize or None, stream=True)
            for line in lines:
                yield line.status or "", line.completed, line.total

    # -- plumbing ----------------------------------------------------------------------------------------

    def _get_json(self, method: str, path: str, *, action: str, json: Any = None,
                  model: str | None = None) -> dict[str, Any]:
        with translate(self.host, action, model=model, timeout=self.timeout):
            response = self._http.request(method, path, json=json)
            if response.status_code >= 400:
                raise status_error(response.status_code, _error_text(response), self.host, action, model)
            data = response.json()
        if not isinstance(data, dict):
            raise OllamaError(f"Ollama at {self.host} sent an unexpected reply while {action}.",
                              host=self.host, model=model, details=response.text[:2000])
        return data

    def _ndjson(self, path: str, body: dict[str, Any], *, model: str | None, action: str) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield the NDJSON lines; an ``{"error"}`` line raises. Closing stops the request."""
        with self._http.stream("POST", path, json=body, timeout=self._slow) as response:
            if response.status_code >= 400:
                response.read()
                raise status_error(response.status_code, _error_text(response), self.host, action, model)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                part = json.loads(line)
                if isinstance(part, dict) and part.get("error"):
                    raise stream_error_line(str(part["error"]), self.host, action, model)
                yield part

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        self._ollama.close()
        self._ollama_stream.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OllamaClient({self.host!r})"


# -- helpers -------------------------------------------------------------------------------------------------


def _chat_part(response: Any) -> StreamPart:
    """One ``ollama.ChatResponse`` -> :class:`StreamPart`."""
    message = response.message
    done = bool(response.done)
    return StreamPart(
        content=(message.content or "") if message else "",
        thinking=(message.thinking or "") if message else "",
        logprobs=tuple(TokenLogprob.from_json(lp) for lp in response.logprobs or ()),
        done=done, done_reason=response.done_reason or "",
        metrics={key: getattr(response, key, None) for key in _METRIC_KEYS} if done else None)


def _generate_part(data: dict[str, Any]) -> StreamPart:
    """One /api/generate line (a dict) -> :class:`StreamPart`."""
    done = bool(data.get("done"))
    context = data.get("context")
    return StreamPart(
        content=data.get("response") or "", thinking=data.get("thinking") or "",
        logprobs=tuple(TokenLogprob.from_json(lp) for lp in data.get("logprobs") or ()),
        done=done, done_reason=data.get("done_reason") or "",
        metrics={key: data.get(key) for key in _METRIC_KEYS} if done else None,
        context=tuple(int(t) for t in context) if done and isinstance(context, list) else None)


def _error_text(response: httpx.Response) -> str:
    """The server's ``{"error": ...}`` text, or the body itself (e.g. Go's "404 page not found")."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return response.text.strip()[:500]


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _check_name_given(name: str, host: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise OllamaInputError("No model name was given. Pick one from `ollama list`.", host=host)


def _check_top_logprobs(top_logprobs: int | None, host: str) -> None:
    if top_logprobs is not None and not 0 <= top_logprobs <= 20:
        raise OllamaInputError(f"top_logprobs must be between 0 and 20 (Ollama's limit), not {top_logprobs}.",
                               host=host)


def _checked_messages(messages: Sequence[Mapping[str, Any]], system: str | None, host: str) -> list[dict[str, Any]]:
    """Copy the messages, check their shape, and put ``system`` first if given."""
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise OllamaInputError(f"Chat message {index} must be a mapping with a 'role' and a 'content', "
                                   f"not {message!r}.", host=host)
        checked.append({key: value for key, value in message.items() if value is not None})
    if system:
        checked.insert(0, {"role": "system", "content": system})
    return checked
