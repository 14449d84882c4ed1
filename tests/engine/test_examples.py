"""The example config shipped in distill_gui/resources/examples loads, and its data parses."""

from __future__ import annotations

from pathlib import Path

from distill_gui.config import load_config
from distill_gui.engine.data import read_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "distill_gui" / "resources" / "examples"


def test_example_config_and_data_are_valid():
    cfg = load_config(EXAMPLES / "qwen-0.5b-from-1.5b.toml")
    assert Path(cfg.data.train) == EXAMPLES / "chat.jsonl"  # resolved next to the config
    rows = read_rows(cfg.data.train)
    assert len(rows) >= 15 and any(r.text for r in rows) and sum(1 for r in rows if r.messages) >= 15
    assert cfg.teacher.model.startswith("Qwen/") and cfg.student.model.startswith("Qwen/")
