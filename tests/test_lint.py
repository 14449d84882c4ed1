"""ruff, with the rules configured in pyproject.toml, finds nothing in the package, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    return [exe]


def test_ruff_finds_nothing():
    result = subprocess.run([*_ruff(), "check", "distill_gui", "tests", "benchmarks", "packaging"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_would_report_a_problem(tmp_path):
    """Guard against a check that cannot fail: the same call reports an unused import."""
    (tmp_path / "bad.py").write_text("import os\n")
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--isolated", "--select", "F", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "F401" in result.stdout
