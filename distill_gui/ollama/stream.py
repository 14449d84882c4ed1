"""A streamed reply as an iterator of typed chunks that ends with the final stats.

::

    with client.chat("qwen2.5:0.5b", [{"role": "user", "content": "Hi"}]) as stream:
        for item in stream:
            if isinstance(item, ChatChunk):
                print(item.content, end="", flush=True)
            else:                      # the last item: ChatStats
                print(f"\\n{item.tokens_per_s:.1f} tok/s, TTFT {item.ttft_s:.2f} s")

The request is sent on the first ``next()``, so errors (model not found, server down) surface there,
already translated to :class:`~distill_gui.ollama.errors.OllamaError`. Closing the stream closes the
HTTP connection, which makes Ollama stop generating. ``close()`` may be called from another thread
(a GUI's stop button): it then takes effect when the next chunk arrives.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Iterator, NamedTuple

from distill_gui.ollama._boundary import convert
from distill_gui.ollama.errors import OllamaStreamError
from distill_gui.ollama.types import NS, ChatChunk, ChatStats, TokenLogprob

_END = object()


class StreamPart(NamedTuple):
    """One NDJSON line of /api/chat or /api/generate, reduced to what the stream needs.

    A NamedTuple, not a frozen dataclass: one is built per token and this is the cheaper kind.
    """

    content: str
    thinking: str
    logprobs: tuple[TokenLogprob, ...]
    done: bool
    done_reason: str = ""
    metrics: dict[str, Any] | None = None  # the final line's counters and durations (nanoseconds)
    context: tuple[int, ...] | None = None


class ChatStream:
    """Iterator over one streamed reply: :class:`ChatChunk` items, then one :class:`ChatStats`.

    Args:
        open_parts: Sends the request and returns the raw line iterator (called on first ``next()``).
        to_part: Turns one raw line into a :class:`StreamPart`.
        host, model: For error messages.
        action: What the stream does, for error messages ("chatting", "generating").
        timeout: The read timeout in force, for the timeout message.
    """

    def __init__(self, open_parts: Callable[[], Iterator[Any]], to_part: Callable[[Any], StreamPart], *,
                 host: str, model: str, action: str = "chatting", timeout: float | None = None) -> None:
        self._action = action
        self._open_parts = open_parts
        self._to_part = to_part
        self._host = host
        self.model = model
        self._timeout = timeout
        self._parts: Iterator[Any] | None = None
        self._pending: deque[ChatChunk | ChatStats] = deque()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished = False
        self._started_at: float | None = None
        self._ttft: float | None = None
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._logprobs: list[TokenLogprob] = []
        self.stats: ChatStats | None = None

    # -- iteration -----------------------------------------------------------------------------------

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatChunk | ChatStats:
        with self._lock:
            while not self._pending:
                if self._finished:
                    raise StopIteration
                if self._cancel.is_set():
                    self._shut()
                    raise StopIteration
                self._read_one()
            return self._pending.popleft()

    def _read_one(self) -> None:
        try:
            if self._parts is None:
                self._started_at = time.perf_counter()
                self._parts = self._open_parts()
            raw = next(self._parts, _END)
            if raw is _END:
                self._shut()
                raise OllamaStreamError(
                    f"The reply of model '{self.model}' from Ollama at {self._host} ended before the server "
                    f"said it was done. The server may have been stopped; try again.",
                    host=self._host, model=self.model)
            part = self._to_part(raw)
        except Exception as exc:
            self._shut()  # the reply is over either way; drop the connection
            converted = convert(exc, self._host, self._action, model=self.model, timeout=self._timeout)
            if converted is exc:
                raise
            raise converted from None
        self._take(part)

    def _take(self, part: StreamPart) -> None:
        elapsed = time.perf_counter() - (self._started_at or time.perf_counter())
        if (part.content or part.thinking) and self._ttft is None:
            self._ttft = elapsed
        if part.content or part.thinking or part.logprobs:
            self._content.append(part.content)
            self._thinking.append(part.thinking)
            self._logprobs.extend(part.logprobs)
            self._pending.append(ChatChunk(part.content, part.thinking, part.logprobs, elapsed))
        if part.done:
            self.stats = self._final_stats(part, elapsed)
            self._pending.append(self.stats)
            self._drain()
            self._shut()

    def _drain(self) -> None:
        # The done line is the last one: reading on to the end of the body lets httpx put the
        # connection back into its pool instead of dropping it. Nothing after "done" matters.
        try:
            next(self._parts, _END)
        except Exception:  # noqa: BLE001 - the reply is complete; a late failure changes nothing
            pass

    def _final_stats(self, part: StreamPart, elapsed: float) -> ChatStats:
        metrics = part.metrics or {}

        def seconds(key: str) -> float:
            value = metrics.get(key)
            return value / NS if isinstance(value, (int, float)) else 0.0

        def count(key: str) -> int:
            value = metrics.get(key)
            return int(value) if isinstance(value, (int, float)) else 0

        return ChatStats(
            model=self.model, done_reason=part.done_reason or "", content="".join(self._content),
            thinking="".join(self._thinking), ttft_s=self._ttft, total_s=elapsed,
            eval_count=count("eval_count"), eval_s=seconds("eval_duration"),
            prompt_tokens=count("prompt_eval_count"), prompt_eval_s=seconds("prompt_eval_duration"),
            load_s=seconds("load_duration"), server_total_s=seconds("total_duration"),
            logprobs=tuple(self._logprobs), context=part.context)

    # -- state -----------------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The answer text received so far."""
        return "".join(self._content)

    @property
    def thinking(self) -> str:
        """The reasoning text received so far (thinking models)."""
        return "".join(self._thinking)

    @property
    def done(self) -> bool:
        """True once the final stats arrived."""
        return self.stats is not None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() and self.stats is None

    def collect(self) -> ChatStats:
        """Read the rest of the reply and return its stats.

        Raises:
            OllamaStreamError: The stream was closed before the reply was complete.
        """
        for _ in self:
            pass
        if self.stats is None:
            raise OllamaStreamError(f"The reply of model '{self.model}' was cancelled before it finished.",
                                    host=self._host, model=self.model)
        return self.stats

    # -- closing ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the reply: the connection closes and Ollama stops generating.

        Safe from any thread. If another thread is waiting for the next chunk, the stream closes as
        soon as that chunk arrives.
        """
        self._cancel.set()
        if self._lock.acquire(blocking=False):
            try:
                self._shut()
            finally:
                self._lock.release()

    def _shut(self) -> None:
        self._finished = True
        parts, self._parts = self._parts, None
        close = getattr(parts, "close", None)
        if close is not None:
            close()  # exits the HTTP stream's context: the connection is dropped, not reused

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
