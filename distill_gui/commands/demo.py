"""``distill-gui demo [--out DIR] [--small] [--seed N] [--ollama-host URL]``: the offline end-to-end demo.

Builds a small teacher, distills a student, trains the CE control, evaluates, writes the report,
exports GGUF + Modelfile and registers them into Ollama when it answers (engine.demo). Progress goes
to stderr; the summary table to stdout. Ctrl+C aborts (run it again to start over).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from distill_gui.events import LogMessage, PhaseProgress


def run(args: argparse.Namespace) -> int:
    from distill_gui.commands.train import _quiet_libraries
    from distill_gui.workflows.demo import format_summary, run_demo

    _quiet_libraries()
    result = run_demo(args.out, size="small" if args.small else "full", seed=args.seed,
                      ollama_host=args.ollama_host, on_event=DemoPrinter(sys.stderr))
    print(format_summary(result))
    return 0


class DemoPrinter:
    """Stage lines ("[3/8] training the teacher"), a training step counter, warnings."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.counter_shown = False
        self.last_quarter: tuple[str, int] | None = None

    def __call__(self, event: object) -> None:
        if isinstance(event, PhaseProgress) and event.phase == "demo":
            total = int(event.total or 0)
            self.line(f"[{min(int(event.done) + 1, total)}/{total}] {event.message}" if event.done < total
                      else event.message)
        elif isinstance(event, PhaseProgress) and event.phase == "train" and event.total:
            self._steps(event)
        elif isinstance(event, LogMessage) and event.level != "info":
            self.line(f"{event.level}: {event.message}")

    def _steps(self, event: PhaseProgress) -> None:
        text = f"      {event.message}: step {int(event.done)}/{int(event.total)}"
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.counter_shown = True
            self.stream.flush()
            return
        key = (event.message, int(4 * event.done / event.total))
        if key != self.last_quarter:  # off a terminal: every 25 %
            self.last_quarter = key
            self.line(text)

    def line(self, text: str) -> None:
        if self.counter_shown:
            self.stream.write("\r\033[K")
            self.counter_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()
