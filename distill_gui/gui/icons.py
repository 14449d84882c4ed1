"""The app's icon, from the data package distill_gui.resources."""

from __future__ import annotations

from importlib import resources

from PySide6.QtGui import QIcon, QPixmap

_cache: dict[str, QIcon] = {}


def resource_bytes(name: str) -> bytes:
    return resources.files("distill_gui.resources").joinpath(name).read_bytes()


def app_icon() -> QIcon:
    """The application icon (icon.svg rendered at 256 px; Qt scales it down)."""
    if "app" not in _cache:
        pixmap = QPixmap()
        pixmap.loadFromData(resource_bytes("icon.svg"), "SVG")
        _cache["app"] = QIcon(pixmap)
    return _cache["app"]
