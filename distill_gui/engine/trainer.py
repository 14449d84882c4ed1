"""The training loop: distill a student from a teacher as a RunConfig says.

``train(cfg, on_event, control, resume)`` is the one entry point of the GUI's worker thread and of
``distill-gui train``. It reads like a recipe: ``_Session.setup`` (run folder, device,
models, tokenizer check, data, optimizer, resume state) -> ``_Session.loop`` (optimizer steps;
events out, Control in) -> ``_Session.finish`` (final eval, checkpoint, ``final/``).

One optimizer step = ``grad_accum`` micro-batches. Each micro-batch runs :func:`compute_batch_loss`
(student forward, teacher forward under no_grad, ``losses.distill_loss``) with the token count of
the whole step as divisor, so the accumulated gradient is that of the mean over the step's tokens.

Resume is exact on the CPU: the data order is a pure function of (seed, micro-batch index), and a
checkpoint holds weights, optimizer, scheduler, scaler and RNG states and the micro-batch count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill_gui import runfolder
from distill_gui.config import RunConfig
from distill_gui.engine import checkpoint as ckpt
from distill_gui.engine import models as M
from distill_gui.engine.data import BatchStream, Datasets, Example, collate, load_datasets, read_data
from distill_gui.engine.device import choose, device_description, memory_in_use, release_cached_memory, resolve_device
from distill_gui.engine.losses import LossResult, LossSpec, distill_loss, liger, release_workspace
from distill_gui.engine.models import parameter_count
from distill_gui.engine.models.forward import final_hidden
from distill_gui.engine.optim import build_optimizer, build_scheduler
from distill_gui.engine.teacher import phase as teacher_phase
from distill_gui.engine.teacher.source import (
    LiveTeacher,
    NoTeacher,
    Teacher,
    TeacherTargets,
    open_teacher,
    shared_vocab,
)
from distill_gui.errors import ConfigError, DistillError, TrainingError
from distill_gui.events import (
    CheckpointSaved,
    Control,
    EvalMetrics,
    EventCallback,
    Failed,
    Finished,
    LogMessage,
    Paused,
    PhaseProgress,
    PhaseStopped,
    Resumed,
    RunStarted,
    StepMetrics,
    ignore_events,
)
from distill_gui.paths import json_safe, write_text_atomic
from distill_gui.runfolder import RunFolder


@dataclass
class RunResult:
    """What ``train`` returns (the same facts as the Finished event)."""

    run_dir: Path
    final_dir: Path
    step: int
    stopped_early: bool
    summary: dict[str, Any] = field(default_factory=dict)


def train(cfg: RunConfig, on_event: EventCallback = ignore_events, control: Control | None = None,
          resume: bool = False) -> RunResult:
    """Run (or resume) a distillation run; see the module docstring.

    Args:
        cfg: A validated RunConfig (``config.load_config`` or the GUI form).
        on_event: Receives the events of ``engine.events``; called on this thread.
        control: Pause / resume / stop requests from another thread, read between optimizer steps.
        resume: Continue from the run folder's latest checkpoint.

    Raises:
        DistillError: after emitting ``Failed`` with the same user-facing message.
    """
    session = _Session(cfg, on_event, control or Control(), resume)
    try:
        session.setup()
        stopped = session.loop()
        return session.finish(stopped)
    except PhaseStopped as stop:  # stopped while the teacher answered or was cached: nothing trained yet
        return session.stopped_before_training(stop.phase)
    except DistillError as exc:
        on_event(Failed(exc.message, exc.details))
        raise
    except torch.OutOfMemoryError:
        error = TrainingError("Out of memory during training. Run `distill-gui plan` on this config: smaller "
                              "batch_size or max_length, gradient_checkpointing = true, LoRA, or a quantized "
                              "teacher reduce memory. The last checkpoint is kept; continue with --resume.")
        on_event(Failed(error.message, traceback.format_exc()))
        raise error from None
    except Exception as exc:  # a bug: tell the GUI, keep the traceback for --debug / the details pane
        on_event(Failed(f"Unexpected {type(exc).__name__}: {exc}", traceback.format_exc()))
        raise
    finally:
        session.close()


# ---- one micro-batch --------------------------------------------------------------------------


def student_loss(student, targets: TeacherTargets, batch: dict[str, torch.Tensor], spec: LossSpec, *,
                 vocab_size: int | None, num_tokens: int | None) -> LossResult:
    """Student forward and the distillation loss of one micro-batch against the teacher's targets.

    Args:
        student: The student causal LM (possibly wrapped by peft).
        targets: What ``Teacher.targets`` gave for this batch (empty for ``loss = "ce"``).
        batch: ``input_ids``, ``attention_mask``, ``labels``: (B, L) tensors on the models' device;
            ``labels`` already shifted (position i predicts labels[i]).
        spec: The loss settings.
        vocab_size: Shared real vocabulary V (None: the models' common width).
        num_tokens: Counted tokens of the whole optimizer step (the divisor of the mean).

    Returns:
        The LossResult; ``loss`` is differentiable w.r.t. the student.
    """
    labels = batch["labels"].reshape(-1)
    s_hidden, s_head = final_hidden(student, batch["input_ids"], batch["attention_mask"])
    kd = spec.loss != "ce"
    return distill_loss(s_hidden, s_head, labels, spec, teacher_hidden=targets.hidden if kd else None,
                        teacher_head=targets.head if kd else None, teacher_topk=targets.topk if kd else None,
                        vocab_size=vocab_size, num_tokens=num_tokens)


def compute_batch_loss(student, teacher, batch: dict[str, torch.Tensor], spec: LossSpec, *,
                       vocab_size: int | None, num_tokens: int | None,
                       teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None) -> LossResult:
    """:func:`student_loss` with a bare teacher model (or cached ``teacher_topk``), for tests and benchmarks."""
    if teacher_topk is not None:
        targets = TeacherTargets(topk=teacher_topk)
    elif teacher is not None and spec.loss != "ce":
        targets = LiveTeacher(teacher, None, quantized=False).targets(batch, split="train", indices=[])
    else:
        targets = TeacherTargets()
    return student_loss(student, targets, batch, spec, vocab_size=vocab_size, num_tokens=num_tokens)


# ---- the session ------------------------------------------------------------------------------


class _Session:
    """State of one run; methods in the order they run."""

    def __init__(self, cfg: RunConfig, on_event: EventCallback, control: Control, resume: bool) -> None:
        self.cfg, self.on_event, self.control, self.resume = cfg, on_event, control, resume
        self.run_dir = cfg.run_dir()
        self.spec = LossSpec.from_config(cfg.distill)
        self.student = self.tokenizer = None
        self.teacher: Teacher = NoTeacher()
        self.answers = self.datasets = None
        self.step = self.micro = 0
        self.elapsed_before = 0.0
        self.started = time.monotonic()
        self.last_eval: EvalMetrics | None = None
        self.first_eval: EvalMetrics | None = None
        self.metrics_file = None
        self.window = _Window()

    # -- setup ------------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        teacher_phase.check_config(cfg)
        # A bad row stops the run before anything is written; with teacher answers the file holds prompts.
        prompts = teacher_phase.read_prompts(cfg) if teacher_phase.writes_answers(cfg) else None
        self.rows = None if prompts is not None else read_data(cfg.data, seed=cfg.train.seed)
        self.choice = choose(resolve_device(cfg.train.device), cfg.train.precision, cfg.teacher.dtype,
                             cfg.student.dtype)
        checkpoint = self._prepare_run_dir()
        if prompts is not None:
            self.answers = teacher_phase.answer_prompts(cfg, prompts, self.run_dir, device=self.choice.device,
                                                        teacher_dtype=self.choice.teacher_dtype, on_event=self.emit,
                                                        control=self.control)
            self.rows = self.answers.rows()
        _seed_everything(cfg.train.seed)
        self._load_models(checkpoint)
        self._load_data()
        self._build_optimizer()
        if checkpoint is not None:
            self._restore(checkpoint)
        self._open_metrics(checkpoint)
        self.emit(RunStarted(
            run_dir=str(self.run_dir), config=cfg.to_dict(), device=device_description(self.choice.device),
            precision=self.choice.precision, teacher_params=parameter_count(self.teacher.model),
            student_params=parameter_count(self.student),
            trainable_params=parameter_count(self.student, trainable=True),
            total_steps=self.total_steps, start_step=self.step))
        for note in self.data_notes:
            self.emit(LogMessage(note, "warning"))
        self._say_loss_kernel()

    def _say_loss_kernel(self) -> None:
        """Where Liger-Kernel could compute the divergence (engine/liger.py), say whether it does."""
        covered = (self.cfg.distill.loss in liger.COVERED and not self.cfg.distill.top_k
                   and self.teacher.kind == "live")
        if covered and (self.choice.kind == "cuda" or liger.mode() == "on"):
            self.emit(LogMessage(liger.verdict(torch.device(self.choice.device))[1]))

    def _prepare_run_dir(self) -> Path | None:
        """Create the run folder; on resume return the checkpoint to continue from."""
        run_dir = self.run_dir
        checkpoint = RunFolder(run_dir).latest_checkpoint() if self.resume else None
        if self.resume and checkpoint is None:
            self.emit(LogMessage(f"No checkpoint in {run_dir}: starting the run from the beginning.", "warning"))
        if not self.resume and RunFolder(run_dir).holds_run():
            raise ConfigError(f"The run folder {run_dir} already holds a run. Continue it with --resume (or "
                              f"'Resume run' in the app), or choose another name.")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if checkpoint is not None:
                self._warn_config_changes(ckpt.read_state(checkpoint).get("config", {}))
            self.cfg.save(run_dir / runfolder.CONFIG)
        except OSError as exc:
            raise ConfigError(f"Cannot create the run folder {run_dir} ({exc.strerror or exc}). Choose another "
                              f"output_dir.") from None
        return checkpoint

    def _warn_config_changes(self, saved: dict[str, Any]) -> None:
        current = self.cfg.to_dict()
        for section, values in saved.items():
            if isinstance(values, dict):
                for key, old in values.items():
                    new = current.get(section, {}).get(key, old)
                    if new != old:
                        self.emit(LogMessage(f"Resuming with {section}.{key} = {new!r} (the checkpoint was made "
                                             f"with {old!r}).", "warning"))

    def _load_models(self, checkpoint: Path | None) -> None:
        cfg, choice = self.cfg, self.choice
        student_folder = self._student_folder()
        self.tokenizer = M.load_tokenizer(student_folder, trust_remote_code=cfg.student.trust_remote_code,
                                          ref=cfg.student.model)
        # A cached teacher runs (if at all) and is freed before the student loads.
        self.teacher = open_teacher(cfg, self.run_dir, tokenizer=self.tokenizer, loss=self.spec.loss,
                                    answers=self.answers, load_datasets=self._datasets, choice=choice,
                                    autocast=self._autocast, on_event=self.emit, control=self.control)
        if not self.teacher.present and self.spec.loss != "ce":
            self.spec = dataclasses.replace(self.spec, loss="ce")
        self.emit(PhaseProgress("load", 0, 1, "", f"loading the student {cfg.student.model}"))
        lora = cfg.student.lora_rank > 0
        source = checkpoint if checkpoint is not None and not lora else student_folder
        student = M.load_model(source, dtype=choice.student_dtype, device=choice.device,
                               trust_remote_code=cfg.student.trust_remote_code, ref=cfg.student.model, role="student")
        student.config.use_cache = False
        self.final_dtype = M.published_dtype(student_folder)
        rows_s = student.get_input_embeddings().weight.shape[0]
        self.vocab_size = shared_vocab(cfg, self.teacher, self.tokenizer, rows_s, self.emit)
        if cfg.train.gradient_checkpointing:
            _enable_checkpointing(student)
        if lora:
            student = self._wrap_lora(student, checkpoint)
        student.train()
        self.student = student
        self.emit(PhaseProgress("load", 1, 1, "", "models loaded"))

    def _student_folder(self) -> Path:
        cfg = self.cfg
        if cfg.student.model == "teacher":
            return M.derive_student(cfg.teacher.model, cfg.student.keep_layers, self.run_dir / runfolder.DERIVED,
                                    trust_remote_code=cfg.teacher.trust_remote_code, on_event=self.emit)
        return M.resolve_model(cfg.student.model, trust_remote_code=cfg.student.trust_remote_code,
                               on_event=self.emit, role="student")

    def _datasets(self) -> Datasets:
        """The tokenized data (loaded once: a cached teacher needs it before the student loads)."""
        if self.datasets is None:
            cfg = self.cfg
            self.datasets = load_datasets(cfg.data, self.tokenizer, seed=cfg.train.seed, on_event=self.emit,
                                          rows=self.rows)
        return self.datasets

    def _wrap_lora(self, student, checkpoint: Path | None):
        if checkpoint is None:
            return M.apply_lora(student, self.cfg.student.lora_rank, self.cfg.student.lora_alpha)
        from peft import PeftModel

        return PeftModel.from_pretrained(student, str(checkpoint), is_trainable=True)

    def _load_data(self) -> None:
        cfg = self.cfg
        data = self._datasets()
        self.data_notes = data.notes
        self.eval_examples = data.eval
        self.stream = BatchStream(data.train, cfg.train.batch_size, cfg.train.seed, self.tokenizer.pad_token_id)
        if cfg.train.max_steps > 0:
            self.total_steps = cfg.train.max_steps
        else:
            self.total_steps = math.ceil(cfg.train.epochs * self.stream.per_epoch / cfg.train.grad_accum)

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        self.optimizer = build_optimizer(self.student, cfg.train, self.choice.device)
        self.scheduler = build_scheduler(self.optimizer, warmup=cfg.train.warmup_steps, total=self.total_steps,
                                         kind=cfg.train.scheduler)
        self.scaler = torch.amp.GradScaler("cuda") if self.choice.precision == "fp16" else None

    def _restore(self, checkpoint: Path) -> None:
        state = ckpt.read_state(checkpoint)
        ckpt.load_trainer_state(checkpoint, optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler)
        self.step, self.micro = int(state["step"]), int(state["micro_batches"])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.emit(LogMessage(f"Resumed from {checkpoint.name} (step {self.step} of {self.total_steps})."))

    def _open_metrics(self, checkpoint: Path | None) -> None:
        """Open metrics.jsonl; on resume drop lines logged after the checkpoint (they will be redone)."""
        path = self.run_dir / runfolder.METRICS
        kept = []
        if checkpoint is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= self.step:
                        kept.append(line)
                except ValueError:
                    continue  # a line cut short by a kill
        write_text_atomic(path, "".join(line + "\n" for line in kept))
        self.metrics_file = open(path, "a", encoding="utf-8")

    # -- the loop ---------------------------------------------------------------------------------

    def loop(self) -> bool:
        """Run optimizer steps until the end or a stop request. Returns True when stopped early."""
        cfg = self.cfg.train
        if self.step == 0 and self.eval_examples:
            self.first_eval = self.evaluate()
        self.session_start, self.session_start_step = time.monotonic(), self.step
        self.window = _Window()  # setup and the first eval do not count for tokens/s
        while self.step < self.total_steps:
            if self.control.stop_requested or (self.control.pause_requested and self._pause()):
                return True
            self._optimizer_step()
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                self._log_step()
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.total_steps \
                    and self.eval_examples:
                self.evaluate()
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        return False

    def _optimizer_step(self) -> None:
        cfg = self.cfg.train
        micro = range(self.micro, self.micro + cfg.grad_accum)
        batches = [self._to_device(self.stream.batch(k)) for k in micro]
        num_tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
        totals = torch.zeros(4, dtype=torch.float64)  # loss, kd, ce, agree
        for k, batch in zip(micro, batches):
            targets = self._targets(batch, "train", self.stream.indices(k))
            with self._autocast():
                result = student_loss(self.student, targets, batch, self.spec, vocab_size=self.vocab_size,
                                      num_tokens=num_tokens)
            loss = result.loss if self.scaler is None else self.scaler.scale(result.loss)
            loss.backward()
            totals += torch.stack([result.loss.detach().double().cpu(), result.kd.double().cpu(),
                                   result.ce.double().cpu(), result.agree.double().cpu()])
        if not math.isfinite(float(totals[0])):
            raise TrainingError(f"The loss became {float(totals[0])} at step {self.step + 1}. Lower [train] lr, "
                                f"keep max_grad_norm > 0, or use precision = 'bf16' / 'fp32'; then resume from the "
                                f"last checkpoint (--resume).")
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = self._clip_and_step()
        self.micro += cfg.grad_accum
        real_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        self.window.add(totals, num_tokens, real_tokens, grad_norm, lr)

    def _targets(self, batch: dict[str, torch.Tensor], split: str, indices: list[int]) -> TeacherTargets:
        """The teacher's targets for a micro-batch, computed under the run's autocast."""
        with self._autocast():
            return self.teacher.targets(batch, split=split, indices=indices)

    def _clip_and_step(self) -> float:
        params = [p for p in self.student.parameters() if p.requires_grad]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        limit = self.cfg.train.max_grad_norm or float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.choice.device, non_blocking=True) for k, v in batch.items()}

    def _autocast(self):
        dtype = self.choice.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.choice.kind if self.choice.kind != "mps" else "mps", dtype=dtype)

    def _log_step(self) -> None:
        w = self.window
        session_steps = self.step - self.session_start_step
        session_time = time.monotonic() - self.session_start
        per_step = session_time / max(1, session_steps)
        agreement = w.agree / w.counted if w.counted and self.teacher.present else float("nan")
        self.emit(StepMetrics(
            step=self.step, total_steps=self.total_steps, loss=w.mean(0), kd=w.mean(1) if self.teacher.present else 0.0,
            ce=w.mean(2), lr=w.lr, grad_norm=w.grad_norm / max(1, w.steps),
            tokens_per_s=w.real_tokens / max(1e-9, time.monotonic() - w.started), agreement=agreement,
            memory_bytes=memory_in_use(self.choice.device), elapsed_s=self.elapsed(),
            eta_s=per_step * (self.total_steps - self.step), epoch=self.micro / self.stream.per_epoch))
        self.window = _Window()

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def evaluate(self) -> EvalMetrics:
        """Loss, KD, CE, perplexity and agreement on the held-out examples (no gradients)."""
        examples: list[Example] = self.eval_examples
        size = self.cfg.train.batch_size
        batches = [collate(examples[i:i + size], self.tokenizer.pad_token_id) for i in range(0, len(examples), size)]
        num_tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
        totals = torch.zeros(4, dtype=torch.float64)
        self.student.eval()
        try:
            with torch.no_grad():
                for first, batch in zip(range(0, len(examples), size), batches):
                    batch = self._to_device(batch)
                    targets = self._targets(batch, "eval", list(range(first, first + len(batch["labels"]))))
                    with self._autocast():
                        result = student_loss(self.student, targets, batch, self.spec, vocab_size=self.vocab_size,
                                              num_tokens=num_tokens)
                    totals += torch.stack([result.loss.double().cpu(), result.kd.double().cpu(),
                                           result.ce.double().cpu(), result.agree.double().cpu()])
        finally:
            self.student.train()
        loss, kd, ce, agree = (float(v) for v in totals)
        metrics = EvalMetrics(step=self.step, loss=loss, kd=kd if self.teacher.present else 0.0, ce=ce,
                              perplexity=math.exp(min(ce, 700.0)),
                              agreement=agree / num_tokens if self.teacher.present and num_tokens else float("nan"))
        self.last_eval = metrics
        self.emit(metrics)
        return metrics

    def _pause(self) -> bool:
        """Wait while paused (optionally with a checkpoint and accelerator memory freed). True = stop."""
        free = self.control.free_memory_on_pause and self.choice.kind != "cpu"
        if self.control.free_memory_on_pause:
            self.save_checkpoint()
            release_workspace()  # the loss's cached CPU chunk buffers; rebuilt by the next step
        if free:
            self._move_to("cpu")
        self.emit(Paused(self.step, freed_memory=free))
        paused_at = time.monotonic()
        stop = self.control.wait_while_paused()
        if free:
            self._move_to(self.choice.device)
        self.session_start += time.monotonic() - paused_at  # paused time does not count for the ETA
        self.started += time.monotonic() - paused_at
        if not stop:
            self.emit(Resumed(self.step))
        return stop

    def _move_to(self, device: str) -> None:
        self.student.to(device)
        self.teacher.move_to(device)
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.to(device)
        if device == "cpu":
            release_cached_memory(self.choice.device)

    def save_checkpoint(self) -> Path:
        state = {"micro_batches": self.micro, "epoch": self.micro / self.stream.per_epoch,
                 "elapsed_s": self.elapsed(), "total_steps": self.total_steps, "config": self.cfg.to_dict(),
                 "saved_at": time.time()}
        self.emit(PhaseProgress("save", 0, 1, "", f"saving checkpoint step-{self.step}"))
        path = ckpt.save_checkpoint(self.run_dir, self.step, model=self.student, optimizer=self.optimizer,
                                    scheduler=self.scheduler, scaler=self.scaler, state=state,
                                    keep=self.cfg.train.keep_checkpoints)
        self.emit(CheckpointSaved(self.step, str(path)))
        return path

    # -- the end ----------------------------------------------------------------------------------

    def stopped_before_training(self, phase: str) -> RunResult:
        """Stop pressed while the teacher answered or was cached: its work so far is kept for the next start."""
        what = "the teacher's answers" if phase == "generate" else "the teacher cache"
        self.emit(LogMessage(f"Stopped before training; {what} so far are kept in {self.run_dir}. Start the run "
                             f"again to continue."))
        summary = {"steps": 0, "stopped_in": phase, "elapsed_s": round(self.elapsed(), 3)}
        self.emit(Finished(str(self.run_dir), "", 0, True, summary))
        return RunResult(self.run_dir, Path(""), 0, True, summary)

    def finish(self, stopped: bool) -> RunResult:
        if self.eval_examples and (self.last_eval is None or self.last_eval.step != self.step):
            self.evaluate()
        self.save_checkpoint()
        release_workspace()  # training is over: the loss's chunk buffers go to saving and the report
        final_dir = self._save_final()
        summary = self._summary(final_dir)
        if self.cfg.train.report and not stopped:  # Stop means stop: a stopped run's report is written on demand
            self._write_report()
        self.emit(Finished(str(self.run_dir), str(final_dir), self.step, stopped, summary))
        return RunResult(self.run_dir, final_dir, self.step, stopped, summary)

    def _write_report(self) -> None:
        """report.md from a fresh evaluation (engine.report); a failure here never fails the finished run."""
        from distill_gui.engine.evaluation.report import report_after_training

        self.optimizer = self.student = None  # training is over: their memory goes to the evaluation
        release_cached_memory(self.choice.device)
        train_rows, eval_rows = self.rows if self.rows is not None else ([], [])
        held_out = bool(self.eval_examples)
        try:
            report_after_training(self.run_dir, self.cfg, teacher=self.teacher.model,
                                  examples=self.eval_examples if held_out else self.stream.examples,
                                  rows=eval_rows if held_out else train_rows, held_out=held_out, on_event=self.emit)
        except Exception as exc:  # noqa: BLE001 - the model is saved; the report can be written again later
            reason = exc.message if isinstance(exc, DistillError) else f"{type(exc).__name__}: {exc}"
            self.emit(LogMessage(f"No report.md: {reason} Write it later with: distill-gui eval {self.run_dir} "
                                 f"--report", "warning"))

    def _save_final(self) -> Path:
        """final/: the student (LoRA merged) in its original dtype, with tokenizer and chat template."""
        final = self.run_dir / runfolder.FINAL
        tmp = self.run_dir / f".{runfolder.FINAL}.tmp"
        self.emit(PhaseProgress("save", 0, 1, "", f"saving the student to {final}"))
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            model = M.merged_for_saving(self.student)
            model.to(dtype=getattr(torch, self.final_dtype))
            model.save_pretrained(str(tmp))
            M.save_tokenizer(self.tokenizer, tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as exc:
            raise TrainingError(f"Cannot write the final model to {final} ({exc.strerror or exc}). The last "
                                f"checkpoint is in {self.run_dir / runfolder.CHECKPOINTS}.") from None
        self.emit(PhaseProgress("save", 1, 1, "", f"student saved to {final}"))
        return final

    def _summary(self, final_dir: Path) -> dict[str, Any]:
        summary: dict[str, Any] = {"steps": self.step, "total_steps": self.total_steps,
                                   "elapsed_s": round(self.elapsed(), 3), "final_dir": str(final_dir),
                                   "loss": self.cfg.distill.loss}
        if self.last_eval is not None:
            summary.update(eval_loss=self.last_eval.loss, perplexity=self.last_eval.perplexity,
                           agreement=self.last_eval.agreement)
        if self.first_eval is not None:
            summary.update(initial_perplexity=self.first_eval.perplexity,
                           initial_agreement=self.first_eval.agreement)
        return summary

    # -- plumbing ---------------------------------------------------------------------------------

    def emit(self, event) -> None:
        if isinstance(event, (StepMetrics, EvalMetrics)) and self.metrics_file is not None:
            kind = "step" if isinstance(event, StepMetrics) else "eval"
            record = {"event": kind, **json_safe(dataclasses.asdict(event))}
            self.metrics_file.write(json.dumps(record) + "\n")
            self.metrics_file.flush()
        self.on_event(event)

    def close(self) -> None:
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None


class _Window:
    """Sums over the steps since the last StepMetrics."""

    def __init__(self) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64)
        self.steps = self.counted = self.real_tokens = 0
        self.agree = self.grad_norm = self.lr = 0.0
        self.started = time.monotonic()

    def add(self, totals: torch.Tensor, counted: int, real_tokens: int, grad_norm: float, lr: float) -> None:
        self.sums += totals
        self.steps += 1
        self.counted += counted
        self.real_tokens += real_tokens
        self.agree += float(totals[3]) if math.isfinite(float(totals[3])) else 0.0
        self.grad_norm += grad_norm
        self.lr = lr

    def mean(self, index: int) -> float:
        return float(self.sums[index]) / max(1, self.steps)


def _enable_checkpointing(model) -> None:
    """Recompute activations in the backward pass (non-reentrant: works with frozen inputs and LoRA)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
