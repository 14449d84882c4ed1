"""``pip install .`` ships the whole app: the wheel holds every module and data file, and the installed copy
imports every module (GUI pages included) from a folder outside the repository.

Once a hand-kept package list left ``distill_gui.chatlog`` out: the Chat and Export pages then crashed after
the README's install while every editable-install test passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (found,) = out.glob("distill_gui-*.whl")
    return found


def _source_files(pattern: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "distill_gui").rglob(pattern)
            if "__pycache__" not in p.parts}


def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _source_files("*.py") | {"distill_gui/resources/icon.svg"} | _source_files("examples/*")
    assert len(expected) > 100
    assert expected - names == set()


def test_the_installed_copy_imports_every_module_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                             str(wheel)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    modules = sorted(p[:-3].replace("/", ".").removesuffix(".__init__") for p in _source_files("*.py")
                     if not p.endswith("__main__.py"))   # running it would start the app
    code = (
        "import importlib, sys, pathlib\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert pathlib.Path(module.__file__).is_relative_to({str(target)!r}), module.__file__\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from distill_gui.gui.app import create_window\n"
        "app = QApplication([])\n"
        "window = create_window(app)\n"
        "for page in ('Models', 'Data', 'Train', 'Export', 'Chat', 'Runs', 'Settings'):\n"
        "    window.show_page(page)\n"
        "    app.processEvents()\n"
        "from importlib import resources\n"
        "print(len(resources.files('distill_gui.resources').joinpath('icon.svg').read_bytes()) > 0, len(sys.argv))\n"
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "QT_QPA_PLATFORM": "offscreen",
           "DISTILL_GUI_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", code], cwd=outside, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == "True"
