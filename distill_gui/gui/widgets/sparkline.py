"""A loss sparkline painted inside a table cell."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from distill_gui.gui import theme

SERIES_ROLE = Qt.ItemDataRole.UserRole + 1


def sparkline_points(values: list[float], rect: QRectF) -> list[QPointF]:
    """Values scaled into ``rect`` (min at the bottom, max at the top)."""
    if len(values) < 2:
        return []
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = rect.width() / (len(values) - 1)
    return [QPointF(rect.left() + i * step, rect.bottom() - (v - low) / span * rect.height())
            for i, v in enumerate(values)]


class SparklineDelegate(QStyledItemDelegate):
    """Draws the list of floats stored under SERIES_ROLE as a line."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        values = index.data(SERIES_ROLE) or []
        points = sparkline_points(list(values), QRectF(option.rect).adjusted(6, 5, -6, -5))
        if not points:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        color = QColor("#ffffff") if option.state & QStyle.StateFlag.State_Selected else \
            QColor(theme.current_colors().accent)
        painter.setPen(QPen(color, 1.6))
        painter.drawPolyline(QPolygonF(points))
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:  # noqa: N802 - Qt name
        return QSize(120, 26)
