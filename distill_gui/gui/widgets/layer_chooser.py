"""Check boxes for the teacher layers a derived student keeps."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

COLUMNS = 8


class LayerChooser(QWidget):
    """One check box per teacher decoder layer; ``selection_changed(list[int])`` on every click."""

    selection_changed = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.boxes: list[QCheckBox] = []
        self.info = QLabel("Check the teacher first: its layer count decides what you can keep.")
        self.info.setProperty("muted", True)
        self.info.setWordWrap(True)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(10)
        quick = QHBoxLayout()
        self.quick_buttons = []
        for text, stride in (("Every 2nd", 2), ("Every 3rd", 3), ("All", 1)):
            button = QPushButton(text)
            button.setToolTip(f"Keep layers 0, {stride}, {2 * stride}, … and always the last one."
                              if stride > 1 else "Keep every layer (a copy of the teacher).")
            button.clicked.connect(lambda _=False, s=stride: self.select_stride(s))
            quick.addWidget(button)
            self.quick_buttons.append(button)
        quick.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.info)
        layout.addLayout(self.grid)
        layout.addLayout(quick)
        self._set_quick_enabled(False)

    def _set_quick_enabled(self, on: bool) -> None:
        for button in self.quick_buttons:
            button.setEnabled(on)

    def layer_count(self) -> int:
        return len(self.boxes)

    def set_layer_count(self, count: int, selected: list[int] | None = None) -> None:
        for box in self.boxes:
            self.grid.removeWidget(box)
            box.deleteLater()
        self.boxes = []
        for index in range(count):
            box = QCheckBox(str(index))
            box.setToolTip(f"Keep teacher layer {index}")
            box.toggled.connect(self._emit)
            self.grid.addWidget(box, index // COLUMNS, index % COLUMNS)
            self.boxes.append(box)
        self.info.setText(f"The teacher has {count} layers; tick the ones the student keeps "
                          f"(spread them out: first and last matter most)." if count else
                          "Check the teacher first: its layer count decides what you can keep.")
        self._set_quick_enabled(count > 0)
        if selected is not None:
            self.set_selected(selected)

    def selected(self) -> list[int]:
        return [i for i, box in enumerate(self.boxes) if box.isChecked()]

    def set_selected(self, layers: list[int]) -> None:
        wanted = set(layers)
        for index, box in enumerate(self.boxes):
            box.blockSignals(True)
            box.setChecked(index in wanted)
            box.blockSignals(False)

    def select_stride(self, stride: int) -> None:
        count = len(self.boxes)
        if not count:
            return
        keep = set(range(0, count, stride)) | {count - 1}
        self.set_selected(sorted(keep))
        self._emit()

    def _emit(self, *_args) -> None:
        self.selection_changed.emit(self.selected())
