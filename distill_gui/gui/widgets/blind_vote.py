"""Blind mode's vote bar (left / right / tie / both bad, then the reveal) and the tallies table."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from distill_gui.chatlog import VOTE_LABELS, VOTES, PairTally

TALLY_COLUMNS = ("Model", "Other model", "Wins", "Losses", "Ties", "Both bad", "Win rate", "95 % CI")


class BlindVoteBar(QWidget):
    """Asks for a vote once both replies are in; shows who was who after it. ``voted(vote)``, ``new_round()``."""

    voted = Signal(str)
    new_round = Signal()
    show_tallies = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.question = QLabel("Which answer is better?")
        self.question.setStyleSheet("font-weight: 600;")
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.question)
        for vote in VOTES:
            button = QPushButton(VOTE_LABELS[vote])
            button.setObjectName(f"vote_{vote}")
            button.clicked.connect(lambda _=False, v=vote: self.voted.emit(v))
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            self.buttons[vote] = button
            row.addWidget(button)
        self.result = QLabel()
        self.result.setObjectName("blindResult")
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.next_round = QPushButton("New round")
        self.next_round.setObjectName("newRound")
        self.next_round.setToolTip("Clear the chat and seat the two models in a new random order.")
        self.next_round.clicked.connect(self.new_round)
        row.addWidget(self.result, 1)
        row.addStretch(0)
        row.addWidget(self.next_round)
        self.tally = QLabel()
        self.tally.setObjectName("tallyLine")
        self.tally.setWordWrap(True)
        self.tally.setProperty("muted", True)
        self.all_tallies = QPushButton("All tallies…")
        self.all_tallies.setToolTip("Votes of every model pair so far, with win rates and confidence intervals.")
        self.all_tallies.clicked.connect(self.show_tallies)
        tally_row = QHBoxLayout()
        tally_row.setContentsMargins(0, 0, 0, 0)
        tally_row.addWidget(self.tally, 1)
        tally_row.addWidget(self.all_tallies)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addLayout(tally_row)
        self.set_state(ready=False, vote=None)

    def set_state(self, *, ready: bool, vote: str | None, left: str = "", right: str = "") -> None:
        """Before the vote: buttons (enabled once both replies are in). After it: the reveal."""
        asking = vote is None
        self.question.setVisible(asking)
        for button in self.buttons.values():
            button.setVisible(asking)
            button.setEnabled(ready)
        self.question.setText("Which answer is better?" if ready else "Vote once both answers are in.")
        self.result.setVisible(not asking)
        self.next_round.setVisible(not asking)
        if not asking:
            self.result.setText(f"You voted <b>{VOTE_LABELS[vote]}</b>. Left was <b>{left}</b>, "
                                f"Right was <b>{right}</b>.")

    def set_tally(self, tally: PairTally | None, point_of_view: str = "") -> None:
        self.tally.setText(tally.summary(point_of_view or None) if tally and tally.total
                           else "No votes for this pair yet.")


class TalliesDialog(QDialog):
    """Every pair's counts, each row from one model's point of view (both rows of a pair are shown)."""

    def __init__(self, tallies: list[PairTally], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Blind vote tallies")
        self.resize(860, 360)
        self.table = QTableWidget(0, len(TALLY_COLUMNS))
        self.table.setObjectName("talliesTable")
        self.table.setHorizontalHeaderLabels(TALLY_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        for pair in tallies:
            for model, other in ((pair.model_a, pair.model_b), (pair.model_b, pair.model_a)):
                self._add_row(pair, model, other)
        note = QLabel("Win rate = wins / (wins + losses); ties and both-bad votes are counted beside it. The "
                      "interval is the Wilson score interval: with few votes it is wide, as it should be.")
        note.setWordWrap(True)
        note.setProperty("muted", True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)

    def _add_row(self, pair: PairTally, model: str, other: str) -> None:
        rate = pair.win_rate(model)
        low, high = pair.interval(model)
        cells = (model, other, str(pair.wins(model)), str(pair.wins(other)), str(pair.ties), str(pair.both_bad),
                 "–" if rate is None else f"{100 * rate:.0f} %",
                 "–" if rate is None else f"{100 * low:.0f}–{100 * high:.0f} %")
        row = self.table.rowCount()
        self.table.insertRow(row)
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if column >= 2:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, column, item)
