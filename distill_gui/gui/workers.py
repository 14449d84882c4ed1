"""QThread workers that only adapt: engine callback -> Qt signal, return / raise -> signal.

Nothing here computes anything. ``TrainWorker`` runs ``engine.trainer.train`` and re-emits each
event; ``TaskWorker`` runs one plain function (inspect a model, plan memory, preview data) and
reports its result or its error. torch and transformers are imported inside ``run``, on the
worker thread, so the window never waits for them.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal

from distill_gui.config import RunConfig
from distill_gui.errors import DistillError
from distill_gui.events import Control, Failed
from distill_gui.gui.crash import ErrorInfo

log = logging.getLogger("distill_gui.gui")
_import_lock = threading.Lock()


def preload_heavy_modules() -> None:
    """Import torch and transformers' entry points once, one thread at a time.

    transformers resolves its names lazily; two threads importing it for the first time at once
    (training starts while the Data page previews) can see a half-initialised module and fail
    with "cannot import name 'AutoTokenizer'". Every worker passes through here first.
    """
    with _import_lock:
        import torch  # noqa: F401
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401


def leave_a_core_for_the_ui() -> int:
    """Let torch use all CPU cores but one, so the window stays responsive during CPU training.

    With every core busy in torch's intra-op threads, the GUI thread waits for the CPU for
    100-400 ms at a time on a 2-core machine. An explicit OMP_NUM_THREADS is left as it is.
    Returns the thread count torch uses.
    """
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return torch.get_num_threads()


class TrainWorker(QThread):
    """Runs one training run; every engine event arrives on the GUI thread as ``event``.

    ``crashed`` fires only when the engine raised something that is not a DistillError (a bug):
    DistillErrors already arrive as a ``Failed`` event before the engine raises them.
    """

    event = Signal(object)
    crashed = Signal(object)            # ErrorInfo

    def __init__(self, cfg: RunConfig, *, resume: bool = False, control: Control | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cfg = cfg
        self.resume = resume
        self.control = control or Control()
        self.result: Any = None
        self._saw_failed = False

    def _on_event(self, event: object) -> None:
        if isinstance(event, Failed):
            self._saw_failed = True
        self.event.emit(event)

    def run(self) -> None:  # the training thread
        try:
            preload_heavy_modules()
            leave_a_core_for_the_ui()
            from distill_gui.engine.trainer import train

            self.result = train(self.cfg, on_event=self._on_event, control=self.control, resume=self.resume)
        except DistillError as exc:
            if not self._saw_failed:  # e.g. an error raised before the engine could report it
                self.event.emit(Failed(exc.message, exc.details))
        except BaseException as exc:  # noqa: BLE001 - a bug must reach the user, not kill the thread silently
            info = ErrorInfo.from_exception(exc)
            log.error("training crashed\n%s", info.details)
            if not self._saw_failed:  # the engine reports its own bugs as Failed (with the traceback)
                self.crashed.emit(info)


class TaskWorker(QThread):
    """Runs ``fn(*args, **kwargs)`` once; ``succeeded(self, result)`` or ``failed(self, ErrorInfo)``.

    With ``events=True`` the function also gets ``on_event=`` and its events (download progress)
    arrive as ``progress(self, event)``. Every signal names its worker, so one receiver can tell
    many workers apart.
    """

    progress = Signal(object, object)
    succeeded = Signal(object, object)
    failed = Signal(object, object)
    ended = Signal(object)             # always last, after succeeded / failed

    def __init__(self, fn: Callable[..., Any], *args: Any, events: bool = False, heavy: bool = True,
                 **kwargs: Any) -> None:
        super().__init__()
        self._fn, self._args, self._kwargs, self._heavy = fn, args, kwargs, heavy
        if events:
            self._kwargs["on_event"] = lambda event: self.progress.emit(self, event)

    def run(self) -> None:
        try:
            if self._heavy:
                preload_heavy_modules()
            result = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the page, which shows it
            if not isinstance(exc, DistillError):
                traceback.print_exc()
            self.failed.emit(self, ErrorInfo.from_exception(exc))
        else:
            self.succeeded.emit(self, result)
        finally:
            self.ended.emit(self)


class TaskRunner(QObject):
    """Starts TaskWorkers by slot name; only the newest task of a slot reports back.

    A page asks "check the teacher" twice in a row: the first answer arrives late and is dropped.
    Workers are kept referenced until their thread ends (a QThread destroyed while running
    aborts the process). Callbacks run on the GUI thread: the workers' signals are delivered to
    this object's methods, queued into the thread it lives in.
    """

    busy_changed = Signal(str, bool)   # slot, busy

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest: dict[str, TaskWorker] = {}
        self._callbacks: dict[TaskWorker, tuple[str, Any, Any, Any]] = {}
        self._alive: set[TaskWorker] = set()

    def run(self, slot: str, fn: Callable[..., Any], *args: Any,
            on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[ErrorInfo], None] | None = None,
            on_progress: Callable[[Any], None] | None = None, heavy: bool = True, **kwargs: Any) -> TaskWorker:
        """Run ``fn`` in a new worker; ``heavy=False`` for tasks that need neither torch nor transformers."""
        self._prune()
        worker = TaskWorker(fn, *args, events=on_progress is not None, heavy=heavy, **kwargs)
        self._alive.add(worker)
        self._latest[slot] = worker
        self._callbacks[worker] = (slot, on_done, on_error, on_progress)
        worker.succeeded.connect(self._succeeded)
        worker.failed.connect(self._failed)
        worker.progress.connect(self._progress)
        worker.ended.connect(self._ended)
        self.busy_changed.emit(slot, True)
        worker.start()
        return worker

    def busy(self, slot: str) -> bool:
        return slot in self._latest

    def cancel(self, slot: str) -> None:
        """Forget a slot's pending answer (the thread still runs to its end)."""
        if self._latest.pop(slot, None) is not None:
            self.busy_changed.emit(slot, False)

    def _current(self, worker: TaskWorker) -> tuple[str, Any, Any, Any] | None:
        entry = self._callbacks.get(worker)
        if entry is None or self._latest.get(entry[0]) is not worker:
            return None
        return entry

    def _succeeded(self, worker: TaskWorker, result: Any) -> None:
        entry = self._current(worker)
        self._settle(worker)
        if entry and entry[1]:
            entry[1](result)

    def _failed(self, worker: TaskWorker, info: ErrorInfo) -> None:
        entry = self._current(worker)
        self._settle(worker)
        if entry and entry[2]:
            entry[2](info)

    def _progress(self, worker: TaskWorker, event: Any) -> None:
        entry = self._current(worker)
        if entry and entry[3]:
            entry[3](event)

    def _settle(self, worker: TaskWorker) -> None:
        """The worker has answered: its slot is no longer busy (before the callback runs)."""
        entry = self._callbacks.get(worker)
        if entry and self._latest.get(entry[0]) is worker:
            del self._latest[entry[0]]
            self.busy_changed.emit(entry[0], False)

    def _ended(self, worker: TaskWorker) -> None:
        self._callbacks.pop(worker, None)
        self._prune()

    def _prune(self) -> None:
        # A worker that has just ended may still be returning from run(): delete only finished ones.
        for worker in [w for w in self._alive if w.isFinished()]:
            self._alive.discard(worker)
            worker.deleteLater()

    def wait_all(self, timeout_ms: int = 30_000) -> bool:
        """Block until every started worker ended (on close); False if one is still running."""
        ok = True
        for worker in list(self._alive):
            ok = worker.wait(timeout_ms) and ok
        self._prune()
        return ok
