"""Errors raised by the Ollama client, each with a message that tells the user what to do.

Every failure of a request to Ollama surfaces as one of these; nothing from httpx, the ``ollama``
package or pydantic leaks out. The conversion happens in exactly one place,
:func:`distill_gui.ollama._boundary.translate`, which every request and every stream goes through.

Hierarchy::

    DistillError                       (distill_gui.errors)
    └── OllamaError                    exit 1: talking to Ollama failed
        ├── OllamaUnavailable          nothing answers at the host (refused, DNS, reset on connect)
        ├── OllamaTimeout              the server did not answer within the client's timeout
        ├── OllamaRequestError         HTTP status >= 400 before any output (has .status_code)
        │   └── ModelNotFound          404 for a model name            (also a UserInputError, exit 2)
        ├── OllamaStreamError          the stream broke after HTTP 200: an {"error": ...} line,
        │                              the connection dropped, or a line was not JSON
        └── RegisterError              registering a model failed: a local file is unusable,
                                       create did not finish, or the read-back does not match

``OllamaInputError`` (a bad model name or file key, caught before anything is sent) is both an
``OllamaError`` and a ``UserInputError`` (exit 2).
"""

from __future__ import annotations

from distill_gui.errors import EXIT_USER_ERROR, DistillError, UserInputError


class OllamaError(DistillError):
    """Base of every Ollama failure. ``host`` is the server URL, ``model`` the model involved (or None)."""

    def __init__(self, message: str, *, host: str = "", model: str | None = None,
                 details: str | None = None) -> None:
        super().__init__(message, details=details)
        self.host = host
        self.model = model


class OllamaUnavailable(OllamaError):
    """Nothing answers at the host: the server is not running, or the address is wrong."""


class OllamaTimeout(OllamaError):
    """The server accepted the connection but did not answer in time."""


class OllamaRequestError(OllamaError):
    """The server refused the request with an HTTP error status before sending any output.

    Attributes:
        status_code: The HTTP status (400 bad request, 403 host/origin rejected, 500 load failure...).
        server_message: The server's own ``error`` text.
    """

    def __init__(self, message: str, *, status_code: int, server_message: str = "", host: str = "",
                 model: str | None = None, details: str | None = None) -> None:
        super().__init__(message, host=host, model=model, details=details)
        self.status_code = status_code
        self.server_message = server_message


class ModelNotFound(OllamaRequestError, UserInputError):
    """The named model is not installed on that Ollama server (HTTP 404). Exit code 2."""

    exit_code = EXIT_USER_ERROR


class OllamaStreamError(OllamaError):
    """The reply stream broke after it started: an error line, a dropped connection or garbage.

    Attributes:
        server_message: The text of the server's ``{"error": ...}`` line; None when the connection
            broke or the reply was unreadable.
    """

    def __init__(self, message: str, *, server_message: str | None = None, host: str = "",
                 model: str | None = None, details: str | None = None) -> None:
        super().__init__(message, host=host, model=model, details=details)
        self.server_message = server_message


class RegisterError(OllamaError):
    """Registering a model failed: upload, create, or the read-back check."""


class OllamaInputError(OllamaError, UserInputError):
    """The request is wrong before it is sent (bad model name, bad file key, missing file). Exit 2."""

    exit_code = EXIT_USER_ERROR


class BlobDigestMismatch(OllamaError):
    """The server hashed an uploaded blob to another digest than the one in its URL."""
