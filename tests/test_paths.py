"""write_text_atomic: the final name holds either the old or the whole new text, never a part."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_gui.paths import read_jsonl_objects, write_text_atomic


def test_write_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old", encoding="utf-8")
    assert write_text_atomic(target, "new ünïcode\n") == target
    assert target.read_text(encoding="utf-8") == "new ünïcode\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_failed_rename_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()   # a folder under the final name: the rename must fail
    (target / "inside.txt").write_text("kept", encoding="utf-8")
    with pytest.raises(OSError):
        write_text_atomic(target, "text")
    assert (target / "inside.txt").read_text(encoding="utf-8") == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


def test_jsonl_reader_skips_damaged_blank_and_non_object_lines(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n\n[1, 2]\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo', encoding="utf-8")
    assert list(read_jsonl_objects(log)) == [{"step": 1}, {"step": 2, "loss": 0.5}]
    assert list(read_jsonl_objects(tmp_path / "missing.jsonl")) == []
