"""The teacher as the training loop sees it: one object, chosen once at setup, that gives a batch's targets.

The loop never asks which kind of teacher it has. It calls ``teacher.targets(batch, split=..., indices=...)``
and hands the result to the loss. The kinds:

- :class:`LiveTeacher`: a Hugging Face model next to the student; it runs forward under no_grad on
  whatever tokens the batch holds (the dataset's responses, or text the student wrote).
- :class:`CachedTeacher`: the teacher's top-k log-probabilities from disk (``teacher.cache_top_k``), or
  an Ollama teacher's answers lined up with the student's tokens (``teacher_phase.prepare_cache``).
- :class:`NoTeacher`: ``loss = "ce"``, or an Ollama teacher whose tokens do not line up (its answers are
  then learned with plain cross-entropy).

:func:`open_teacher` picks and prepares the kind a RunConfig asks for. A new kind (a teacher that scores
another tokenizer's text, say) is a new class here; the loop does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from distill_gui.config import RunConfig
from distill_gui.engine import models as M
from distill_gui.engine.data import Datasets
from distill_gui.engine.models.forward import final_hidden
from distill_gui.engine.teacher import phase as teacher_phase
from distill_gui.errors import ModelError
from distill_gui.events import Control, EventCallback, LogMessage, PhaseProgress


@dataclass
class TeacherTargets:
    """What the loss compares the student with, for one micro-batch (all None: no teacher signal).

    Attributes:
        hidden: (N, H) final hidden states with ``head`` the LM head, or (N, V) logits with ``head`` None.
        topk: Cached (ids (N, k), logprobs (N, k)) over the batch's positions.
    """

    hidden: torch.Tensor | None = None
    head: Any = None
    topk: tuple[torch.Tensor, torch.Tensor] | None = None


class Teacher:
    """A source of targets (this base class is the teacher-less kind)."""

    kind = "none"
    model = None              # the live Hugging Face model, when there is one (the report reuses it)

    @property
    def present(self) -> bool:
        """Whether there is a teacher signal at all (KD term and agreement are then measured)."""
        return self.kind != "none"

    def targets(self, batch: dict[str, torch.Tensor], *, split: str, indices: list[int]) -> TeacherTargets:
        """The targets of a micro-batch; ``indices`` are its examples' positions in ``split``."""
        return TeacherTargets()

    def output_rows(self) -> int | None:
        """Rows of the teacher's output layer (None when no model runs)."""
        return None

    def move_to(self, device: str) -> None:
        """Move the model's weights (a memory-freeing pause); nothing for teachers without one."""


class NoTeacher(Teacher):
    pass


class LiveTeacher(Teacher):
    """A Hugging Face teacher running next to the student (inference only)."""

    kind = "live"

    def __init__(self, model, tokenizer, *, quantized: bool) -> None:
        self.model, self.tokenizer, self.quantized = model, tokenizer, quantized

    def targets(self, batch: dict[str, torch.Tensor], *, split: str, indices: list[int]) -> TeacherTargets:
        with torch.no_grad():
            hidden, head = final_hidden(self.model, batch["input_ids"], batch["attention_mask"])
        return TeacherTargets(hidden=hidden, head=head)

    def output_rows(self) -> int | None:
        head = self.model.get_output_embeddings()
        return head.weight.shape[0] if head is not None else self.model.config.vocab_size

    def move_to(self, device: str) -> None:
        if not self.quantized:  # bitsandbytes weights cannot leave the GPU
            self.model.to(device)


class CachedTeacher(Teacher):
    """The teacher's top-k rows from disk, one cache per split."""

    kind = "cached"

    def __init__(self, caches: teacher_phase.TeacherCaches, device: str) -> None:
        self.caches, self.device = caches, device

    def targets(self, batch: dict[str, torch.Tensor], *, split: str, indices: list[int]) -> TeacherTargets:
        cache = self.caches.train if split == "train" else self.caches.eval
        return TeacherTargets(topk=cache.batch_topk(indices, batch["labels"], self.device))


def open_teacher(cfg: RunConfig, run_dir, *, tokenizer, loss: str, answers, load_datasets: Callable[[], Datasets],
                 choice, autocast: Callable[[], Any], on_event: EventCallback, control: Control) -> Teacher:
    """The teacher ``cfg`` asks for, ready to give targets (see the module docstring).

    Args:
        loss: The run's divergence (``"ce"``: no teacher is loaded).
        answers: The teacher's answers when it wrote the training rows (``teacher_phase.answer_prompts``).
        load_datasets: Tokenizes the data; a cached teacher needs the examples before training starts.
        choice: The device choice (device, dtypes, precision).

    Raises:
        PhaseStopped: stop requested while the cache was built (what was done is kept).
        ModelError: the teacher cannot be loaded, or its tokenizer does not fit the student's.
    """
    if loss == "ce":
        return NoTeacher()
    if teacher_phase.uses_cache(cfg):
        caches = teacher_phase.prepare_cache(
            cfg, run_dir, tokenizer=tokenizer, datasets=load_datasets(), answers=answers, device=choice.device,
            teacher_dtype=choice.teacher_dtype, precision=choice.precision, autocast=autocast, on_event=on_event,
            control=control)
        if caches is None:  # an Ollama teacher whose tokens do not line up: its answers, learned with CE
            on_event(LogMessage("The teacher's tokens do not line up with the student's: learning its answers with "
                                "cross-entropy only.", "warning"))
            return NoTeacher()
        return CachedTeacher(caches, choice.device)
    return _load_live(cfg, choice, on_event)


def _load_live(cfg: RunConfig, choice, on_event: EventCallback) -> LiveTeacher:
    ref = cfg.teacher.model
    folder = M.resolve_model(ref, trust_remote_code=cfg.teacher.trust_remote_code, on_event=on_event, role="teacher")
    tokenizer = M.load_tokenizer(folder, trust_remote_code=cfg.teacher.trust_remote_code, ref=ref)
    on_event(PhaseProgress("load", 0, 1, "", f"loading the teacher {ref}"))
    model = M.load_model(folder, dtype=choice.teacher_dtype, device=choice.device, load_in=cfg.teacher.load_in,
                         trust_remote_code=cfg.teacher.trust_remote_code, ref=ref, role="teacher")
    model.eval()
    model.requires_grad_(False)
    return LiveTeacher(model, tokenizer, quantized=cfg.teacher.load_in != "full")


def shared_vocab(cfg: RunConfig, teacher: Teacher, tokenizer, student_rows: int,
                 on_event: EventCallback) -> int | None:
    """The vocabulary V the loss compares over (None when both output widths already equal it).

    Raises:
        ModelError: a live teacher's tokenizer does not fit the student's (the message says what to do).
    """
    size = len(tokenizer)
    if not isinstance(teacher, LiveTeacher):
        return size if student_rows > size else None
    teacher_rows = teacher.output_rows()
    verdict = M.check_tokenizer_pair(cfg.teacher.model, cfg.student.model, teacher_tokenizer=teacher.tokenizer,
                                     student_tokenizer=tokenizer, teacher_rows=teacher_rows, student_rows=student_rows)
    if not verdict.compatible:
        raise ModelError(verdict.message)
    if teacher_rows != size or student_rows != size:
        on_event(LogMessage(verdict.message))
        return verdict.shared_vocab
    return None
