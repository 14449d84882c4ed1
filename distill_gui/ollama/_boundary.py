"""The one place where failures from httpx, the ``ollama`` package and the server become OllamaErrors.

Every request and every stream of :class:`~distill_gui.ollama.client.OllamaClient` runs inside
:func:`translate` (streams call :func:`convert`, its core, directly). Which raw exception means what
(docs/ollama.md):

- ``httpx.ConnectError`` (streams) or the builtin ``ConnectionError`` (the ``ollama`` package's
  non-streaming calls): nothing listens -> :class:`OllamaUnavailable`.
- ``httpx.TimeoutException``: -> :class:`OllamaTimeout`.
- ``ollama.ResponseError`` with a status >= 400, or our own responses with one: -> :func:`status_error`.
- ``ollama.ResponseError`` with status -1: an ``{"error": ...}`` line after HTTP 200 -> :class:`OllamaStreamError`.
- ``httpx.RemoteProtocolError`` / ``ReadError``: the server went away mid-reply -> :class:`OllamaStreamError`.
- A line that is not JSON, or JSON of the wrong shape: -> :class:`OllamaStreamError`.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import httpx
import ollama
import pydantic

from distill_gui.ollama.errors import (
    ModelNotFound,
    OllamaError,
    OllamaInputError,
    OllamaRequestError,
    OllamaStreamError,
    OllamaTimeout,
    OllamaUnavailable,
)


@contextmanager
def translate(host: str, action: str, *, model: str | None = None, timeout: float | None = None,
              ) -> Iterator[None]:
    """Run the body; re-raise anything it raises as the matching :class:`OllamaError`.

    Args:
        host: The server URL, named in every message.
        action: What was being done, as a gerund phrase ("listing models", "chatting").
        model: The model involved, if any.
        timeout: The timeout in force, quoted in the timeout message.
    """
    try:
        yield
    except Exception as exc:
        converted = convert(exc, host, action, model=model, timeout=timeout)
        if converted is exc:
            raise
        raise converted from None


def convert(exc: Exception, host: str, action: str, *, model: str | None = None,
            timeout: float | None = None) -> Exception:
    """The :class:`OllamaError` for ``exc``; ``exc`` itself if it is one already or is no I/O failure.

    (Streams call this directly in their ``except`` clause: a context manager per chunk costs more.)
    """
    if isinstance(exc, OllamaError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        if exc.status_code == -1:
            return stream_error_line(str(exc.error), host, action, model)
        return status_error(exc.status_code, str(exc.error), host, action, model)
    if isinstance(exc, httpx.TimeoutException):
        return _timeout(exc, host, action, model, timeout)
    if isinstance(exc, (httpx.ConnectError, ConnectionError)):
        return OllamaUnavailable(
            f"Ollama is not running at {host} - start it with `ollama serve` (or open the Ollama app), "
            f"or point the app at the right address (Settings, --ollama-host or OLLAMA_HOST).",
            host=host, model=model, details=repr(exc))
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return OllamaStreamError(
            f"The connection to Ollama at {host} broke while {action}{_for(model)}. The server may have "
            f"crashed or been stopped: check that `ollama serve` is still running and look at its log.",
            host=host, model=model, details=repr(exc))
    if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError)):
        return OllamaStreamError(
            f"Ollama at {host} sent a reply the app cannot read while {action}{_for(model)}. "
            f"Is that address really an Ollama server (>= 0.12)?",
            host=host, model=model, details=str(exc))
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return OllamaInputError(
            f"The Ollama address {host!r} is not a valid URL: use e.g. http://127.0.0.1:11434.",
            host=host, model=model, details=repr(exc))
    if isinstance(exc, httpx.HTTPError):
        return OllamaError(f"Talking to Ollama at {host} failed while {action}{_for(model)}: {exc}.",
                           host=host, model=model, details=repr(exc))
    return exc


def status_error(status: int, server_message: str, host: str, action: str,
                 model: str | None = None) -> OllamaRequestError:
    """The error for an HTTP error status the server answered before any output."""
    text = server_message.strip() or f"HTTP {status}"
    common = dict(status_code=status, server_message=server_message, host=host, model=model)
    if status == 404 and model and "not found" in text.lower():
        return ModelNotFound(
            f"Model '{model}' is not installed in Ollama at {host}. Check the name with `ollama list`, "
            f"or download it with `ollama pull {model}`.", **common)
    if status == 404:
        return OllamaRequestError(
            f"Ollama at {host} does not know this request ({text}) while {action}. Is that address an "
            f"Ollama server, and is it recent enough (>= 0.12)? Update Ollama if it is older.", **common)
    if status == 403:
        return OllamaRequestError(
            f"Ollama at {host} refused the request (403 Forbidden) while {action}: it only accepts local "
            f"host names and allowed origins. Dial it as 127.0.0.1 or localhost, or set OLLAMA_HOST / "
            f"OLLAMA_ORIGINS on the server.", **common)
    if status == 503:
        return OllamaRequestError(
            f"Ollama at {host} is busy (its request queue is full) while {action}: {text}. "
            f"Try again in a moment.", **common)
    if status >= 500:
        return OllamaRequestError(
            f"Ollama at {host} failed while {action}{_for(model)}: {text}. Check the server's log "
            f"(the `ollama serve` output) for the cause; a model that does not fit in memory is common.",
            **common)
    return OllamaRequestError(f"Ollama at {host} rejected the request while {action}{_for(model)}: {text}.",
                              **common)


def stream_error_line(server_message: str, host: str, action: str, model: str | None) -> OllamaStreamError:
    """The error for an ``{"error": ...}`` line after the HTTP 200 (the stream had started)."""
    return OllamaStreamError(
        f"Ollama reported an error while {action}{_for(model)}: {server_message.strip()}. "
        f"The server's log (`ollama serve` output) has the details.",
        server_message=server_message, host=host, model=model, details=server_message)


def _timeout(exc: httpx.TimeoutException, host: str, action: str, model: str | None,
             timeout: float | None) -> OllamaTimeout:
    limit = f" within {timeout:g} s" if timeout else " in time"
    if isinstance(exc, httpx.ConnectTimeout):
        message = (f"Could not connect to Ollama at {host}{limit}. Check the address and that the "
                   f"server is reachable (firewall, VPN).")
    else:
        message = (f"Ollama at {host} did not answer{limit} while {action}{_for(model)}. A big model may "
                   f"still be loading or the machine is busy: try again, or raise the timeout.")
    return OllamaTimeout(message, host=host, model=model, details=repr(exc))


def _for(model: str | None) -> str:
    return f" with model '{model}'" if model else ""
