"""Where the app keeps its files (Qt-free).

``DISTILL_GUI_HOME`` overrides the platform folder (tests and portable installs use it).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

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


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp name in the same folder, then rename.

    A reader (or a crash) never sees a half-written file under the final name; on failure the temp
    file is removed and the OSError propagates for the caller to word.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_jsonl_objects(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL log, in order; a missing file yields nothing.

    Blank lines, a line cut short by a killed write, and lines that are not objects are skipped:
    the logs this reads (metrics, votes) are appended to while the app runs.
    """
    try:
        handle = open(path, encoding="utf-8")
    except OSError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

