"""A page that says what will be there (Export and Chat, until their issue fills them)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from distill_gui.gui.pages.common import page_header


class PlaceholderPage(QWidget):
    def __init__(self, title: str, subtitle: str, coming: list[str], meanwhile: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        card = QFrame()
        card.setObjectName("placeholderCard")
        card.setMaximumWidth(760)
        inner = QVBoxLayout(card)
        inner.setContentsMargins(28, 22, 28, 22)
        heading = QLabel("Coming in the next version of this page")
        heading.setStyleSheet("font-weight: 600; font-size: 12pt;")
        inner.addWidget(heading)
        items = QLabel("<ul style='margin-left:-20px'>" + "".join(f"<li style='margin-bottom:4px'>{c}</li>"
                                                                  for c in coming) + "</ul>")
        items.setWordWrap(True)
        items.setTextFormat(Qt.TextFormat.RichText)
        inner.addWidget(items)
        now = QLabel(meanwhile)
        now.setWordWrap(True)
        now.setTextFormat(Qt.TextFormat.RichText)
        now.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        inner.addWidget(now)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header(title, subtitle))
        layout.addSpacing(12)
        layout.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)

