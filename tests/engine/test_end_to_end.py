"""`distill-gui train` end to end on tiny models, once per loss: exit code 0, a loadable final/,
and a student whose held-out perplexity (computed here from its logits) improved."""

from __future__ import annotations

import json

import pytest

from distill_gui.cli import main
from distill_gui.config import LOSSES

from .helpers import heldout_perplexity, write_config


@pytest.fixture(scope="module")
def student_ppl(toy):
    return heldout_perplexity(toy.student, toy.heldout[:50])


@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_train_command_runs_each_loss_and_the_student_improves(loss, tmp_path, toy, student_ppl, capsys):
    config = write_config(tmp_path / "run.toml", teacher_dir=str(toy.teacher), student_dir=str(toy.student),
                          data_file=str(toy.train_file), output_dir=str(tmp_path / "runs"), name=loss,
                          distill={"loss": loss, "top_k": 8 if loss == "jsd" else 0},
                          train={"max_steps": 12, "batch_size": 8, "lr": 1e-2, "log_every": 4})
    assert main(["train", str(config)]) == 0
    err = capsys.readouterr().err
    assert "step 12/12" in err and "finished 12 steps" in err
    final = tmp_path / "runs" / loss / "final"
    assert "chat_template" in json.loads((final / "tokenizer_config.json").read_text())
    ppl = heldout_perplexity(final, toy.heldout[:50])
    assert ppl < 0.25 * student_ppl, f"{loss}: held-out perplexity {ppl:.1f} vs {student_ppl:.1f} before"
