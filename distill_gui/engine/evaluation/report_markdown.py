"""The text of ``report.md``: a table of the evaluation, what distillation added, the plots, samples, notes.

Pure string building from a :class:`~distill_gui.engine.evaluation.results.RunEvaluation` (no I/O, no torch), so
the wording is easy to test. Renders in any Markdown viewer and in the app's Runs page (Qt's Markdown).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Sequence

from distill_gui.engine.evaluation.report_plots import AGREEMENT_PNG, BEFORE_AFTER_PNG, LOSS_PNG
from distill_gui.engine.evaluation.results import ModelResult, RunEvaluation
from distill_gui.formatting import human_bytes, human_count

PLOT_TITLES = {LOSS_PNG: "Loss over the run", AGREEMENT_PNG: "Agreement with the teacher over the run",
               BEFORE_AFTER_PNG: "Before and after"}
MAX_SAMPLE_CHARS = 600


def render_markdown(ev: "RunEvaluation", plot_files: Sequence[str]) -> str:
    """The whole report as Markdown; ``plot_files`` are the PNG names written next to it."""
    parts = [_header(ev), _table(ev), _added(ev), _plots(plot_files), _samples(ev), _notes(ev)]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


def _header(ev: "RunEvaluation") -> str:
    student = "a student derived from the teacher" if ev.student == "teacher" else f"`{ev.student}`"
    teacher = f"`{ev.teacher}`" if ev.teacher else "no teacher"
    loss = ev.loss if ev.loss == "ce" else f"{ev.loss}, T = {ev.temperature:g}, alpha = {ev.alpha:g}"
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"# Report: {ev.name}\n\n"
            f"{teacher} → {student}; loss {loss}; {ev.steps:,} optimizer steps. Evaluated {when} on {ev.device}.")


def _table(ev: "RunEvaluation") -> str:
    extra = list(ev.extra)
    head = ["Model", "Parameters", "Weights", "GGUF", "Perplexity", "Agreement", "KL(teacher‖model)", "Tokens/s"]
    head += extra
    lines = ["## Held-out evaluation", "",
             f"Measured now on {ev.examples:,} examples ({_tokens(ev)} scored tokens) from {ev.data}. Perplexity: of "
             f"the data's next tokens. Agreement: share of tokens where the model's most likely token is the "
             f"teacher's. KL(teacher‖model): at T = 1, nats per token. Tokens/s: greedy generation on this device.",
             "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for m in ev.models:
        s = m.scores
        cells = [m.label, human_count(m.parameters), human_bytes(m.weights_bytes), human_bytes(m.gguf_bytes),
                 _num(s.perplexity if s else None), _pct(s.agreement if s else None),
                 _num(s.kl if s else None, 3), _num(m.tokens_per_s, 0)]
        cells += [_pct(ev.extra[name].get(m.role)) for name in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _added(ev: "RunEvaluation") -> str:
    """Plain sentences: after vs before, and after vs the CE control."""
    after, before, control, teacher = (ev.model(r) for r in ("after", "before", "control", "teacher"))
    if after is None or after.scores is None:
        return ""
    lines = ["## What distillation added", ""]
    if before is not None and before.scores is not None:
        lines.append(f"- Training took the student's perplexity from {_num(before.scores.perplexity)} to "
                     f"{_num(after.scores.perplexity)}" + _agreement_change(before, after) + ".")
    if control is not None and control.scores is not None:
        better = after.scores.perplexity < control.scores.perplexity
        lines.append(f"- Against plain fine-tuning at equal steps (the CE control): perplexity "
                     f"{_num(after.scores.perplexity)} vs {_num(control.scores.perplexity)} "
                     f"({'better' if better else 'worse'})" + _agreement_vs(after, control) + _extra_vs(ev) + ".")
    else:
        lines.append("- No CE control in this report: run `distill-gui eval RUN_FOLDER --report --control` (or "
                     "Report with CE control on the Runs page) to see what distillation added over plain fine-tuning.")
    if teacher is not None and teacher.parameters and after.parameters:
        lines.append(f"- The student has {after.parameters / teacher.parameters:.0%} of the teacher's parameters"
                     + (f" and generates {after.tokens_per_s / teacher.tokens_per_s:.1f}× as many tokens per second"
                        if after.tokens_per_s and teacher.tokens_per_s else "") + ".")
    return "\n".join(lines)


def _agreement_change(before: "ModelResult", after: "ModelResult") -> str:
    a, b = before.scores.agreement, after.scores.agreement
    return "" if a is None or b is None else f", its agreement with the teacher from {_pct(a)} to {_pct(b)}"


def _agreement_vs(after: "ModelResult", control: "ModelResult") -> str:
    a, c = after.scores.agreement, control.scores.agreement
    return "" if a is None or c is None else f"; agreement {_pct(a)} vs {_pct(c)}"


def _extra_vs(ev: "RunEvaluation") -> str:
    return "".join(f"; {name.lower()} {_pct(v.get('after'))} vs {_pct(v.get('control'))}"
                   for name, v in ev.extra.items() if "after" in v and "control" in v)


def _plots(files: Sequence[str]) -> str:
    if not files:
        return ""
    return "## Plots\n\n" + "\n\n".join(f"![{PLOT_TITLES.get(f, f)}]({f})" for f in files)


def _samples(ev: "RunEvaluation") -> str:
    if not ev.samples:
        return ""
    labels = {m.role: m.label for m in ev.models}
    lines = ["## Samples", "", "Greedy answers to held-out prompts (at most twice as long as the longest reference "
                               "answer, 16 to 64 new tokens)."]
    for number, sample in enumerate(ev.samples, start=1):
        lines += ["", f"### {number}. Prompt", "", _block(sample.prompt), "", "Reference answer (from the data):",
                  "", _block(sample.reference)]
        for role, reply in sample.replies.items():
            lines += ["", f"{labels.get(role, role)}:", "", _block(reply or "(empty answer)")]
    return "\n".join(lines)


def _notes(ev: "RunEvaluation") -> str:
    return "## Notes\n\n" + "\n".join(f"- {n}" for n in ev.notes) if ev.notes else ""


def _block(text: str) -> str:
    """A fenced block that no backtick run inside ``text`` can close early."""
    text = text if len(text) <= MAX_SAMPLE_CHARS else text[:MAX_SAMPLE_CHARS] + " …"
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _tokens(ev: "RunEvaluation") -> str:
    counts = [m.scores.tokens for m in ev.models if m.scores is not None]
    return f"{counts[0]:,}" if counts else "0"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"
