"""The run report: evaluate a run's models on held-out data, then write ``report.md`` with PNG plots.

:func:`evaluate_run` measures, on the run's held-out rows (the same split training used), every model
of the run - the teacher, the student before distillation (its starting folder), the student after
(``final/``) and, when there is one, the CE control - with ``engine/evaluation/evaluate.py``: perplexity,
agreement and KL against the teacher, greedy samples, parameters, file sizes and generation speed.
The numbers in the report come from this evaluation, never from the training logs (only the curves
over time are read from ``metrics.jsonl``).

The optional CE control (the same config with ``loss = "ce"`` for the same number of steps, in
``<run>/control-ce/``, :func:`control_config`) is trained by ``workflows/control.py``; a finished one
that matches the run is shown, so the report says what distillation added over plain fine-tuning.
:func:`write_report` writes ``report.json`` (the numbers), the PNGs and ``report.md`` last, each under
a temporary name first. The trainer calls :func:`report_after_training` at the end of a run
(``train.report``); ``distill-gui eval RUN --report`` and the Runs page call :func:`report_run` (through
``workflows/control.py``, which trains the control first when asked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from distill_gui import runfolder
from distill_gui.config import RunConfig, load_config, ollama_model
from distill_gui.engine.data import Example, Row, read_data, read_rows
from distill_gui.engine.evaluation import report_plots as plots
from distill_gui.engine.evaluation.evaluate import (
    SAMPLE_NEW_TOKENS,
    PromptCase,
    Sample,
    TokenScores,
    eval_examples,
    greedy_generate,
    prompt_cases,
    score_many,
    shared_vocab,
    stop_ids,
    tokens_per_second,
    weights_bytes,
)
from distill_gui.engine.evaluation.report_markdown import render_markdown
from distill_gui.engine.evaluation.results import ROLE_LABELS, ModelResult, RunEvaluation
from distill_gui.engine.models import parameter_count
from distill_gui.errors import ConfigError, DataError, DistillError, UserInputError
from distill_gui.events import Control, EventCallback, PhaseProgress, ignore_events
from distill_gui.paths import write_text_atomic
from distill_gui.runfolder import CONTROL as CONTROL_DIR
from distill_gui.runfolder import REPORT_JSON, REPORT_MD, RunFolder

MAX_EXAMPLES = 1000            # held-out examples scored per model (keeps the end-of-run report bounded)
SAMPLE_PROMPTS = 4






# ---- evaluating a run -------------------------------------------------------------------------


def evaluate_run(run_dir: str | Path, *, cfg: RunConfig | None = None,
                 data_file: str | None = None, teacher=None, examples: Sequence[Example] | None = None,
                 rows: Sequence[Row] | None = None, extra: dict[str, dict[str, float]] | None = None,
                 notes: Sequence[str] = (), load_teacher: bool = True, on_event: EventCallback = ignore_events,
                 stop: Control | None = None) -> RunEvaluation:
    """Measure the run's models on held-out data (see the module docstring).

    Args:
        run_dir: The run folder (with ``config.toml`` and ``final/``).
        cfg: Its config (read from ``config.toml`` when not given).
        data_file: Score on this file instead of the run's held-out rows.
        teacher: The teacher already loaded on the run's device (the trainer passes its own).
        load_teacher: Without ``teacher``, load it from disk (False: no numbers against the teacher).
        examples, rows: Already tokenized examples and their rows (the trainer passes its held-out set).
        extra: Additional metrics per role shown as table columns (the demo's task accuracy).
        notes: Lines added to the report's notes.

    Raises:
        UserInputError: no final model yet, or no data to score.
        ModelError: a model cannot be loaded.
    """
    from distill_gui.engine import models as M
    from distill_gui.engine.device import choose, device_description, resolve_device

    run_dir = Path(run_dir)
    cfg = cfg or read_run_config(run_dir)
    final = RunFolder(run_dir).final
    if not (final / "config.json").is_file():
        raise UserInputError(f"{run_dir} has no final model yet (final/ is missing): finish or stop the run "
                             f"first, then write its report.")
    choice = choose(resolve_device(cfg.train.device))
    device = choice.device
    tokenizer = M.load_tokenizer(final, ref=str(final))
    all_notes = list(notes)
    if examples is None or rows is None:
        rows, source = held_out_rows(cfg, data_file)
        examples = eval_examples(rows[:MAX_EXAMPLES], tokenizer, max_length=cfg.data.max_length,
                                 loss_on=cfg.data.loss_on, source=source)
    else:
        source = f"the run's held-out rows ({cfg.data.eval or cfg.data.train})"
    if len(examples) > MAX_EXAMPLES:
        all_notes.append(f"Scored the first {MAX_EXAMPLES} of {len(examples)} held-out examples.")
        examples = list(examples)[:MAX_EXAMPLES]
    steps = steps_done(run_dir, cfg)
    folders = _student_folders(run_dir, cfg, steps, all_notes)
    result = RunEvaluation(run_dir=str(run_dir), name=cfg.name, teacher=cfg.teacher.model,
                           student=cfg.student.model, loss=cfg.distill.loss, temperature=cfg.distill.temperature,
                           alpha=cfg.distill.alpha, steps=steps, device=device_description(device), data=source,
                           examples=len(examples), extra=dict(extra or {}))
    cases = prompt_cases(rows, tokenizer, limit=SAMPLE_PROMPTS)
    result.samples = [Sample(c.shown, c.reference) for c in cases]
    teacher, teacher_folder = _teacher(cfg, teacher, choice, all_notes, on_event) \
        if teacher is not None or load_teacher else (None, None)
    on_event(PhaseProgress("evaluate", 0, 2, "", "scoring the held-out examples"))
    students = {role: M.load_model(folder, dtype=choice.teacher_dtype, device=device, ref=str(folder),
                                   role="student") for role, folder in folders.items()}
    try:  # all students in one pass: the teacher runs once per batch for them all
        scores = score_many(students, examples, pad_id=tokenizer.pad_token_id, teacher=teacher,
                            vocab_size=shared_vocab(tokenizer, teacher, *students.values()), device=device)
        on_event(PhaseProgress("evaluate", 1, 2, "", "greedy samples and generation speed"))
        everyone = {**({"teacher": (teacher, teacher_folder)} if teacher is not None else {}),
                    **{role: (model, folders[role]) for role, model in students.items()}}
        for role, (model, folder) in everyone.items():
            result.models.append(_measure(role, model, folder, scores[role], tokenizer, cases, result.samples,
                                          device, speed=role in ("teacher", "after")))
    finally:
        students.clear()
        _free(device)
    on_event(PhaseProgress("evaluate", 2, 2, "", "evaluation done"))
    gguf = _gguf_bytes(run_dir)
    after = result.model("after")
    if after is not None and gguf:
        after.gguf_bytes = gguf
    result.notes = all_notes
    return result


def _measure(role: str, model, folder: Path | None, scores: TokenScores, tokenizer, cases: Sequence[PromptCase],
             samples: list[Sample], device: str, *, speed: bool) -> ModelResult:
    """Samples, size (and speed) of one loaded model, with its scores."""
    pad = tokenizer.pad_token_id
    if cases:
        answers = greedy_generate(model, [c.ids for c in cases], pad_id=pad, stop=stop_ids(tokenizer, model),
                                  max_new_tokens=sample_length(cases, tokenizer), device=device)
        for sample, ids in zip(samples, answers):
            sample.replies[role] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    tps = tokens_per_second(model, cases[0].ids, pad_id=pad, device=device) if speed and cases else None
    return ModelResult(role=role, label=ROLE_LABELS[role], path=str(folder or ""), parameters=parameter_count(model),
                       weights_bytes=weights_bytes(folder) if folder else 0, scores=scores, tokens_per_s=tps)


def sample_length(cases: Sequence[PromptCase], tokenizer) -> int:
    """New tokens per sample answer: twice the longest reference answer, within 16..SAMPLE_NEW_TOKENS."""
    longest = max(len(tokenizer(c.reference, add_special_tokens=False)["input_ids"]) for c in cases)
    return max(16, min(SAMPLE_NEW_TOKENS, 2 * longest))


def _teacher(cfg: RunConfig, loaded, choice, notes: list[str], on_event: EventCallback):
    """(teacher model, its folder) to compare with: the loaded one, else loaded from disk; (None, None) for none."""
    from distill_gui.engine import models as M

    ref = cfg.teacher.model
    if not ref:
        return None, None
    if ollama_model(ref) is not None:
        notes.append(f"The teacher {ref} is an Ollama model (black box): no perplexity, agreement or KL against it.")
        return None, None
    folder = M.resolve_model(ref, trust_remote_code=cfg.teacher.trust_remote_code, on_event=on_event,
                             role="teacher")
    if loaded is not None:
        return loaded, folder
    on_event(PhaseProgress("load", 0, 1, "", f"loading the teacher {ref}"))
    teacher = M.load_model(folder, dtype=choice.teacher_dtype, device=choice.device, load_in=cfg.teacher.load_in,
                           trust_remote_code=cfg.teacher.trust_remote_code, ref=ref, role="teacher")
    teacher.requires_grad_(False)
    return teacher, folder


def _student_folders(run_dir: Path, cfg: RunConfig, steps: int, notes: list[str]) -> dict[str, Path]:
    """before / after / control folders of the run's students (control only when it matches the run)."""
    folders = {"before": student_before_folder(run_dir, cfg), "after": RunFolder(run_dir).final}
    control_final = RunFolder(run_dir / CONTROL_DIR).final
    if (control_final / "config.json").is_file():
        if control_matches(run_dir, cfg, steps):
            folders["control"] = control_final
        else:
            notes.append(f"{run_dir / CONTROL_DIR} was trained with other settings than this run; it is not shown.")
    return folders


def student_before_folder(run_dir: Path, cfg: RunConfig) -> Path:
    """Where the student started: the derived folder, or the configured student model."""
    from distill_gui.engine import models as M

    if cfg.student.model == "teacher":
        return run_dir / runfolder.DERIVED
    return M.resolve_model(cfg.student.model, trust_remote_code=cfg.student.trust_remote_code, role="student")


def held_out_rows(cfg: RunConfig, data_file: str | None = None) -> tuple[list[Row], str]:
    """The rows to score and where they come from: ``data_file``, else the run's held-out split.

    Without held-out rows (eval_fraction = 0 and no eval file) the training rows are used, and the
    source says so.
    """
    if data_file:
        return read_rows(data_file, role="eval"), str(data_file)
    from distill_gui.engine.teacher.phase import writes_answers

    if writes_answers(cfg):
        raise DataError(f"The run's data file {cfg.data.train} holds prompts the teacher answered; pass a data "
                        f"file with answers to evaluate on (distill-gui eval RUN --report --data FILE).")
    train_rows, eval_rows = read_data(cfg.data, seed=cfg.train.seed)
    if eval_rows:
        return eval_rows, f"the run's held-out rows ({cfg.data.eval or cfg.data.train})"
    return train_rows, f"training rows of {cfg.data.train} (the run held out none: eval_fraction = 0)"


def read_run_config(run_dir: Path) -> RunConfig:
    path = RunFolder(run_dir).config
    if not path.is_file():
        raise UserInputError(f"{run_dir} is not a run folder (no config.toml). Give the folder a run was trained in.")
    return load_config(path)


def steps_done(run_dir: Path, cfg: RunConfig) -> int:
    """Optimizer steps the run made (its newest checkpoint; finish() always saves one)."""
    from distill_gui.engine import checkpoint as ckpt

    latest = RunFolder(run_dir).latest_checkpoint()
    if latest is not None:
        try:
            return int(ckpt.read_state(latest).get("step", 0))
        except DistillError:
            pass
    return int(cfg.train.max_steps)


def _gguf_bytes(run_dir: Path) -> int | None:
    export = RunFolder(run_dir).export
    files = sorted(export.glob("*.gguf")) if export.is_dir() else []
    return files[0].stat().st_size if files else None


def _free(device: str) -> None:
    """Give a freed model's accelerator memory back (on the CPU, dropping the reference is enough)."""
    if device == "cpu":
        return
    import gc

    from distill_gui.engine.device import release_cached_memory

    gc.collect()
    release_cached_memory(device)


# ---- the CE control ---------------------------------------------------------------------------










# ---- writing ----------------------------------------------------------------------------------


def report_run(run_dir: str | Path, *, data_file: str | None = None, on_event: EventCallback = ignore_events,
               stop: Control | None = None) -> Path:
    """Evaluate a finished run (with its CE control when one matches) and write its report."""
    evaluation = evaluate_run(run_dir, data_file=data_file, on_event=on_event, stop=stop)
    return write_report(run_dir, evaluation, on_event=on_event)


def report_after_training(run_dir: Path, cfg: RunConfig, *, teacher, examples: Sequence[Example],
                          rows: Sequence[Row], held_out: bool, on_event: EventCallback = ignore_events) -> Path:
    """The trainer's end-of-run report: its own teacher and held-out examples, the students from disk."""
    notes = [] if held_out else ["The run held out no data (eval_fraction = 0): these numbers are measured on "
                                 "training rows and flatter the students."]
    if teacher is None and cfg.teacher.model:
        # The run kept the teacher off the device (answers or a top-k cache, or loss = "ce"): so does its report.
        why = "an Ollama teacher" if ollama_model(cfg.teacher.model) is not None else \
            "loss = ce" if cfg.distill.loss == "ce" else "it ran only before training, for its answers or its cache"
        notes.append(f"The teacher was not loaded during training ({why}), so this report has no numbers against it. "
                     f"`distill-gui eval {run_dir} --report` measures them with the teacher loaded.")
    evaluation = evaluate_run(run_dir, cfg=cfg, teacher=teacher, examples=examples, rows=rows, notes=notes,
                              load_teacher=False, on_event=on_event)
    if not held_out:
        evaluation.data = f"training rows of {cfg.data.train} (no held-out rows)"
    return write_report(run_dir, evaluation, on_event=on_event)


def write_report(run_dir: str | Path, evaluation: RunEvaluation, *, on_event: EventCallback = ignore_events) -> Path:
    """Write report.json, the PNG plots and report.md (last) into the run folder; returns report.md."""
    run_dir = Path(run_dir)
    on_event(PhaseProgress("report", 0, 1, "", f"writing {run_dir / REPORT_MD}"))
    records = plots.read_metrics(RunFolder(run_dir).metrics)
    control_records = plots.read_metrics(RunFolder(run_dir / CONTROL_DIR).metrics) if evaluation.model("control") \
        else []
    bars = [(m.role, m.label, m.scores.perplexity if m.scores else None, m.scores.agreement if m.scores else None)
            for m in evaluation.models]
    written = {
        plots.LOSS_PNG: plots.plot_losses(run_dir / plots.LOSS_PNG, records, control_records),
        plots.AGREEMENT_PNG: plots.plot_agreement(run_dir / plots.AGREEMENT_PNG, records),
        plots.BEFORE_AFTER_PNG: plots.plot_before_after(run_dir / plots.BEFORE_AFTER_PNG, bars, evaluation.extra),
    }
    for name, path in written.items():
        if path is None:
            (run_dir / name).unlink(missing_ok=True)  # an older plot would not match these numbers
    write_text_atomic(run_dir / REPORT_JSON, json.dumps(evaluation.to_dict(), indent=2, allow_nan=False))
    path = write_text_atomic(run_dir / REPORT_MD, render_markdown(evaluation, [n for n, p in written.items() if p]))
    on_event(PhaseProgress("report", 1, 1, "", f"report written: {path}"))
    return path


def control_config(run_dir: Path, cfg: RunConfig, steps: int) -> RunConfig:
    """The run's config with ``loss = "ce"``, ``steps`` steps, in ``<run>/control-ce/``."""
    from distill_gui.engine.teacher.phase import writes_answers

    if writes_answers(cfg):
        raise ConfigError("A CE control needs a run that trained on its own data; this run's teacher wrote the "
                          "answers, so plain fine-tuning has nothing to compare on.")
    control = cfg.copy()
    control.name = CONTROL_DIR
    control.output_dir = str(run_dir)
    control.distill.loss = "ce"
    control.teacher.cache_top_k = 0
    control.train.max_steps = max(1, steps)
    control.train.epochs = 0
    control.export.ollama_name = ""
    if hasattr(control.train, "report"):
        control.train.report = False
    return control


def control_matches(run_dir: Path, cfg: RunConfig, steps: int) -> bool:
    try:
        wanted = control_config(run_dir, cfg, steps).to_toml()
        return RunFolder(run_dir / CONTROL_DIR).config.read_text(encoding="utf-8") == wanted
    except (OSError, DistillError):
        return False

