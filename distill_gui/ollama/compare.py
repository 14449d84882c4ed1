"""Send one conversation to several models at once and follow their replies as they arrive.

Used by ``distill-gui compare`` and usable by any front end: :func:`stream_side_by_side` runs one
thread per model and yields :class:`CompareEvent` items in arrival order on the caller's thread, so
the caller never touches a worker thread. A model that fails does not stop the others.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from distill_gui.ollama.client import OllamaClient
from distill_gui.ollama.errors import OllamaError
from distill_gui.ollama.types import ChatChunk, ChatStats, LoadedModel


@dataclass(frozen=True)
class CompareEvent:
    """Something happened on one side: a chunk arrived, the reply finished (stats), or it failed."""

    side: int
    model: str
    chunk: ChatChunk | None = None
    stats: ChatStats | None = None
    error: OllamaError | None = None


@dataclass(frozen=True)
class SideResult:
    """How one model did: stats on success, the error otherwise, and its memory from /api/ps."""

    model: str
    stats: ChatStats | None
    error: OllamaError | None
    memory: LoadedModel | None = None

    @property
    def ok(self) -> bool:
        return self.stats is not None and self.error is None


_SIDE_DONE = object()


def stream_side_by_side(client: OllamaClient, models: Sequence[str], messages: Sequence[Mapping[str, Any]], *,
                        options: Mapping[str, Any] | None = None, think: bool | str | None = None,
                        ) -> Iterator[CompareEvent]:
    """Chat with every model at once; yield their events as they arrive until all are done.

    Closing the generator early closes every stream (Ollama stops generating).
    """
    events: queue.Queue[Any] = queue.Queue()
    streams = [client.chat(model, messages, options=options, think=think) for model in models]

    def pump(side: int) -> None:
        model = models[side]
        try:
            for item in streams[side]:
                if isinstance(item, ChatStats):
                    events.put(CompareEvent(side, model, stats=item))
                else:
                    events.put(CompareEvent(side, model, chunk=item))
        except OllamaError as exc:
            events.put(CompareEvent(side, model, error=exc))
        except Exception as exc:  # noqa: BLE001 - a bug on one side must not hang the other
            events.put(CompareEvent(side, model, error=OllamaError(
                f"Chatting with '{model}' failed unexpectedly: {type(exc).__name__}: {exc}.",
                host=client.host, model=model)))
        finally:
            events.put(_SIDE_DONE)

    threads = [threading.Thread(target=pump, args=(side,), name=f"compare-{side}", daemon=True)
               for side in range(len(models))]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            event = events.get()
            if event is _SIDE_DONE:
                running -= 1
            else:
                yield event
    finally:
        for stream in streams:
            stream.close()
        for thread in threads:
            thread.join(timeout=5)


def compare_models(client: OllamaClient, models: Sequence[str], messages: Sequence[Mapping[str, Any]], *,
                   options: Mapping[str, Any] | None = None, think: bool | str | None = None,
                   on_event: Any = None) -> list[SideResult]:
    """Run :func:`stream_side_by_side` to the end and return one :class:`SideResult` per model.

    Args:
        on_event: Optional callable receiving each :class:`CompareEvent` (e.g. to print chunks).
    """
    stats: dict[int, ChatStats] = {}
    errors: dict[int, OllamaError] = {}
    for event in stream_side_by_side(client, models, messages, options=options, think=think):
        if on_event is not None:
            on_event(event)
        if event.stats is not None:
            stats[event.side] = event.stats
        if event.error is not None:
            errors[event.side] = event.error
    memory = memory_by_model(client)
    return [SideResult(model, stats.get(side), errors.get(side), memory.get(_canonical(model)))
            for side, model in enumerate(models)]


def memory_by_model(client: OllamaClient) -> dict[str, LoadedModel]:
    """Loaded models from /api/ps keyed by canonical name; empty if ps fails (memory is a nice-to-have)."""
    try:
        return {_canonical(loaded.name): loaded for loaded in client.ps()}
    except OllamaError:
        return {}


def _canonical(name: str) -> str:
    """``x`` and ``x:latest`` are the same model; names compare case-insensitively in Ollama."""
    last = name.rsplit("/", 1)[-1]
    return (name if ":" in last else f"{name}:latest").lower()
