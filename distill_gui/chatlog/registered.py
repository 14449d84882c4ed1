"""The students this app registered into Ollama, newest last (Qt-free).

The Chat page opens with the newest registered student in one pane; Ollama itself cannot say which
of its models came from a distillation, so the Export page remembers each name it registered in
``<user data dir>/registered_models.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from distill_gui.chatlog.votes import canonical_model, now_iso
from distill_gui.paths import user_data_dir, write_text_atomic

REGISTERED_FILE = "registered_models.json"
KEEP = 200


def registered_path() -> Path:
    return user_data_dir() / REGISTERED_FILE


def read_registered(path: Path | None = None) -> list[dict[str, str]]:
    """The records ``{"name", "time", "source"}``, oldest first; a damaged file reads as empty."""
    try:
        data = json.loads((path or registered_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [r for r in data if isinstance(r, dict) and isinstance(r.get("name"), str)] if isinstance(data, list) else []


def remember_registered(name: str, source: str = "", path: Path | None = None) -> None:
    """Add ``name`` as the newest registered student (an older entry of the same name moves up)."""
    path = path or registered_path()
    records = [r for r in read_registered(path) if canonical_model(r["name"]) != canonical_model(name)]
    records.append({"name": name, "time": now_iso(), "source": source})
    try:
        write_text_atomic(path, json.dumps(records[-KEEP:], indent=1))
    except OSError:
        pass   # a convenience for the Chat page's default, never worth an error


def newest_registered(installed: Iterable[str], path: Path | None = None) -> str | None:
    """The most recently registered name among ``installed`` (as spelled in ``installed``), or None."""
    by_key = {canonical_model(name): name for name in installed}
    for record in reversed(read_registered(path)):
        found = by_key.get(canonical_model(record["name"]))
        if found:
            return found
    return None
