"""Checkpoint files: RNG round trip, only complete checkpoints count, pruning, LR schedule."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch

from distill_gui.engine import checkpoint as ckpt
from distill_gui.engine.optim import build_scheduler, lr_factor
from distill_gui.runfolder import RunFolder


def test_rng_states_round_trip():
    state = ckpt.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(1)  # move on
    ckpt.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


class _Model(torch.nn.Linear):
    """A module with the ``save_pretrained`` the trainer calls."""

    def save_pretrained(self, folder):
        os.makedirs(folder, exist_ok=True)
        torch.save(self.state_dict(), os.path.join(folder, "weights.pt"))


def _save(run_dir, step, keep=5):
    model = _Model(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    scheduler = build_scheduler(optimizer, warmup=2, total=10, kind="cosine")
    return ckpt.save_checkpoint(run_dir, step, model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=None, state={"micro_batches": step * 2}, keep=keep)


def test_only_complete_checkpoints_count_and_old_ones_are_pruned(tmp_path):
    for step in (2, 4, 6):
        _save(tmp_path, step, keep=2)
    assert [s for s, _ in RunFolder(tmp_path).complete_checkpoints()] == [4, 6]
    broken = tmp_path / "checkpoints" / "step-8"  # killed before state.json was written
    broken.mkdir()
    (broken / "trainer_state.pt").write_bytes(b"x")
    (tmp_path / "checkpoints" / ".step-10.tmp").mkdir()
    assert RunFolder(tmp_path).latest_checkpoint().name == "step-6"
    assert ckpt.read_state(RunFolder(tmp_path).latest_checkpoint())["micro_batches"] == 12
    _save(tmp_path, 6, keep=2)  # the same step again replaces it
    assert not (tmp_path / "checkpoints" / ".step-10.tmp").exists()


@pytest.mark.parametrize("kind, values", [
    ("constant", [1 / 3, 2 / 3, 1.0, 1.0, 1.0]),
    ("linear", [1 / 3, 2 / 3, 1.0, 0.5, 0.0]),
    ("cosine", [1 / 3, 2 / 3, 1.0, 0.5 * (1 + math.cos(math.pi / 2)), 0.0]),
])
def test_warmup_then_schedule(kind, values):
    assert [lr_factor(s, warmup=2, total=4, kind=kind) for s in range(5)] == pytest.approx(values)
