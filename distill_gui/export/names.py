"""Ollama model names: validation and a default derived from the model folder.

Ollama names are ``[host/][namespace/]model[:tag]`` (types/model/name.go): parts use letters, digits,
``_ - .`` (no ``.`` in the namespace), at most 128 characters, and never ``..``. We also require the
model part to start with a letter or digit, which every Ollama version accepts.
"""

from __future__ import annotations

import re
from pathlib import Path

from distill_gui.errors import ExportInputError

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
MAX_NAME = 128


def validate_ollama_name(name: str) -> str:
    """Return ``name`` if Ollama accepts it as a model name; else raise ExportInputError saying why."""
    problem = _name_problem(name)
    if problem:
        raise ExportInputError(f"{name!r} is not a valid Ollama model name: {problem}. Use letters, digits, "
                               f"'-', '_' and '.', e.g. my-student or me/my-student:q8.")
    return name


def _name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    if ".." in name:
        return "it contains '..'"
    path, _, tag = name.partition(":")
    if ":" in tag:
        return "it has more than one ':'"
    if _ and not _TAG.match(tag):
        return f"the tag {tag!r} has characters Ollama does not allow"
    parts = path.split("/")
    if len(parts) > 3:
        return "it has more than two '/' (host/namespace/model)"
    if not _PART.match(parts[-1]):
        return (f"the model part {parts[-1]!r} has a character Ollama does not allow, or does not start with "
                "a letter or digit")
    if len(parts) >= 2 and not _NAMESPACE.match(parts[-2]):
        return f"the namespace {parts[-2]!r} may use only letters, digits, '_' and '-'"
    if len(parts) == 3 and not _PART.match(parts[0]):
        return f"the host {parts[0]!r} has characters Ollama does not allow"
    return None


def default_model_name(model_dir: str | Path) -> str:
    """A valid name from the folder: a run's ``final/`` is named after its run folder."""
    folder = Path(model_dir).resolve()
    base = folder.parent.name if folder.name in ("final", "student") or folder.name.startswith("step-") else folder.name
    if folder.name.startswith("step-"):
        base = f"{folder.parent.parent.name}-{folder.name}"
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", base).strip("-._").lower()
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[:MAX_NAME] or "student"


def gguf_file_name(name: str) -> str:
    """File name for a model name: ``me/student:q8`` -> ``student-q8.gguf``."""
    path, _, tag = name.partition(":")
    stem = path.split("/")[-1] + (f"-{tag}" if tag and tag != "latest" else "")
    return f"{stem}.gguf"
