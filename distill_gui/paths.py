"""Where the app keeps its files (Qt-free).

``DISTILL_GUI_HOME`` overrides the platform folder (tests and portable installs use it).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "distill-gui"


def user_data_dir() -> Path:
    """The app's data folder: runs, logs, chat tallies (created on first use)."""
    override = os.environ.get("DISTILL_GUI_HOME")
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = user_data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
