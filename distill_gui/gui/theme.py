"""Dark and light themes: a Fusion palette, a small style sheet, and colours for plots.

``theme = "system"`` follows the desktop's colour scheme (Qt >= 6.5 reports it) and switches
live when the desktop does. Widgets that draw their own colours (plots, sparklines, the data
preview) read ``current_colors()`` and listen to ``notifier().changed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class ThemeColors:
    name: str                     # "dark" | "light"
    window: str
    surface: str                  # panels, inputs
    surface_alt: str              # alternating rows, sidebar
    border: str
    text: str
    muted: str                    # secondary text, axes
    accent: str
    ok: str
    warn: str
    error: str
    grid: str
    masked_text: str              # data preview: prompt tokens the student does not learn
    masked_background: str
    series: tuple[str, ...]       # plot line colours, in order

    @property
    def dark(self) -> bool:
        return self.name == "dark"


DARK = ThemeColors(
    name="dark", window="#1d1f23", surface="#25282d", surface_alt="#181a1e", border="#3a3e45",
    text="#e4e6eb", muted="#9aa1ac", accent="#4c8dff", ok="#3fb27f", warn="#e0a43a", error="#ef5f5f",
    grid="#4a4f58", masked_text="#8e96a3", masked_background="#2e3138",
    series=("#4c8dff", "#f0883e", "#3fb27f", "#c678dd", "#e5c07b", "#56b6c2"),
)
LIGHT = ThemeColors(
    name="light", window="#f4f5f7", surface="#ffffff", surface_alt="#e9ebef", border="#c9cdd4",
    text="#1c1e21", muted="#5f6672", accent="#2463d6", ok="#1d8a5a", warn="#a86a00", error="#c92a2a",
    grid="#c3c7ce", masked_text="#6d7480", masked_background="#e6e8ec",
    series=("#2463d6", "#d9600f", "#1d8a5a", "#8e44ad", "#a07800", "#138496"),
)


class _Notifier(QObject):
    changed = Signal(object)      # ThemeColors


_state: dict[str, object] = {"colors": LIGHT, "choice": "system", "notifier": None, "hooked": False}


def notifier() -> _Notifier:
    if _state["notifier"] is None:
        _state["notifier"] = _Notifier()
    return _state["notifier"]  # type: ignore[return-value]


def current_colors() -> ThemeColors:
    return _state["colors"]  # type: ignore[return-value]


def system_prefers_dark(app: QApplication) -> bool:
    try:
        return app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    except AttributeError:  # pragma: no cover - Qt < 6.5: judge by the default palette
        return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def resolve_theme(choice: str, app: QApplication) -> ThemeColors:
    if choice == "dark":
        return DARK
    if choice == "light":
        return LIGHT
    return DARK if system_prefers_dark(app) else LIGHT


def apply_theme(app: QApplication, choice: str) -> ThemeColors:
    """Apply ``"system" | "dark" | "light"`` to the whole application and tell the widgets."""
    _state["choice"] = choice
    colors = resolve_theme(choice, app)
    app.setStyle("Fusion")
    app.setPalette(build_palette(colors))
    app.setStyleSheet(style_sheet(colors))
    _state["colors"] = colors
    if not _state["hooked"]:
        _state["hooked"] = True
        try:
            app.styleHints().colorSchemeChanged.connect(lambda _scheme: _follow_system(app))
        except AttributeError:  # pragma: no cover - Qt < 6.5
            pass
    notifier().changed.emit(colors)
    return colors


def _follow_system(app: QApplication) -> None:
    if _state["choice"] == "system":
        apply_theme(app, "system")


def build_palette(c: ThemeColors) -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: c.window, QPalette.ColorRole.WindowText: c.text,
        QPalette.ColorRole.Base: c.surface, QPalette.ColorRole.AlternateBase: c.surface_alt,
        QPalette.ColorRole.ToolTipBase: c.surface, QPalette.ColorRole.ToolTipText: c.text,
        QPalette.ColorRole.PlaceholderText: c.muted, QPalette.ColorRole.Text: c.text,
        QPalette.ColorRole.Button: c.surface, QPalette.ColorRole.ButtonText: c.text,
        QPalette.ColorRole.BrightText: c.error, QPalette.ColorRole.Highlight: c.accent,
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: c.accent,
        QPalette.ColorRole.Light: c.surface, QPalette.ColorRole.Midlight: c.border,
        QPalette.ColorRole.Mid: c.border, QPalette.ColorRole.Dark: c.surface_alt,
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, color in roles.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(c.muted))
    return p


def style_sheet(c: ThemeColors) -> str:
    """A few rules the palette cannot express: the sidebar, cards, badges, invalid inputs."""
    return f"""
    QListWidget#sidebar {{
        background: {c.surface_alt}; border: none; border-right: 1px solid {c.border};
        font-size: 11pt; outline: 0; padding-top: 6px;
    }}
    QListWidget#sidebar::item {{ padding: 9px 16px; border-radius: 6px; margin: 1px 8px; }}
    QListWidget#sidebar::item:selected {{ background: {c.accent}; color: #ffffff; }}
    QListWidget#sidebar::item:hover:!selected {{ background: {c.surface}; }}
    QLabel#pageTitle {{ font-size: 15pt; font-weight: 600; }}
    QLabel#pageSubtitle, QLabel[muted="true"] {{ color: {c.muted}; }}
    QLabel#appName {{ font-size: 12pt; font-weight: 600; }}
    QGroupBox {{
        border: 1px solid {c.border}; border-radius: 8px; margin-top: 14px; padding: 10px 8px 8px 8px;
        background: {c.surface};
    }}
    QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; font-weight: 600; }}
    QLabel[badge="ok"] {{ color: #ffffff; background: {c.ok}; border-radius: 4px; padding: 2px 8px; }}
    QLabel[badge="warn"] {{ color: #ffffff; background: {c.warn}; border-radius: 4px; padding: 2px 8px; }}
    QLabel[badge="error"] {{ color: #ffffff; background: {c.error}; border-radius: 4px; padding: 2px 8px; }}
    QLabel[badge="idle"] {{ color: {c.text}; background: {c.surface_alt}; border-radius: 4px; padding: 2px 8px; }}
    QLineEdit[invalid="true"], QSpinBox[invalid="true"], QDoubleSpinBox[invalid="true"] {{
        border: 1px solid {c.error};
    }}
    QPlainTextEdit#logView {{ font-family: "DejaVu Sans Mono", monospace; font-size: 9pt; }}
    QPushButton#primary {{
        background: {c.accent}; color: #ffffff; border: none; border-radius: 5px; padding: 6px 16px;
        font-weight: 600;
    }}
    QPushButton#primary:disabled {{ background: {c.border}; color: {c.muted}; }}
    """


def set_badge(label, kind: str, text: str) -> None:
    """Show ``text`` on a QLabel styled as a coloured badge (ok / warn / error / idle)."""
    label.setText(text)
    label.setProperty("badge", kind)
    label.style().unpolish(label)
    label.style().polish(label)


def set_invalid(widget, invalid: bool) -> None:
    """Mark an input red (or clear the mark) through the ``invalid`` style-sheet property."""
    if bool(widget.property("invalid")) == invalid:
        return
    widget.setProperty("invalid", invalid)
    widget.style().unpolish(widget)
    widget.style().polish(widget)
