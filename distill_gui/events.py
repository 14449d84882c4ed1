"""Events the engine reports, and the Control it reads between steps.

The engine calls ``on_event(event)`` with one of the plain dataclasses below (never Qt objects).
The CLI prints them as a progress bar, the GUI's worker re-emits them as a Qt signal, tests
append them to a list. Callbacks run on the training thread: keep them quick.

``Control`` is the only thing another thread touches: pause / resume / stop requests, read by
the trainer between optimizer steps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union


@dataclass
class RunStarted:
    run_dir: str
    config: dict[str, Any]            # the resolved RunConfig as a dict
    device: str                       # e.g. "cuda:0", "cpu"
    precision: str                    # "bf16", "fp16", "fp32"
    teacher_params: int               # 0 for a black-box teacher
    student_params: int
    trainable_params: int
    total_steps: int
    start_step: int = 0               # > 0 when resumed


@dataclass
class PhaseProgress:
    """Progress of a phase before or around training (download, precompute, generation, export...)."""

    phase: str                        # "download", "load", "tokenize", "precompute", "generate", "save", ...
    done: float
    total: float | None               # None when unknown
    unit: str = ""                    # "B", "rows", "tokens", ""
    message: str = ""


@dataclass
class StepMetrics:
    step: int
    total_steps: int
    loss: float
    kd: float                          # KD term (0.0 for loss = "ce")
    ce: float                          # hard-label cross-entropy
    lr: float
    grad_norm: float
    tokens_per_s: float
    agreement: float                   # teacher-student top-1 agreement on unmasked tokens (nan if no teacher)
    memory_bytes: int                  # accelerator memory in use (CUDA/MPS) or process RSS on CPU
    elapsed_s: float
    eta_s: float | None
    epoch: float = 0.0


@dataclass
class EvalMetrics:
    step: int
    loss: float
    kd: float
    ce: float
    perplexity: float                  # exp(CE) of the student on held-out tokens
    agreement: float


@dataclass
class CheckpointSaved:
    step: int
    path: str


@dataclass
class Paused:
    step: int
    freed_memory: bool


@dataclass
class Resumed:
    step: int


@dataclass
class LogMessage:
    message: str
    level: str = "info"               # "info" | "warning" | "error"


@dataclass
class Finished:
    run_dir: str
    final_dir: str
    step: int
    stopped_early: bool               # True when the user pressed Stop
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Failed:
    message: str                      # user-facing (from DistillError.message)
    details: str | None = None        # traceback or extra detail, shown on demand


Event = Union[RunStarted, PhaseProgress, StepMetrics, EvalMetrics, CheckpointSaved, Paused, Resumed,
              LogMessage, Finished, Failed]
EventCallback = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """A callback that drops every event."""


class Control:
    """Thread-safe pause / resume / stop requests, read by the trainer between steps.

    ``pause(free_memory=True)`` asks the trainer to save a checkpoint and release accelerator
    memory while paused; ``resume()`` continues; ``stop()`` ends the run after saving a
    checkpoint and a usable ``final/`` model. A stop also ends a pause.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._free_memory = False
        self._stop = False

    def pause(self, free_memory: bool = False) -> None:
        with self._cond:
            self._paused = True
            self._free_memory = free_memory
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._paused = False
            self._cond.notify_all()

    @property
    def stop_requested(self) -> bool:
        with self._cond:
            return self._stop

    @property
    def pause_requested(self) -> bool:
        with self._cond:
            return self._paused

    @property
    def free_memory_on_pause(self) -> bool:
        with self._cond:
            return self._free_memory

    def wait_while_paused(self, timeout: Optional[float] = None) -> bool:
        """Block while paused. Returns True if a stop was requested. ``timeout`` bounds the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._paused and not self._stop:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._stop


class Throttle:
    """When a long phase reports progress: a "milestone" (with a message: a GUI log line, a CLI line)
    every 5 % and at the end, and a silent "tick" (progress bar only) at most once a second between."""

    def __init__(self, total: int, seconds: float = 1.0) -> None:
        self.total, self.seconds = total, seconds
        self.step = max(1, total // 20)
        self.last = -1.0

    def due(self, done: int) -> str | None:
        now = time.monotonic()
        kind = "milestone" if done >= self.total or done % self.step == 0 else \
            "tick" if now - self.last >= self.seconds else None
        if kind:
            self.last = now
        return kind


class PhaseStopped(Exception):
    """Stop was requested while answers were generated or a cache was built (progress is kept)."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"stopped during {phase}")
        self.phase = phase

