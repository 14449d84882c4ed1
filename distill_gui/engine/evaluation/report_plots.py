"""The report's PNG plots, drawn with matplotlib's Agg canvas (no pyplot, no GUI backend, thread-safe).

- ``loss.png``: training loss, its KD and CE terms, and the held-out loss over the steps (from the run's
  metrics.jsonl), with the CE control's loss when there is one.
- ``agreement.png``: teacher-student top-1 agreement over the steps (training batches and held-out).
- ``before_after.png``: the evaluation's perplexity, agreement (and extra metrics) of each model as bars.

Every file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from distill_gui.paths import read_jsonl_objects

LOSS_PNG = "loss.png"
AGREEMENT_PNG = "agreement.png"
BEFORE_AFTER_PNG = "before_after.png"
COLORS = {"teacher": "#6b7280", "before": "#d97706", "after": "#2563eb", "control": "#9333ea"}
DPI = 100


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (lines cut short by a kill are skipped); [] when there is none."""
    return list(read_jsonl_objects(Path(path)))


def series(records: Sequence[dict[str, Any]], kind: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in the metrics records of one kind ("step" or "eval"), finite values only."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if record.get("event") == kind and isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(int(record.get("step", 0)))
            values.append(float(value))
    return steps, values


def plot_losses(path: Path, records: Sequence[dict], control_records: Sequence[dict] = ()) -> Path | None:
    """Training and held-out loss over the steps; None (nothing written) without logged steps."""
    lines = [("loss (train)", series(records, "step", "loss"), "-", COLORS["after"]),
             ("KD term", series(records, "step", "kd"), ":", COLORS["after"]),
             ("CE term", series(records, "step", "ce"), "--", COLORS["after"]),
             ("loss (held-out)", series(records, "eval", "loss"), "-o", COLORS["teacher"]),
             ("CE control: its loss (= CE)", series(control_records, "step", "loss"), "-", COLORS["control"])]
    lines = [line for line in lines if line[1][0]]
    if not lines:
        return None
    fig, ax = _figure()
    for label, (steps, values), style, color in lines:
        if label == "KD term" and not any(values):
            continue  # a CE run has no KD term
        ax.plot(steps, values, style, color=color, label=label, markersize=4, linewidth=1.6)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    ax.set_title("Loss over the run")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_agreement(path: Path, records: Sequence[dict]) -> Path | None:
    """Agreement over the steps; None (nothing written) when no teacher agreement was logged."""
    lines = [("training batches", series(records, "step", "agreement"), "-"),
             ("held-out", series(records, "eval", "agreement"), "-o")]
    lines = [line for line in lines if line[1][0]]
    if not lines:
        return None
    fig, ax = _figure()
    for label, (steps, values), style in lines:
        ax.plot(steps, [100 * v for v in values], style, color=COLORS["after"] if style == "-" else COLORS["teacher"],
                label=label, markersize=4, linewidth=1.6)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("top-1 agreement with the teacher (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Agreement over the run")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_before_after(path: Path, bars: Sequence[tuple[str, str, float | None, float | None]],
                      extra: dict[str, dict[str, float]] | None = None) -> Path | None:
    """Bars per model: perplexity (log scale when the values span more than 20x), agreement, extra metrics.

    Args:
        bars: (role, label, perplexity, agreement) per model; None where not measured.
        extra: More metrics in [0, 1] as metric name -> role -> value (the demo's task accuracy).
    """
    with_ppl = [(r, lbl, p) for r, lbl, p, _ in bars if p is not None and math.isfinite(p)]
    if not with_ppl:
        return None
    values = [v for _, _, v in with_ppl]
    wide = max(values) / max(min(values), 1e-9) > 20  # a log axis only when the bars differ by orders of magnitude
    panels = [("held-out perplexity (lower is better)" + (", log scale" if wide else ""), with_ppl,
               "log" if wide else "linear")]
    with_agree = [(r, lbl, a) for r, lbl, _, a in bars if a is not None and math.isfinite(a)]
    if with_agree:
        panels.append(("agreement with the teacher, % (higher is better)", with_agree, "percent"))
    for name, per_role in (extra or {}).items():
        items = [(r, lbl, per_role[r]) for r, lbl, _, _ in bars if per_role.get(r) is not None]
        if items:
            panels.append((f"{name.lower()}, % (higher is better)", items, "percent"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(panels), 3.6), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.16 / len(panels), right=0.98, top=0.88, bottom=0.12, wspace=0.25)
    for index, (title, items, kind) in enumerate(panels, start=1):
        _bar_panel(fig.add_subplot(1, len(panels), index), title, items, kind)
    return _save(fig, path)


def _bar_panel(ax, title: str, items: Sequence[tuple[str, str, float]], kind: str) -> None:
    values = [100 * v if kind == "percent" else v for _, _, v in items]
    positions = range(len(items))
    ax.bar(positions, values, color=[COLORS.get(r, COLORS["after"]) for r, _, _ in items])
    ax.set_xticks(list(positions), [lbl for _, lbl, _ in items], fontsize=8)
    for x, v in zip(positions, values):
        ax.annotate(f"{v:.1f}" if kind == "percent" else f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
    if kind == "log":
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, 105 if kind == "percent" else max(values) * 1.12)
    ax.set_title(title, fontsize=9)


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), dpi=DPI)  # fixed margins: a layout engine costs ~0.1 s per plot
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
