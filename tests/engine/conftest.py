"""Engine fixtures: a toy language, a teacher trained on it (by the engine itself), a fresh student."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import toy_rows, write_config, write_text_rows


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: tiny models gain nothing from two, and on a shared 2-core machine two
    threads wait on each other (steps measured 10-50x slower under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Toy:
    teacher: Path          # trained on the toy language (loss = "ce" run of the engine)
    student: Path          # randomly initialised, smaller, same tokenizer
    train_file: Path       # a small transfer set (students learn from it)
    heldout: list[str]     # fresh texts of the same language
    teacher_initial_ppl: float


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Toy:
    """A 2-layer x 64 teacher trained briefly on 1,200 toy texts; a 1-layer x 32 student (vocab 300)."""
    import os

    import torch

    from distill_gui.config import load_config
    from distill_gui.engine.trainer import train
    from distill_gui.workflows.tiny import make_tiny_model, save_tokenizer, train_bpe_tokenizer

    from .helpers import heldout_perplexity

    root = tmp_path_factory.mktemp("toy")
    tokenizer = train_bpe_tokenizer(toy_rows(2000, seed=1), vocab_size=300, style="qwen")
    ids = dict(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    for name, hidden, layers, seed in (("teacher-init", 64, 2, 0), ("student", 32, 1, 1)):
        model = make_tiny_model("qwen2", len(tokenizer), hidden=hidden, layers=layers, heads=4, kv_heads=2,
                                seed=seed, init_std=0.05, **ids)
        model.save_pretrained(str(root / name))
        save_tokenizer(tokenizer, root / name)
    corpus = write_text_rows(root / "corpus.jsonl", toy_rows(1200, seed=2))
    config = write_config(root / "teacher.toml", teacher_dir="", student_dir=str(root / "teacher-init"),
                          data_file=str(corpus),
                          output_dir=str(root / "runs"), name="teacher",
                          distill={"loss": "ce"},
                          data={"eval_fraction": 0.0},
                          train={"max_steps": 120, "batch_size": 16, "lr": 1e-2, "warmup_steps": 10,
                                 "log_every": 1000, "scheduler": "cosine"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    home = os.environ.get("DISTILL_GUI_HOME")
    os.environ["DISTILL_GUI_HOME"] = str(root / "home")  # session fixture: outside the per-test home
    try:
        result = train(load_config(config))
        heldout = toy_rows(150, seed=99)
        initial_ppl = heldout_perplexity(root / "teacher-init", heldout)
    finally:
        torch.set_num_threads(threads)
        if home is None:
            os.environ.pop("DISTILL_GUI_HOME", None)
        else:
            os.environ["DISTILL_GUI_HOME"] = home
    return Toy(teacher=result.final_dir, student=root / "student",
               train_file=write_text_rows(root / "transfer.jsonl", toy_rows(16, seed=3)), heldout=heldout,
               teacher_initial_ppl=initial_ppl)
