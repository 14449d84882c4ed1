"""The one RunConfig the pages edit together, with a change signal.

Every page reads and writes the same ``RunConfig`` through this store: an editor bound to
``train.batch_size`` on the Train page and the memory panel's batch spin box on the Models page
both follow ``changed("train.batch_size")``. Values go through ``RunConfig.set``, so the GUI
accepts exactly what the TOML loader accepts and shows the same messages.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from distill_gui.config import RunConfig, config_from_dict, parse_toml


class ConfigStore(QObject):
    """Holds the current RunConfig; emits ``changed(key)`` ("" = the whole config was replaced)."""

    changed = Signal(str)

    def __init__(self, cfg: RunConfig | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cfg = cfg.copy() if cfg is not None else RunConfig()

    @property
    def config(self) -> RunConfig:
        """The live config. Read it freely; change it only through ``set`` / ``replace``."""
        return self._cfg

    def snapshot(self) -> RunConfig:
        """An independent copy (what a training run gets)."""
        return self._cfg.copy()

    def get(self, key: str) -> Any:
        return self._cfg.get(key)

    def set(self, key: str, value: Any) -> None:
        """Check and set one dotted key; emits ``changed(key)`` when the value differs.

        Raises:
            ConfigError: the key is unknown or the value has the wrong type or range.
        """
        if self.get(key) == value and type(self.get(key)) is type(value):
            return
        self._cfg.set(key, value, source=key)
        self.changed.emit(key)

    def set_many(self, values: dict[str, Any]) -> None:
        """Set several keys; nothing changes when one of them is invalid."""
        trial = self._cfg.copy()
        for key, value in values.items():
            trial.set(key, value, source=key)
        changed = [key for key in values if self.get(key) != trial.get(key)]
        self._cfg = trial
        for key in changed:
            self.changed.emit(key)

    def replace(self, cfg: RunConfig) -> None:
        self._cfg = cfg.copy()
        self.changed.emit("")

    # ---- persistence of the last config (QSettings holds the TOML text) --------------------
    def to_toml(self) -> str:
        return self._cfg.to_toml()

    def load_toml_text(self, text: str, *, source: str = "saved settings") -> None:
        """Replace the config from TOML text (no path resolution: the text is the GUI's own)."""
        self.replace(config_from_dict(parse_toml(text, source=source), source=source, text=text))
