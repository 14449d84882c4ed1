"""Chat page: teacher and student side by side through Ollama, with blind A/B voting.

One input sends the same conversation to both panes; each pane streams its reply in its own worker
(``ChatPane`` + ``PaneStream``) with live TTFT, tokens/s, tokens, time and memory. A pane that fails
shows a banner with Retry while the other carries on. Stop cancels both. Blind mode seats the two
chosen models Left / Right at random, hides who is who until the vote, records the vote in the user
data folder (``chatlog.votes``) and shows the pair's tally with a Wilson interval. Conversations save
as JSONL (reopenable) or markdown.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from distill_gui.chatlog import (
    PANES,
    Conversation,
    Reply,
    Turn,
    Vote,
    canonical_model,
    conversations_dir,
    load_conversation,
    load_tallies,
    newest_registered,
    pair_key,
    record_vote,
    save_conversation,
)
from distill_gui.config import ollama_model
from distill_gui.errors import DistillError
from distill_gui.gui.config_store import ConfigStore
from distill_gui.gui.crash import ErrorInfo, show_error
from distill_gui.gui.pages.common import page_header
from distill_gui.gui.widgets.blind_vote import BlindVoteBar, TalliesDialog
from distill_gui.gui.widgets.chat_pane import ChatPane
from distill_gui.gui.widgets.chat_settings import ChatSettingsForm, request_options
from distill_gui.gui.workers import TaskRunner

REDRAW_MS = 100          # streaming replies are redrawn at 10 Hz, not per token
BLIND_TITLES = {"A": "Left", "B": "Right"}


def list_ollama_models() -> list[Any]:
    """The installed models (worker thread); raises OllamaError when Ollama cannot be asked."""
    from distill_gui.ollama import OllamaClient

    with OllamaClient(timeout=10.0) as client:
        return client.list_models()


class ChatInput(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line."""

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt name
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class ChatPage(QWidget):
    status_text = Signal(str)

    def __init__(self, store: ConfigStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.runner = TaskRunner(self)
        self.conversation = Conversation()
        self.models_loaded = False
        self._blind_pair: tuple[str, str] = ("", "")
        self._pending_select: str | None = None
        self._build()
        self._redraw = QTimer(self)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._tick)
        self._update_controls()

    # ---- layout --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.blind = QCheckBox("Blind mode")
        self.blind.setObjectName("blindMode")
        self.blind.setToolTip("Seat the two chosen models Left / Right at random and hide which is which "
                              "until you vote. Starts a new conversation.")
        self.blind.toggled.connect(self._blind_toggled)
        self.shared = QCheckBox("Same settings for both")
        self.shared.setChecked(True)
        self.shared.setToolTip("One system prompt and one set of sampling settings for both panes; "
                               "untick to set them per pane.")
        self.shared.toggled.connect(self._shared_toggled)
        self.think = QCheckBox("Let thinking models think")
        self.think.setToolTip("Off: thinking-capable models are asked to answer directly (think: false).")
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Reopen a conversation saved as .jsonl.")
        self.open_button.clicked.connect(self._open_dialog)
        self.save_button = QPushButton("Save…")
        self.save_button.setObjectName("saveChat")
        self.save_button.setToolTip("Save the conversation as JSONL (reopenable) or markdown (for reading).")
        self.save_button.clicked.connect(self._save_dialog)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Start a new conversation (in blind mode: a new round).")
        self.clear_button.clicked.connect(self.clear)
        toolbar = QHBoxLayout()
        for widget in (self.blind, self.shared, self.think):
            toolbar.addWidget(widget)
        toolbar.addStretch(1)
        for widget in (self.open_button, self.save_button, self.clear_button):
            toolbar.addWidget(widget)
        self.shared_settings = ChatSettingsForm("sharedSettings")

        self.panes = {pane: ChatPane(pane) for pane in PANES}
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        for pane in self.panes.values():
            pane.reply_finished.connect(self._reply_finished)
            pane.retry_requested.connect(self.retry)
            pane.refresh_requested.connect(self.refresh_models)
            pane.model_changed.connect(lambda _p: self._update_tally())
            pane.view.copied.connect(lambda _t: self.status_text.emit("Copied to the clipboard."))
            splitter.addWidget(pane)
        splitter.setSizes([1, 1])

        self.vote_bar = BlindVoteBar()
        self.vote_bar.voted.connect(self.vote)
        self.vote_bar.new_round.connect(self.clear)
        self.vote_bar.show_tallies.connect(self.open_tallies)
        self.vote_bar.setVisible(False)

        self.input = ChatInput()
        self.input.setObjectName("chatInput")
        self.input.setPlaceholderText("Message both models… (Enter sends, Shift+Enter for a new line)")
        self.input.setFixedHeight(64)
        self.input.submitted.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primary")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop both replies (Esc); Ollama stops generating.")
        self.stop_button.clicked.connect(self.stop)
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setToolTip("Ask both models again for the last message.")
        self.regenerate_button.clicked.connect(self.regenerate)
        buttons = QVBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.send_button)
        row = QHBoxLayout()
        row.setSpacing(4)
        row.addWidget(self.stop_button)
        row.addWidget(self.regenerate_button)
        buttons.addLayout(row)
        input_row = QHBoxLayout()
        input_row.addWidget(self.input, 1)
        input_row.addLayout(buttons)
        QShortcut(QKeySequence("Esc"), self, self.stop, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        self.notice = QLabel()
        self.notice.setProperty("muted", True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Chat", "Send one message to two Ollama models and compare the replies as "
                                     "they stream: the teacher and its student, or any two models."))
        layout.addLayout(toolbar)
        layout.addWidget(self.shared_settings)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.vote_bar)
        layout.addLayout(input_row)
        layout.addWidget(self.notice)

    # ---- models --------------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        if not self.models_loaded and not self.runner.busy("models"):
            self.refresh_models()

    def refresh_models(self, select: str | None = None) -> None:
        """Ask Ollama for its models in a worker; ``select`` goes into pane B once they arrive."""
        if select:
            self._pending_select = select
        self.notice.setText("Asking Ollama for its models…")
        self.runner.run("models", list_ollama_models, heavy=False, on_done=self._models_arrived,
                        on_error=self._models_failed)

    def _models_arrived(self, entries: list[Any]) -> None:
        first = not self.models_loaded
        self.models_loaded = True
        names = [entry.name for entry in entries]
        choice = {pane: self.panes[pane].model() for pane in PANES}
        if first:
            choice = self._default_models(names)
        if self._pending_select:
            choice["B"] = self._pending_select
            self._pending_select = None
        for pane in PANES:
            self.panes[pane].hide_banner()
            self.panes[pane].set_models(entries, choice[pane] or None)
        self.notice.setText(f"{len(entries)} model{'s' if len(entries) != 1 else ''} in Ollama." if entries else
                            "Ollama has no models yet: register a student on the Export page or `ollama pull` one.")
        self._update_controls()

    def _default_models(self, names: list[str]) -> dict[str, str]:
        """A: the teacher when it is an Ollama model; B: the newest registered student (else the newest model)."""
        installed = {canonical_model(n): n for n in names}
        teacher = ""
        teacher_name = ollama_model(self.store.config.teacher.model) if self.store is not None else None
        if teacher_name is not None:
            teacher = installed.get(canonical_model(teacher_name), "")
        student = newest_registered(names) or ""
        others = [n for n in names if n not in (teacher, student)]
        student = student or next(iter(others), "")
        teacher = teacher or next((n for n in others if n != student), student)
        return {"A": teacher, "B": student}

    def _models_failed(self, info: ErrorInfo) -> None:
        self.notice.setText("Ollama did not answer; start it and press Refresh.")
        for pane in self.panes.values():
            pane.show_banner("Ollama is not reachable", info.message)
            pane.set_models([], pane.model() or None)
        self._update_controls()

    # ---- sending -------------------------------------------------------------------------------------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.is_streaming():
            return
        models = self._current_models()
        missing = [pane for pane in PANES if not models[pane]]
        if missing:
            self.notice.setText("Choose a model in each pane first (Refresh asks Ollama again).")
            return
        self.input.clear()
        self.conversation.models = models
        self.conversation.turns.append(Turn(text, {pane: Reply(models[pane]) for pane in PANES}))
        self._render_all()
        for pane in PANES:
            self._start(pane, len(self.conversation.turns) - 1)

    def _current_models(self) -> dict[str, str]:
        if self.blind.isChecked() and self.conversation.blind is not None:
            return dict(self.conversation.models)
        return {pane: self.panes[pane].model() for pane in PANES}

    def _settings_for(self, pane: str) -> dict[str, Any]:
        form = self.shared_settings if self.shared.isChecked() else self.panes[pane].settings
        return form.values()

    def _think_for(self, pane: str) -> bool | None:
        if not self.panes[pane].can_think():
            return None           # only a thinking model may be told either way (think: true elsewhere is a 400)
        return self.think.isChecked()

    def _start(self, pane: str, turn_index: int) -> None:
        turn = self.conversation.turns[turn_index]
        settings = self._settings_for(pane)
        self.conversation.settings[pane] = {"system": settings["system"], "options": request_options(settings)}
        self.panes[pane].start(turn.replies[pane], turn_index, self.conversation.messages_for(pane, turn_index),
                               host=None, system=settings["system"], options=request_options(settings),
                               think=self._think_for(pane))
        self._redraw.start()
        self._update_controls()

    def stop(self) -> None:
        """Cancel both replies."""
        for pane in self.panes.values():
            pane.stop()
        self._update_controls()

    def regenerate(self) -> None:
        """Ask both models again for the last message (their previous replies are replaced)."""
        if not self.conversation.turns or self.is_streaming():
            return
        index = len(self.conversation.turns) - 1
        turn = self.conversation.turns[index]
        models = self._current_models()
        for pane in PANES:
            turn.replies[pane] = Reply(models[pane])
        self._render_all()
        for pane in PANES:
            self._start(pane, index)

    def retry(self, pane: str) -> None:
        """Banner Retry: resend this pane's failed reply, or ask for the models again."""
        turns = self.conversation.turns
        reply = turns[-1].replies.get(pane) if turns else None
        if reply is None or reply.state != "error" or self.panes[pane].is_streaming():
            self.refresh_models()
            return
        turns[-1].replies[pane] = Reply(self._current_models()[pane])
        self._render_pane(pane)
        self._start(pane, len(turns) - 1)

    def clear(self) -> None:
        """A new conversation; in blind mode a new round with a fresh random seating."""
        self.stop()
        blind = self.conversation.blind is not None
        self.conversation = Conversation()
        for pane in self.panes.values():
            pane.reset()
        if blind:
            self._seat_blind()
            self._apply_blind_view()
        self._render_all()

    def is_streaming(self) -> bool:
        return any(pane.is_streaming() for pane in self.panes.values())

    def _reply_finished(self, _pane: str) -> None:
        if not self.is_streaming():
            self._redraw.stop()
        self._update_controls()

    def _tick(self) -> None:
        for pane in self.panes.values():
            if pane.is_streaming():
                pane.tick()

    # ---- blind mode ----------------------------------------------------------------------------------
    def _blind_toggled(self, on: bool) -> None:
        if on:
            pair = (self.panes["A"].model(), self.panes["B"].model())
            if not all(pair) or canonical_model(pair[0]) == canonical_model(pair[1]):
                self.notice.setText("Blind mode needs two different models: choose them in the panes first.")
                self.blind.blockSignals(True)
                self.blind.setChecked(False)
                self.blind.blockSignals(False)
                return
            self._blind_pair = pair
            self.stop()
            self.conversation = Conversation()
            for pane in self.panes.values():
                pane.reset()
            self._seat_blind()
        elif self.conversation.blind is not None:
            # Leaving blind mode reveals the round; the pickers show who sat where, and the chat goes on.
            self.conversation.blind["revealed"] = True
            for pane_id, model in self.conversation.models.items():
                self.panes[pane_id].select_model(model)
            if not self.conversation.turns:
                self.conversation.blind = None
        self._apply_blind_view()
        self._render_all()

    def _seat_blind(self, seating: tuple[str, str] | None = None) -> None:
        pair = list(seating or self._blind_pair)
        if seating is None:
            random.shuffle(pair)
        self.conversation.models = {"A": pair[0], "B": pair[1]}
        self.conversation.blind = {"vote": None, "revealed": False}

    def _hidden(self) -> bool:
        blind = self.conversation.blind
        return self.blind.isChecked() and blind is not None and not blind.get("revealed")

    def _apply_blind_view(self) -> None:
        hidden = self._hidden()
        blind = self.blind.isChecked()
        for pane_id, pane in self.panes.items():
            pane.set_blind(blind, hidden, BLIND_TITLES[pane_id] if blind else pane_id,
                           self.conversation.models.get(pane_id, ""))
        self.vote_bar.setVisible(self.blind.isChecked())
        self._update_controls()

    def vote(self, choice: str) -> None:
        """Record the vote, reveal who was Left and Right, and show the pair's tally."""
        blind = self.conversation.blind
        if blind is None or blind.get("vote") or not self._both_answered():
            return
        left, right = self.conversation.models["A"], self.conversation.models["B"]
        try:
            record_vote(Vote(left, right, choice, prompt=self.conversation.first_prompt))
        except OSError as exc:
            show_error(self, ErrorInfo(f"Cannot save the vote: {exc}. Check that the app's data folder is "
                                       f"writable.", title="Vote not saved"))
            return
        blind["vote"], blind["revealed"] = choice, True
        self._apply_blind_view()
        self._render_all()

    def _both_answered(self) -> bool:
        turns = self.conversation.turns
        return bool(turns) and all(turns[-1].replies[p].finished for p in PANES) and not self.is_streaming()

    def _update_tally(self) -> None:
        if not self.blind.isChecked():
            return
        pair = self._blind_pair if all(self._blind_pair) else (self.panes["A"].model(), self.panes["B"].model())
        tally = load_tallies().get(pair_key(*pair)) if all(pair) else None
        self.vote_bar.set_tally(tally, pair[1])

    def open_tallies(self) -> TalliesDialog:
        dialog = TalliesDialog(list(load_tallies().values()), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    # ---- files ---------------------------------------------------------------------------------------
    def _save_dialog(self) -> None:
        start = str(conversations_dir() / "chat.jsonl")
        path, chosen = QFileDialog.getSaveFileName(self, "Save the conversation", start,
                                                   "Conversation (*.jsonl);;Markdown transcript (*.md)")
        if path:
            if not Path(path).suffix:
                path += ".md" if "md" in chosen else ".jsonl"
            self.save_to(path)

    def save_to(self, path: str | Path) -> bool:
        try:
            saved = save_conversation(self.conversation, path)
        except DistillError as exc:
            show_error(self, ErrorInfo.from_exception(exc))
            return False
        self.notice.setText(f"Saved {saved}.")
        return True

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a conversation", str(conversations_dir()),
                                              "Conversation (*.jsonl);;All files (*)")
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> bool:
        """Replace the conversation with the one saved in ``path`` (JSONL)."""
        try:
            conversation = load_conversation(path)
        except DistillError as exc:
            show_error(self, ErrorInfo.from_exception(exc))
            return False
        self.stop()
        for turn in conversation.turns:
            for reply in turn.replies.values():
                if reply.state in ("pending", "streaming"):
                    reply.state = "stopped"      # saved while it streamed
        self.conversation = conversation
        for pane in self.panes.values():
            pane.reset()
        blind = conversation.blind
        self.blind.blockSignals(True)
        self.blind.setChecked(blind is not None and not blind.get("revealed"))
        self.blind.blockSignals(False)
        if self.blind.isChecked():
            self._blind_pair = (conversation.models.get("A", ""), conversation.models.get("B", ""))
        else:
            for pane_id, model in conversation.models.items():
                if pane_id in self.panes:
                    self.panes[pane_id].select_model(model)
        self._apply_blind_view()
        self._render_all()
        self.notice.setText(f"Opened {Path(path).name}: {len(conversation.turns)} message"
                            f"{'s' if len(conversation.turns) != 1 else ''}.")
        return True

    # ---- drawing -------------------------------------------------------------------------------------
    def _label_for(self, pane: str):
        def label(reply: Reply) -> str:
            if self.conversation.blind is not None and self.blind.isChecked():
                return BLIND_TITLES[pane] if self._hidden() else f"{BLIND_TITLES[pane]} · {reply.model}"
            return reply.model or pane
        return label

    def _render_pane(self, pane: str) -> None:
        turns = [(turn.user, turn.replies.get(pane)) for turn in self.conversation.turns]
        self.panes[pane].view.show_turns(turns, self._label_for(pane))

    def _render_all(self) -> None:
        for pane in PANES:
            self._render_pane(pane)
            self.panes[pane].show_stats()
        self._update_controls()

    def _update_controls(self) -> None:
        streaming = self.is_streaming()
        has_models = all(self._current_models().values())
        self.send_button.setEnabled(not streaming and has_models)
        self.stop_button.setEnabled(streaming)
        self.regenerate_button.setEnabled(not streaming and bool(self.conversation.turns))
        self.shared_settings.setVisible(self.shared.isChecked())
        blind = self.conversation.blind
        if self.blind.isChecked() and blind is not None:
            self.vote_bar.set_state(ready=self._both_answered(), vote=blind.get("vote"),
                                    left=self.conversation.models.get("A", ""),
                                    right=self.conversation.models.get("B", ""))
            self._update_tally()

    def _shared_toggled(self, shared: bool) -> None:
        if not shared:
            for pane in self.panes.values():
                pane.settings.set_values(self.shared_settings.values())
        for pane in self.panes.values():
            pane.settings.setVisible(not shared)
        self._update_controls()

    def select_student(self, name: str) -> None:
        """Put a freshly registered model into pane B (the Export page calls this)."""
        self.refresh_models(select=name)

    def shutdown(self) -> None:
        self.stop()
        self.runner.wait_all(5_000)
