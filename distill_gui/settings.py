"""App settings shared by the GUI, the CLI and the Qt-free layers (a small JSON file).

Window geometry and the last config belong to the GUI (QSettings); everything a headless layer
also needs (the Ollama host, the runs folder, the HF cache folder, the theme) lives here, in
``<user data dir>/settings.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from distill_gui.paths import user_data_dir, write_text_atomic

THEMES = ("system", "dark", "light")


@dataclass
class AppSettings:
    ollama_host: str = ""          # empty: OLLAMA_HOST, then http://127.0.0.1:11434
    runs_dir: str = ""             # empty: <user data dir>/runs
    hf_cache_dir: str = ""         # empty: the normal Hugging Face cache (HF_HOME / HF_HUB_CACHE)
    theme: str = "system"


def settings_path() -> Path:
    return user_data_dir() / "settings.json"


def load_settings() -> AppSettings:
    """Read the settings; a missing or damaged file gives the defaults (never an error at startup)."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return AppSettings()
    known = {f.name for f in fields(AppSettings)}
    values = {k: v for k, v in data.items() if k in known and isinstance(v, str)}
    settings = AppSettings(**values)
    if settings.theme not in THEMES:
        settings.theme = "system"
    return settings


def save_settings(settings: AppSettings) -> None:
    path = settings_path()
    write_text_atomic(path, json.dumps(asdict(settings), indent=2))
