"""One pane's streamed reply, on its own worker thread; only signals reach the widgets.

The worker is a daemon Python thread rather than a QThread: a reply can sit silent for minutes while
Ollama loads a big model, and a window that closes meanwhile must not wait for it (a QThread destroyed
while running aborts the process). Cancelling closes the stream, which closes the HTTP connection,
which makes Ollama stop generating; when the worker is blocked waiting for the first chunk the close
takes effect as that chunk arrives, and the pane has already moved on.

Signals are emitted on the worker thread and delivered to the receiving widgets' slots queued, on the
GUI thread (connect them to bound methods of QObjects, not to bare lambdas).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Mapping, Sequence

from PySide6.QtCore import QObject, Signal

from distill_gui.errors import DistillError

log = logging.getLogger("distill_gui.gui")


class PaneStream(QObject):
    """Chat with one model once: ``arrived``* then ``finished`` (+ ``memory``) or ``failed``; ``ended`` last."""

    arrived = Signal()                     # new pieces wait in ``take()`` (one signal per batch, not per token)
    finished = Signal(object)              # ChatStats
    memory = Signal(object)                # LoadedModel of this model from /api/ps, or None
    failed = Signal(object)                # DistillError (an OllamaError subclass for server trouble)
    ended = Signal()

    def __init__(self, model: str, messages: Sequence[Mapping[str, Any]], *, host: str | None = None,
                 system: str | None = None, options: Mapping[str, Any] | None = None,
                 think: bool | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.messages = [dict(m) for m in messages]
        self.host, self.system, self.options, self.think = host, system, dict(options or {}), think
        self.cancelled = False
        self._stream: Any = None
        self._lock = threading.Lock()
        self._pieces: list[tuple[str, str, float]] = []
        self._signalled = False
        self._thread = threading.Thread(target=self._run, name=f"chat-{model}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Stop the reply (safe to call at any time, from the GUI thread)."""
        with self._lock:
            self.cancelled = True
            stream = self._stream
        if stream is not None:
            stream.close()

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        from distill_gui.ollama import ChatStats, OllamaClient, OllamaError

        try:
            with OllamaClient(self.host) as client:
                stream = client.chat(self.model, self.messages, system=self.system or None,
                                     options=self.options or None, think=self.think)
                with self._lock:
                    self._stream = stream
                    if self.cancelled:
                        stream.close()
                for item in stream:
                    if isinstance(item, ChatStats):
                        self._emit(self.finished, item)
                    else:
                        self._push(item.content, item.thinking, item.elapsed_s)
                if stream.stats is not None and not self.cancelled:
                    self._emit(self.memory, _loaded(client, self.model, OllamaError))
        except DistillError as exc:
            if not self.cancelled:
                self._emit(self.failed, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must reach the pane, not die with the thread
            log.exception("chat stream of %s crashed", self.model)
            if not self.cancelled:
                self._emit(self.failed, DistillError(f"Chatting with '{self.model}' failed unexpectedly: "
                                                     f"{type(exc).__name__}: {exc}. This is a bug; see the log."))
        finally:
            self._emit(self.ended)

    def take(self) -> list[tuple[str, str, float]]:
        """The pieces that arrived since the last call: (answer text, reasoning text, seconds since sending)."""
        with self._lock:
            pieces, self._pieces = self._pieces, []
            self._signalled = False
        return pieces

    def _push(self, content: str, thinking: str, elapsed: float) -> None:
        # Coalesce: one queued ``arrived`` at a time. A fast model sends hundreds of tokens per second
        # per pane; a signal per token would flood the GUI thread's event queue and starve its timers.
        with self._lock:
            self._pieces.append((content, thinking, elapsed))
            if self._signalled:
                return
            self._signalled = True
        self._emit(self.arrived)

    def _emit(self, signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the window closed while the thread ran: nobody is listening any more
            self.cancel()


def _loaded(client: Any, model: str, error_type: type) -> Any:
    """This model's /api/ps entry; None when ps fails or the model already unloaded."""
    from distill_gui.chatlog import canonical_model

    try:
        loaded = client.ps()
    except error_type:
        return None
    return next((m for m in loaded if canonical_model(m.name) == canonical_model(model)), None)
