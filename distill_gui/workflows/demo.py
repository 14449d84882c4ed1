"""The offline demo: the whole pipeline on a model pair the app builds itself (no internet, no GPU).

1. Data: checkable question / answer dialogues (:mod:`engine.demo_corpus`): a large set for the
   teacher, a small transfer set for the students, held-out dialogues and held-out questions.
2. Teacher: a small Qwen2-architecture model with its own BPE tokenizer, trained briefly on the large
   set (a ``loss = "ce"`` run of the trainer).
3. Student: the teacher with half its layers (``student.model = "teacher"``), distilled on the small
   transfer set (forward KL, T = 2, alpha = 0.9), learning every token (``loss_on = "all"``).
4. Control: the same config with ``loss = "ce"`` at equal steps (plain fine-tuning on the same data).
5. Evaluation: perplexity, agreement and KL on the held-out dialogues, task accuracy (greedy answers
   checked) on the held-out questions; ``report.md`` with plots in the student's run folder.
6. Export: GGUF + Modelfile of student and teacher; registered into Ollama when one answers.

Why distillation wins here: a student cut from the teacher starts close to it but broken. With only
the small transfer set, plain fine-tuning fits those few dialogues (their random numbers and letters
included) and drifts away from what the teacher knew; the teacher's full next-token distributions on
the same dialogues pull every layer back towards the teacher's behaviour. Measured over seeds, see
:func:`run_demo`'s tests and the README.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from distill_gui import runfolder
from distill_gui.config import RunConfig
from distill_gui.errors import DistillError, UserInputError
from distill_gui.events import Control, EventCallback, LogMessage, PhaseProgress, StepMetrics, ignore_events
from distill_gui.paths import write_text_atomic
from distill_gui.runfolder import RunFolder
from distill_gui.workflows import demo_corpus as corpus

MARKER = "demo.json"
STUDENT_NAME = "distill-demo-student"
TEACHER_NAME = "distill-demo-teacher"
TASK_ACCURACY = "Task accuracy"


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: models, data and steps."""

    name: str
    hidden: int                    # teacher width (the student keeps it)
    teacher_layers: int
    keep_layers: tuple[int, ...]   # teacher layers the student keeps
    vocab: int
    teacher_rows: int              # dialogues the teacher learns from
    teacher_steps: int
    teacher_batch: int
    teacher_lr: float
    transfer_rows: int             # the students' small transfer set
    student_steps: int
    student_batch: int
    student_lr: float
    eval_rows: int                 # held-out dialogues (perplexity, agreement)
    question_rows: int             # held-out questions (task accuracy)


FULL = DemoSize("full", hidden=128, teacher_layers=4, keep_layers=(0, 3), vocab=320, teacher_rows=4000,
                teacher_steps=400, teacher_batch=32, teacher_lr=3e-3, transfer_rows=150, student_steps=200,
                student_batch=16, student_lr=3e-3, eval_rows=100, question_rows=300)
SMALL = DemoSize("small", hidden=96, teacher_layers=3, keep_layers=(0,), vocab=320, teacher_rows=3000,
                 teacher_steps=160, teacher_batch=24, teacher_lr=4e-3, transfer_rows=100, student_steps=60,
                 student_batch=16, student_lr=3e-3, eval_rows=60, question_rows=150)
SIZES = {"full": FULL, "small": SMALL}


@dataclass
class DemoResult:
    """What the demo made and measured."""

    out_dir: Path
    teacher_dir: Path
    student_run: Path
    report_path: Path
    evaluation: Any                                    # engine.report.RunEvaluation
    task_accuracy: dict[str, float]                    # role -> share of held-out questions answered right
    task_by_kind: dict[str, dict[str, float]]          # role -> task -> accuracy
    gguf_paths: dict[str, Path] = field(default_factory=dict)
    registered: list[str] = field(default_factory=list)
    ollama_note: str = ""
    seconds: float = 0.0

    def metric(self, role: str, name: str) -> float | None:
        """perplexity / agreement / kl of a role from the evaluation, or task accuracy."""
        if name == "task_accuracy":
            return self.task_accuracy.get(role)
        model = self.evaluation.model(role)
        return getattr(model.scores, name) if model is not None and model.scores is not None else None


def default_out_dir() -> Path:
    from distill_gui.paths import user_data_dir

    return user_data_dir() / "demo"


def run_demo(out_dir: str | Path | None = None, *, size: str | DemoSize = "full", seed: int = 0,
             ollama_host: str | None = None, register: bool = True, on_event: EventCallback = ignore_events,
             control: Control | None = None) -> DemoResult:
    """Run the demo end to end (see the module docstring); a few minutes on a 2-core CPU at full size.

    Args:
        out_dir: Folder for everything (default: the app's data folder / demo). Reused when it holds
            an earlier demo; refused when it holds anything else.
        size: ``"full"``, ``"small"`` (for tests) or a DemoSize.
        seed: Seed of the data and the training runs.
        ollama_host: Ollama URL for registering (default: settings, OLLAMA_HOST, 127.0.0.1:11434).
        register: Register into Ollama when it answers.
        on_event: Receives PhaseProgress ("demo" stages, "train" steps) and LogMessage events.
        control: A stop request ends the demo between stages (and training runs after their step).

    Raises:
        UserInputError: ``out_dir`` holds something that is not an earlier demo.
        DistillError: a stage failed, or the demo was stopped.
    """
    import torch

    # Models this small gain nothing from a second thread, and on a busy 2-core machine two threads
    # wait on each other (steps measured 5-50x slower); the setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(Path(out_dir) if out_dir else default_out_dir(), SIZES[size] if isinstance(size, str) else size,
                    seed, ollama_host, register, on_event, control or Control())
    finally:
        torch.set_num_threads(threads)


def _run(out_dir: Path, spec: DemoSize, seed: int, ollama_host: str | None, register: bool,
         on_event: EventCallback, control: Control) -> DemoResult:
    started = time.monotonic()
    out = prepare_out_dir(out_dir, spec, seed)
    stages = _Stages(on_event, control)

    stages.next("writing the demo's dialogues")
    files = write_corpus(out / "data", spec, seed)
    stages.next("building the teacher's tokenizer and model")
    teacher_init = build_teacher_init(out / "models", spec, seed)

    stages.next(f"training the teacher ({spec.teacher_steps} steps)")
    teacher_cfg = teacher_config(out, spec, seed, teacher_init, files["teacher"])
    teacher = _train(teacher_cfg, "the teacher", on_event, control).final_dir
    stages.next(f"distilling the student from the teacher ({spec.student_steps} steps)")
    student_cfg = student_config(out, spec, seed, teacher, files)
    student_run = _train(student_cfg, "the student", on_event, control).run_dir
    stages.next(f"training the CE control ({spec.student_steps} steps, same data)")
    from distill_gui.engine.evaluation.report import evaluate_run, write_report
    from distill_gui.workflows.control import run_control

    run_control(student_run, student_cfg, steps=spec.student_steps, on_event=_progress("the CE control", on_event),
                control=control)
    stages.check()

    stages.next("exporting GGUF + Modelfile")
    result_exports = export_models({"student": RunFolder(student_run).final, "teacher": teacher}, student_run.parent,
                                   ollama_host=ollama_host, register=register, on_event=on_event)
    stages.next("answering the held-out questions")
    questions = heldout_questions(spec, seed)
    folders = {"teacher": teacher, "before": student_run / runfolder.DERIVED, "after": RunFolder(student_run).final,
               "control": RunFolder(student_run / runfolder.CONTROL).final}
    by_kind = {role: task_accuracy_of(folder, questions) for role, folder in folders.items()}
    accuracy = {role: kinds.pop("all") for role, kinds in by_kind.items()}
    stages.next("evaluating and writing the report")
    notes = [f"Demo ({spec.name} size, seed {seed}): task accuracy = share of {len(questions)} held-out questions "
             f"answered exactly right by greedy decoding; the students learned from {spec.transfer_rows} "
             f"dialogues, the teacher from {spec.teacher_rows}."]
    evaluation = evaluate_run(student_run, cfg=student_cfg, extra={TASK_ACCURACY: accuracy}, notes=notes,
                              on_event=on_event)
    report_path = write_report(student_run, evaluation, on_event=on_event)
    gguf_paths, registered, ollama_note = result_exports
    stages.finish()
    return DemoResult(out_dir=out, teacher_dir=teacher, student_run=student_run, report_path=report_path,
                      evaluation=evaluation, task_accuracy=accuracy, task_by_kind=by_kind, gguf_paths=gguf_paths,
                      registered=registered, ollama_note=ollama_note, seconds=time.monotonic() - started)


class _Stages:
    """Numbered "demo" progress events; a stop request ends the demo between stages."""

    TOTAL = 8

    def __init__(self, on_event: EventCallback, control: Control) -> None:
        self.on_event, self.control, self.done = on_event, control, 0

    def next(self, message: str) -> None:
        self.check()
        self.on_event(PhaseProgress("demo", self.done, self.TOTAL, "stages", message))
        self.done = min(self.done + 1, self.TOTAL - 1)

    def finish(self) -> None:
        self.on_event(PhaseProgress("demo", self.TOTAL, self.TOTAL, "stages", "the demo is done"))

    def check(self) -> None:
        if self.control.stop_requested:
            raise DistillError("The demo was stopped. Run it again to start over.")


def _progress(what: str, on_event: EventCallback) -> EventCallback:
    """Training events as "train" progress (steps) plus warnings; the demo shows no per-run details."""
    def forward(event) -> None:
        if isinstance(event, StepMetrics):
            on_event(PhaseProgress("train", event.step, event.total_steps, "steps", f"training {what}"))
        elif isinstance(event, PhaseProgress) and event.phase == "control" and event.unit == "steps":
            on_event(PhaseProgress("train", event.done, event.total, "steps", f"training {what}"))
        elif isinstance(event, LogMessage) and event.level != "info":
            on_event(event)

    return forward


def _train(cfg: RunConfig, what: str, on_event: EventCallback, control: Control):
    from distill_gui.engine.trainer import train

    result = train(cfg, on_event=_progress(what, on_event), control=control)
    if result.stopped_early:
        raise DistillError("The demo was stopped. Run it again to start over.")
    return result


# ---- folders, data, models --------------------------------------------------------------------


def prepare_out_dir(out: Path, spec: DemoSize, seed: int) -> Path:
    """Create ``out`` (or clear an earlier demo in it) and mark it as a demo folder."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file; give a folder for the demo.")
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise UserInputError(f"--out {out} already holds other files; the demo needs an empty folder or the folder "
                             f"of an earlier demo. Choose another folder.")
    for name in ("data", "models", "runs"):  # an earlier demo's own folders, nothing else
        shutil.rmtree(out / name, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"size": spec.name, "seed": seed}), encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"Cannot write the demo folder {out} ({exc.strerror or exc}). Choose another "
                             f"folder with --out.") from None
    return out


def write_corpus(folder: Path, spec: DemoSize, seed: int) -> dict[str, Path]:
    """teacher / transfer / eval dialogues as .jsonl files, from disjoint seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    sets = {"teacher": (spec.teacher_rows, 1), "transfer": (spec.transfer_rows, 2), "eval": (spec.eval_rows, 3)}
    files = {}
    for name, (rows, offset) in sets.items():
        path = folder / f"{name}.jsonl"
        questions = corpus.make_questions(rows, seed * 10_000 + offset)
        write_text_atomic(path, "".join(json.dumps(q.row()) + "\n" for q in questions))
        files[name] = path
    return files


def build_teacher_init(folder: Path, spec: DemoSize, seed: int) -> Path:
    """An untrained teacher (Qwen2 architecture) with a BPE tokenizer trained on the demo's text."""
    from distill_gui.engine.models import save_tokenizer
    from distill_gui.workflows.tiny import make_tiny_model, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(corpus.tokenizer_texts(seed), vocab_size=spec.vocab, style="qwen")
    model = make_tiny_model("qwen2", len(tokenizer), hidden=spec.hidden, layers=spec.teacher_layers, heads=4,
                            kv_heads=2, seed=seed, init_std=0.05, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    out = folder / "teacher-init"
    model.save_pretrained(str(out))
    save_tokenizer(tokenizer, out)
    return out


def _base_config(out: Path, name: str, data: Path, seed: int) -> RunConfig:
    cfg = RunConfig()
    cfg.name, cfg.output_dir = name, str(out / "runs")
    cfg.data.train, cfg.data.eval_fraction, cfg.data.max_length = str(data), 0.0, 64
    t = cfg.train
    t.grad_accum, t.warmup_steps, t.scheduler, t.seed, t.device = 1, 10, "cosine", seed + 1, "cpu"
    t.log_every, t.save_every, t.eval_every, t.report = 10, 0, 0, False
    return cfg


def teacher_config(out: Path, spec: DemoSize, seed: int, teacher_init: Path, data: Path) -> RunConfig:
    """The teacher's run: plain training (loss = "ce") of the untrained teacher on the large set."""
    cfg = _base_config(out, "teacher", data, seed)
    cfg.student.model = str(teacher_init)
    cfg.distill.loss = "ce"
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.lr = spec.teacher_steps, spec.teacher_batch, spec.teacher_lr
    return cfg


def student_config(out: Path, spec: DemoSize, seed: int, teacher: Path, files: dict[str, Path]) -> RunConfig:
    """The student's run: half the teacher's layers, distilled on the small transfer set."""
    cfg = _base_config(out, "student", files["transfer"], seed)
    cfg.teacher.model = str(teacher)
    cfg.student.model, cfg.student.keep_layers = "teacher", list(spec.keep_layers)
    cfg.data.eval = str(files["eval"])
    cfg.distill.loss, cfg.distill.temperature, cfg.distill.alpha = "forward_kl", 2.0, 0.9
    t = cfg.train
    t.max_steps, t.batch_size, t.lr = spec.student_steps, spec.student_batch, spec.student_lr
    t.warmup_steps, t.eval_every = max(1, spec.student_steps // 20), max(1, spec.student_steps // 5)
    cfg.export.ollama_name = STUDENT_NAME
    return cfg


# ---- task accuracy ----------------------------------------------------------------------------


def heldout_questions(spec: DemoSize, seed: int) -> list[corpus.Question]:
    """The questions task accuracy is measured on (a seed no training set uses)."""
    return corpus.make_questions(spec.question_rows, seed * 10_000 + 4)


def task_accuracy_of(model_dir: Path, questions: Sequence[corpus.Question]) -> dict[str, float]:
    """Share of questions a model answers exactly right (greedy), overall ("all") and per task."""
    from distill_gui.engine import models as M
    from distill_gui.engine.evaluation.evaluate import greedy_generate, stop_ids

    tokenizer = M.load_tokenizer(model_dir)
    model = M.load_model(model_dir, dtype="float32", device="cpu", ref=str(model_dir))
    prompts = [list(tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": q.prompt}], tokenize=False,
                                                            add_generation_prompt=True),
                              add_special_tokens=False)["input_ids"]) for q in questions]
    answers = greedy_generate(model, prompts, pad_id=tokenizer.pad_token_id, stop=stop_ids(tokenizer, model),
                              max_new_tokens=16, batch_size=64)
    right = [corpus.check_answer(q, tokenizer.decode(a, skip_special_tokens=True)) for q, a in zip(questions, answers)]
    scores = {"all": sum(right) / len(right)}
    for task in corpus.TASKS:
        marks = [ok for ok, q in zip(right, questions) if q.task == task]
        if marks:
            scores[task] = sum(marks) / len(marks)
    return scores


# ---- export and Ollama ------------------------------------------------------------------------


def export_models(models: dict[str, Path], runs_dir: Path, *, ollama_host: str | None, register: bool,
                  on_event: EventCallback) -> tuple[dict[str, Path], list[str], str]:
    """GGUF + Modelfile for each model (in its run's export/); registered when Ollama answers.

    Returns:
        (role -> GGUF path, names registered, a sentence about Ollama).
    """
    from distill_gui.ollama import OllamaClient
    from distill_gui.workflows.publish import publish

    names = {"student": STUDENT_NAME, "teacher": TEACHER_NAME}
    running, host = False, ollama_host or "the default address"
    if register:
        with OllamaClient(ollama_host, timeout=5.0, connect_timeout=2.0) as client:
            running, host = client.is_running(), client.host
    paths, registered, problems = {}, [], []
    for role, folder in models.items():
        result = publish(folder, folder.parent / "export", gguf_type="f16", name=names[role], register=running,
                         host=ollama_host,
                         on_progress=lambda e: on_event(PhaseProgress("export", e.done, e.total, e.unit, e.message)))
        paths[role] = result.export.gguf_path
        if result.registered:
            registered.append(result.export.name)
        elif running and result.register_error:
            problems.append(result.register_error)
    if not register:
        note = "Ollama: not asked to register (the GGUF files and Modelfiles are written)."
    elif not running:
        note = (f"Ollama: not running at {host}; skipped. Start Ollama and run the demo again, or register the "
                f"files with `ollama create` (see each export/ folder's Modelfile).")
    elif problems:
        note = "Ollama: " + " ".join(problems)
    else:
        note = (f"Ollama: registered {' and '.join(registered)} at {host}; chat with them side by side in the app "
                f"or with `ollama run {STUDENT_NAME}`.")
    return paths, registered, note


# ---- the summary ------------------------------------------------------------------------------


def format_summary(result: DemoResult) -> str:
    """A short table: each model's size, perplexity, agreement, task accuracy and speed, then where things are."""
    ev = result.evaluation
    rows = [("Model", "Parameters", "Perplexity", "Agreement", "Task accuracy", "Tokens/s")]
    for model in ev.models:
        s = model.scores
        rows.append((model.label, f"{model.parameters / 1e3:,.0f}K", _fmt(s.perplexity if s else None),
                     _pct(s.agreement if s else None), _pct(result.task_accuracy.get(model.role)),
                     _fmt(model.tokens_per_s, 0)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    kd, ce = result.task_accuracy.get("after"), result.task_accuracy.get("control")
    agree_kd, agree_ce = result.metric("after", "agreement"), result.metric("control", "agreement")
    verdict = (f"Distillation vs plain fine-tuning at equal steps: task accuracy {_pct(kd)} vs {_pct(ce)}, "
               f"agreement with the teacher {_pct(agree_kd)} vs {_pct(agree_ce)}.")
    lines += ["", verdict, f"Report: {result.report_path}",
              "GGUF: " + ", ".join(str(p) for p in result.gguf_paths.values()), result.ollama_note,
              f"Finished in {result.seconds:.0f} s."]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None or value != value else f"{100 * value:.1f} %"
