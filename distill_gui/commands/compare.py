"""``distill-gui compare MODEL_A MODEL_B --prompt TEXT [--system TEXT] [--ollama-host URL]``.

Sends the prompt to both models at once and shows both answers while they stream, then one row
per model: TTFT, tokens/s, tokens, total time, memory (from /api/ps) and done reason. One side
failing leaves the other complete; the exit code is 0 only when both succeed.

On a terminal the answers are two labelled blocks redrawn in place; into a pipe or file they are
labelled lines (``A │ ...``) written as they arrive, so logs stay readable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
import time
from typing import TextIO

from distill_gui.errors import EXIT_FAILURE, EXIT_OK, EXIT_USER_ERROR, UserInputError
from distill_gui.formatting import human_bytes
from distill_gui.ollama import OllamaClient
from distill_gui.ollama.compare import CompareEvent, SideResult, compare_models

LABELS = ("A", "B")


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    models = [args.model_a, args.model_b]
    messages = [{"role": "user", "content": args.prompt}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    with OllamaClient(args.ollama_host) as client:
        client.version()  # one clear "Ollama is not running at ..." instead of two failed sides
        renderer = LiveBlocks(out, models) if _is_terminal(out) else LabelledLines(out, models)
        results = compare_models(client, models, messages, on_event=renderer.handle)
        renderer.close()
    out.write("\n" + format_table(results) + "\n")
    for label, result in zip(LABELS, results):
        if result.error is not None:
            out.write(f"\n{label} ({result.model}) failed: {result.error.message}\n")
    out.flush()
    return exit_code(results)


def exit_code(results: list[SideResult]) -> int:
    """0 when every side succeeded; 2 when every failure is the user's input (e.g. a model name); else 1."""
    failures = [r.error for r in results if not r.ok]
    if not failures:
        return EXIT_OK
    return EXIT_USER_ERROR if all(isinstance(e, UserInputError) for e in failures) else EXIT_FAILURE


def format_table(results: list[SideResult]) -> str:
    header = ("", "model", "TTFT", "tokens/s", "tokens", "total", "memory", "done")
    rows = [header]
    for label, result in zip(LABELS, results):
        stats = result.stats
        if stats is None:
            rows.append((label, result.model, "-", "-", "-", "-", _memory(result), "failed"))
            continue
        rows.append((label, result.model, _seconds(stats.ttft_s),
                     f"{stats.tokens_per_s:.1f}" if stats.tokens_per_s else "-", str(stats.eval_count),
                     _seconds(stats.total_s), _memory(result), stats.done_reason or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _memory(result: SideResult) -> str:
    loaded = result.memory
    if loaded is None or not loaded.size:
        return "-"
    gpu = round(loaded.gpu_fraction * 100)
    where = "100% GPU" if gpu >= 100 else "100% CPU" if gpu <= 0 else f"{100 - gpu}% CPU/{gpu}% GPU"
    return f"{human_bytes(loaded.size)} ({where})"


def _is_terminal(out: TextIO) -> bool:
    """Redraw in place only on a terminal that understands ANSI (Windows: only Windows Terminal)."""
    ansi = sys.platform != "win32" or "WT_SESSION" in os.environ
    return ansi and bool(getattr(out, "isatty", lambda: False)())


class LabelledLines:
    """Each side's text as whole lines prefixed with its label, written as soon as a line is complete."""

    def __init__(self, out: TextIO, models: list[str], width: int = 100) -> None:
        self.out = out
        self.width = width
        self.pending = ["", ""]
        self.mode: list[str | None] = [None, None]
        for label, model in zip(LABELS, models):
            out.write(f"{label}: {model}\n")
        out.write("\n")
        out.flush()

    def handle(self, event: CompareEvent) -> None:
        if event.chunk is not None:
            if event.chunk.thinking:
                self._add(event.side, event.chunk.thinking, "thinking")
            if event.chunk.content:
                self._add(event.side, event.chunk.content, "answer")
        elif event.error is not None:
            self._flush(event.side)
            self._emit(event.side, "[failed - see below]")
        elif event.stats is not None:
            self._flush(event.side)

    def close(self) -> None:
        for side in (0, 1):
            self._flush(side)

    def _add(self, side: int, text: str, mode: str) -> None:
        if mode != self.mode[side]:
            self._flush(side)
            if mode == "thinking" or self.mode[side] == "thinking":
                self._emit(side, f"[{mode}]")
            self.mode[side] = mode
        self.pending[side] += text
        while "\n" in self.pending[side]:
            line, self.pending[side] = self.pending[side].split("\n", 1)
            self._emit(side, line)
        while len(self.pending[side]) > self.width:
            cut = self.pending[side].rfind(" ", 0, self.width) + 1 or self.width
            self._emit(side, self.pending[side][:cut].rstrip())
            self.pending[side] = self.pending[side][cut:]

    def _flush(self, side: int) -> None:
        if self.pending[side]:
            self._emit(side, self.pending[side])
            self.pending[side] = ""

    def _emit(self, side: int, line: str) -> None:
        self.out.write(f"{LABELS[side]} │ {line}\n")
        self.out.flush()


class LiveBlocks:
    """Two labelled blocks redrawn in place (ANSI) at up to 10 Hz; printed in full at the end."""

    def __init__(self, out: TextIO, models: list[str]) -> None:
        self.out = out
        self.models = models
        self.texts = ["", ""]
        self.status = ["…", "…"]
        self.drawn = 0
        self.last_draw = 0.0
        columns, rows = shutil.get_terminal_size((100, 30))
        self.width = max(20, columns - 4)
        self.visible = max(3, (rows - 8) // 2)

    def handle(self, event: CompareEvent) -> None:
        if event.chunk is not None:
            self.texts[event.side] += event.chunk.thinking + event.chunk.content
        elif event.stats is not None:
            self.status[event.side] = "done"
        elif event.error is not None:
            self.status[event.side] = "failed - see below"
        if time.monotonic() - self.last_draw >= 0.1 or event.chunk is None:
            self._draw(tail=True)

    def close(self) -> None:
        self._draw(tail=False)

    def _draw(self, *, tail: bool) -> None:
        lines = []
        for side, model in enumerate(self.models):
            wrapped = [piece for paragraph in self.texts[side].split("\n")
                       for piece in (textwrap.wrap(paragraph, self.width) or [""])]
            if tail:
                wrapped = wrapped[-self.visible:]
            lines.append(f"── {LABELS[side]}: {model} ({self.status[side]}) ──")
            lines += [f"  {line}" for line in wrapped]
            lines.append("")
        erase = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
        self.out.write(erase + "\n".join(lines) + "\n")
        self.out.flush()
        self.drawn = len(lines)
        self.last_draw = time.monotonic()
