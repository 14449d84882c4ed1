"""At equal steps on a structured toy language, the distilled student beats plain fine-tuning.

The teacher (fixture ``toy``) learned the language from 1,200 texts; both students see only 16 texts.
The CE student learns those 16 texts; the KD student (forward KL, T = 2, alpha = 0.9) learns the
teacher's full next-token distributions on them, i.e. also the continuations the texts do not show.
Measured on fresh texts: perplexity from each student's logits, and top-1 agreement with the teacher.
(With 40 instead of 100 steps the CE student is ahead: the comparison is not rigged to always pass.)
"""

from __future__ import annotations

import pytest

from distill_gui.config import load_config
from distill_gui.engine.trainer import train

from .helpers import heldout_perplexity, teacher_agreement, write_config


@pytest.mark.slow
def test_kd_student_beats_the_ce_student_at_equal_steps(tmp_path, toy):
    teacher_ppl = heldout_perplexity(toy.teacher, toy.heldout)
    assert teacher_ppl < toy.teacher_initial_ppl / 50  # the teacher really learned the language
    scores = {}
    for loss in ("forward_kl", "ce"):
        config = write_config(tmp_path / f"{loss}.toml", teacher_dir=str(toy.teacher), student_dir=str(toy.student),
                              data_file=str(toy.train_file), output_dir=str(tmp_path / "runs"), name=loss,
                              distill={"loss": loss, "temperature": 2.0, "alpha": 0.9},
                              data={"eval_fraction": 0.0},
                              train={"max_steps": 100, "batch_size": 8, "lr": 1e-2, "warmup_steps": 5,
                                     "log_every": 50, "seed": 1})
        final = train(load_config(config)).final_dir
        scores[loss] = (heldout_perplexity(final, toy.heldout), teacher_agreement(final, toy.teacher, toy.heldout[:60]))
    (kd_ppl, kd_agree), (ce_ppl, ce_agree) = scores["forward_kl"], scores["ce"]
    assert kd_ppl < 0.8 * ce_ppl, scores
    assert kd_agree > ce_agree + 0.03, scores
