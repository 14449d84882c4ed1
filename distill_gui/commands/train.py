"""``distill-gui train CONFIG.toml [--set section.key=value ...] [--resume]``.

Runs the same ``engine.trainer.train`` as the GUI and prints its events: a progress bar (step,
loss, tokens/s, ETA; redrawn in place on a terminal, one line per log step otherwise), eval lines,
checkpoints, warnings, and a one-line summary. The first Ctrl+C stops cleanly (checkpoint +
``final/``); a second one aborts.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from typing import TextIO

from distill_gui.config import load_config
from distill_gui.events import (
    CheckpointSaved,
    Control,
    EvalMetrics,
    Finished,
    LogMessage,
    Paused,
    PhaseProgress,
    Resumed,
    RunStarted,
    StepMetrics,
)
from distill_gui.formatting import human_bytes, human_count, human_duration

BAR_WIDTH = 24


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    _quiet_libraries()
    from distill_gui.engine.trainer import train

    control = Control()
    printer = ProgressPrinter(sys.stderr, config_path=args.config)
    with _stop_on_ctrl_c(control, printer):
        train(cfg, on_event=printer, control=control, resume=args.resume)
    return 0


def _quiet_libraries() -> None:
    """Our own progress bar replaces the libraries' bars and warnings."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class _stop_on_ctrl_c:
    """First SIGINT: ask the trainer to stop after the current step. Second: abort (KeyboardInterrupt)."""

    def __init__(self, control: Control, printer: "ProgressPrinter") -> None:
        self.control, self.printer, self.previous = control, printer, None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.control.stop_requested:
            raise KeyboardInterrupt
        self.control.stop()
        self.printer.line("stopping after this step: saving a checkpoint and final/ (Ctrl+C again aborts)")


class ProgressPrinter:
    """Turns engine events into terminal output."""

    def __init__(self, stream: TextIO, config_path: str = "CONFIG.toml") -> None:
        self.stream, self.config_path = stream, config_path
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bar_shown = False

    def __call__(self, event: object) -> None:
        if isinstance(event, StepMetrics):
            self._bar(format_step(event))
        elif isinstance(event, PhaseProgress):
            self._phase(event)
        elif isinstance(event, RunStarted):
            self.line(format_start(event))
        elif isinstance(event, EvalMetrics):
            self.line(format_eval(event))
        elif isinstance(event, CheckpointSaved):
            self.line(f"checkpoint saved: {event.path}")
        elif isinstance(event, LogMessage):
            self.line(f"{event.level}: {event.message}" if event.level != "info" else event.message)
        elif isinstance(event, Paused):
            self.line(f"paused at step {event.step}")
        elif isinstance(event, Resumed):
            self.line(f"resumed at step {event.step}")
        elif isinstance(event, Finished):
            self.line(format_finished(event, self.config_path))

    def line(self, text: str) -> None:
        if self.bar_shown:
            self.stream.write("\r\033[K" if self.tty else "\n")
            self.bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.bar_shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _phase(self, event: PhaseProgress) -> None:
        finished = event.total is not None and event.done >= event.total
        if event.phase == "tokenize" and not finished and not self.tty:
            return  # one line per file off a terminal
        if event.phase == "download":
            done = human_bytes(event.done)
            text = f"{event.message}: {done}" + (f" of {human_bytes(event.total)}" if event.total else "")
        elif event.unit == "rows" and event.total:
            text = f"{event.message}: {int(event.done):,}/{int(event.total):,} rows"
        else:
            text = event.message
        if not text:
            return
        if self.tty and not finished and event.phase in ("download", "tokenize"):
            self._bar(text)
        else:
            self.line(text)


def format_step(m: StepMetrics) -> str:
    """``step 120/1000 [#####---] 12% loss 2.345 (kd 1.20 ce 3.40) agree 45.1% 1,234 tok/s ETA 3m12s``."""
    fraction = m.step / max(1, m.total_steps)
    filled = int(round(fraction * BAR_WIDTH))
    parts = [f"step {m.step}/{m.total_steps} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%}",
             f"loss {m.loss:.4f} (kd {m.kd:.3f} ce {m.ce:.3f})"]
    if not math.isnan(m.agreement):
        parts.append(f"agree {m.agreement:.1%}")
    parts.append(f"{m.tokens_per_s:,.0f} tok/s")
    parts.append(f"ETA {human_duration(m.eta_s)}" if m.eta_s is not None else "ETA ?")
    return "  ".join(parts)


def format_start(e: RunStarted) -> str:
    teacher = f"teacher {human_count(e.teacher_params)}, " if e.teacher_params else ""
    start = f", resuming at step {e.start_step}" if e.start_step else ""
    student, trained = human_count(e.student_params), human_count(e.trainable_params)
    return (f"run folder {e.run_dir}\n{teacher}student {student} ({trained} trainable) on {e.device}, "
            f"{e.precision}; {e.total_steps} steps{start}")


def format_eval(e: EvalMetrics) -> str:
    agree = "" if math.isnan(e.agreement) else f", agreement {e.agreement:.1%}"
    return f"eval at step {e.step}: loss {e.loss:.4f}, perplexity {e.perplexity:.2f}{agree}"


def format_finished(e: Finished, config_path: str) -> str:
    s = e.summary
    if e.stopped_early and not e.final_dir:  # stopped while the teacher answered or was cached
        return (f"stopped before training (during {s.get('stopped_in', 'setup')}); what is done is kept\n"
                f"continue with: distill-gui train {config_path}")
    head = (f"stopped at step {e.step} of {s.get('total_steps', '?')}" if e.stopped_early
            else f"finished {e.step} steps")
    parts = [f"{head} in {human_duration(s.get('elapsed_s'))}"]
    if "perplexity" in s:
        was = f" (was {s['initial_perplexity']:.2f})" if "initial_perplexity" in s else ""
        parts.append(f"eval perplexity {s['perplexity']:.2f}{was}")
    agreement = s.get("agreement")
    if isinstance(agreement, float) and not math.isnan(agreement):
        parts.append(f"agreement {agreement:.1%}")
    text = "; ".join(parts) + f"; student saved to {e.final_dir}"
    if e.stopped_early:
        text += f"\ncontinue with: distill-gui train {config_path} --resume"
    return text
