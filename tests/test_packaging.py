"""The desktop entry in packaging/ starts the console script pyproject.toml declares."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"


def _desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop files
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def test_desktop_entry_runs_the_declared_console_script() -> None:
    entry = _desktop_entry(PACKAGING / "distill-gui.desktop")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    assert entry["Type"] == "Application"
    assert entry["Exec"] in scripts
    assert entry["Terminal"] == "false"
    assert (ROOT / "distill_gui" / "resources" / "icon.svg").is_file()


@pytest.mark.skipif(shutil.which("sh") is None or os.name != "posix", reason="needs a POSIX shell")
def test_install_script_writes_entry_pointing_at_installed_command(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_command = bin_dir / "distill-gui"
    fake_command.write_text("#!/bin/sh\nexit 0\n")
    fake_command.chmod(0o755)
    data = tmp_path / "data"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "XDG_DATA_HOME": str(data)}
    subprocess.run(["sh", str(PACKAGING / "install-linux.sh")], env=env, check=True, capture_output=True)
    entry = _desktop_entry(data / "applications" / "distill-gui.desktop")
    assert entry["Exec"] == str(fake_command)
    icon = data / "icons" / "hicolor" / "scalable" / "apps" / "distill-gui.svg"
    assert icon.read_bytes() == (ROOT / "distill_gui" / "resources" / "icon.svg").read_bytes()
    assert not list((data / "applications").glob("*.tmp"))


def test_install_script_refuses_without_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin", "XDG_DATA_HOME": str(tmp_path)}
    if shutil.which("distill-gui", path=env["PATH"]):
        pytest.skip("distill-gui is installed system-wide")
    result = subprocess.run(["sh", str(PACKAGING / "install-linux.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install" in result.stderr
    assert not (tmp_path / "applications").exists()
