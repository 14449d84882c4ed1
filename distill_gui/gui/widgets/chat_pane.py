"""One side of the Chat page: model picker, settings, error banner, conversation, live stats.

The pane streams its own reply (a :class:`~distill_gui.gui.chat_stream.PaneStream` worker) into the
``Reply`` object the page gave it, and says ``reply_finished`` when it is over, however it ended. A
failure shows a banner with what to do and a Retry button in this pane only.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from distill_gui.chatlog import Reply, canonical_model
from distill_gui.formatting import human_bytes
from distill_gui.gui import theme
from distill_gui.gui.chat_stream import PaneStream
from distill_gui.gui.widgets.chat_settings import ChatSettingsForm
from distill_gui.gui.widgets.chat_view import ConversationView

BANNER_TITLES = {"OllamaUnavailable": "Ollama is not reachable", "ModelNotFound": "Model not found",
                 "OllamaStreamError": "The reply broke off", "OllamaTimeout": "Ollama did not answer in time",
                 "OllamaRequestError": "Ollama refused the request"}


def model_summary(entry: Any) -> str:
    """``398 MiB · Q4_K_M · 494M`` for an Ollama ModelEntry."""
    parts = [human_bytes(entry.size) if entry.size else "", entry.quantization_level, entry.parameter_size]
    return " · ".join(p for p in parts if p)


def stats_text(stats: dict[str, Any]) -> str:
    """TTFT, tokens/s, tokens, total time and memory, from a Reply's stats dict."""
    parts = []
    if stats.get("ttft_s") is not None:
        parts.append(f"TTFT {stats['ttft_s']:.2f} s")
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("eval_count") is not None:
        parts.append(f"{stats['eval_count']} tokens")
    if stats.get("total_s") is not None:
        parts.append(f"{stats['total_s']:.1f} s")
    if stats.get("memory_bytes"):
        share = stats.get("vram_bytes", 0) / stats["memory_bytes"]
        parts.append(f"{human_bytes(stats['memory_bytes'])} in memory ({100 * share:.0f} % GPU)")
    return " · ".join(parts)


class ChatPane(QFrame):
    """Pane ``pane_id`` ("A" or "B")."""

    reply_finished = Signal(str)          # pane id
    retry_requested = Signal(str)         # pane id
    model_changed = Signal(str)           # pane id
    refresh_requested = Signal()

    def __init__(self, pane_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pane_id = pane_id
        self.setObjectName(f"chatPane{pane_id}")
        self.entries: dict[str, Any] = {}
        self.stream: PaneStream | None = None
        self.reply: Reply | None = None
        self.turn_index = -1
        self.hide_identity = False
        self.blind = False
        self._dirty = False
        self._sent_at = 0.0
        self._chunks = 0
        self._last_elapsed = 0.0
        self._live: dict[str, Any] = {}
        self._build()

    # ---- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.title = QLabel(self.pane_id)
        self.title.setObjectName("paneTitle")
        self.title.setStyleSheet("font-weight: 600; font-size: 12pt;")
        self.picker = QComboBox()
        self.picker.setObjectName(f"model{self.pane_id}")
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setMinimumContentsLength(18)
        self.picker.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.picker.setToolTip("The Ollama model this pane talks to; a change applies to the next message.")
        self.picker.currentIndexChanged.connect(self._picked)
        self.refresh = QPushButton("Refresh")
        self.refresh.setToolTip("Ask Ollama again for its models.")
        self.refresh.clicked.connect(self.refresh_requested)
        self.info = QLabel()
        self.info.setProperty("muted", True)
        self.hidden_note = QLabel("Model hidden until you vote")
        self.hidden_note.setProperty("muted", True)
        self.hidden_note.setVisible(False)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.picker, 1)
        header.addWidget(self.hidden_note, 1)
        header.addWidget(self.refresh)
        self.settings = ChatSettingsForm(f"settings{self.pane_id}")
        self.settings.setVisible(False)

        self.banner = QFrame()
        self.banner.setObjectName("chatBanner")
        self.banner_title = QLabel()
        self.banner_title.setStyleSheet("font-weight: 600;")
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry = QPushButton("Retry")
        self.retry.setObjectName(f"retry{self.pane_id}")
        self.retry.setToolTip("Send this pane's last message again (the other pane keeps its reply).")
        self.retry.clicked.connect(lambda: self.retry_requested.emit(self.pane_id))
        banner_text = QVBoxLayout()
        banner_text.setContentsMargins(0, 0, 0, 0)
        banner_text.addWidget(self.banner_title)
        banner_text.addWidget(self.banner_text)
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.setContentsMargins(10, 8, 10, 8)
        banner_layout.addLayout(banner_text, 1)
        banner_layout.addWidget(self.retry, 0, Qt.AlignmentFlag.AlignTop)
        self.banner.setVisible(False)

        self.view = ConversationView()
        self.view.setObjectName(f"view{self.pane_id}")
        self.stats = QLabel(" ")
        self.stats.setObjectName(f"stats{self.pane_id}")
        self.stats.setProperty("muted", True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.info)
        layout.addWidget(self.settings)
        layout.addWidget(self.banner)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.stats)

    # ---- models --------------------------------------------------------------------------------------
    def set_models(self, entries: list[Any], select: str | None = None) -> None:
        """Fill the picker (newest first, as Ollama lists them); keep the current choice if still there."""
        current = select or self.model()
        self.entries = {entry.name: entry for entry in entries}
        self.picker.blockSignals(True)
        self.picker.clear()
        for entry in entries:
            self.picker.addItem(f"{entry.name}   ({model_summary(entry)})", entry.name)
        index = self._index_of(current) if current else -1
        if index < 0 and current:
            # Keep a model the list no longer has (Ollama restarted, model deleted): the chat says so.
            self.picker.addItem(f"{current}   (not installed)", current)
            index = self.picker.count() - 1
        self.picker.setCurrentIndex(max(index, 0) if self.picker.count() else -1)
        self.picker.blockSignals(False)
        self._picked()

    def _index_of(self, name: str) -> int:
        key = canonical_model(name)
        return next((i for i in range(self.picker.count()) if canonical_model(self.picker.itemData(i)) == key), -1)

    def model(self) -> str:
        return str(self.picker.currentData() or "")

    def select_model(self, name: str) -> None:
        index = self._index_of(name)
        if index >= 0:
            self.picker.setCurrentIndex(index)

    def can_think(self) -> bool:
        entry = self.entries.get(self.model())
        return entry is not None and "thinking" in entry.capabilities

    def _picked(self, _index: int = 0) -> None:
        entry = self.entries.get(self.model())
        if self.blind:
            self.info.setText("")
        elif entry is None:
            self.info.setText("Not installed in Ollama" if self.model() else "No model: is Ollama running?")
        else:
            details = [entry.family, f"trained context {entry.context_length}" if entry.context_length else "",
                       ", ".join(entry.capabilities)]
            self.info.setText(" · ".join(d for d in details if d))
        self.info.setVisible(bool(self.info.text()))
        self.model_changed.emit(self.pane_id)

    def set_blind(self, blind: bool, hidden: bool, title: str, model: str = "") -> None:
        """Blind mode: the seating is fixed for the round, so the picker goes; ``title`` is Left / Right.

        While ``hidden`` the model, its details and the stats stay hidden; after the vote the model
        this pane talked to is named in the header.
        """
        self.blind, self.hide_identity = blind, hidden
        self.title.setText(title)
        self.picker.setVisible(not blind)
        self.refresh.setVisible(not blind)
        self.hidden_note.setVisible(blind)
        if blind:
            entry = self.entries.get(model)
            self.hidden_note.setText("Model hidden until you vote" if hidden else
                                     f"{model}   ({model_summary(entry)})" if entry else model)
            self.hidden_note.setProperty("muted", hidden)
            self.hidden_note.setStyleSheet("" if hidden else "font-weight: 600;")
        self._picked()
        self.show_stats()

    # ---- streaming -----------------------------------------------------------------------------------
    def start(self, reply: Reply, turn_index: int, messages: list[dict[str, str]], *, host: str | None,
              system: str, options: dict[str, Any], think: bool | None) -> None:
        """Stream ``reply`` (state pending -> streaming -> done / error) from ``reply.model``."""
        self.stop()
        self.hide_banner()
        self.reply, self.turn_index = reply, turn_index
        reply.state, reply.content, reply.thinking, reply.error, reply.stats = "streaming", "", "", "", {}
        self._sent_at = time.perf_counter()
        self._chunks = 0
        self._last_elapsed = 0.0
        self._live = {}
        stream = PaneStream(reply.model, messages, host=host, system=system, options=options, think=think,
                            parent=self)
        stream.arrived.connect(self._on_arrived)
        stream.finished.connect(self._on_finished)
        stream.memory.connect(self._on_memory)
        stream.failed.connect(self._on_failed)
        stream.ended.connect(self._on_ended)
        self.stream = stream
        self._dirty = True
        stream.start()

    def is_streaming(self) -> bool:
        return self.reply is not None and self.reply.state == "streaming"

    def stop(self) -> None:
        """Cancel the running reply; what arrived stays, marked as stopped."""
        if self.stream is not None and self.is_streaming():
            self.stream.cancel()
            self._drain()
            self._detach()
            self.reply.state = "stopped"
            self.reply.stats = dict(self._live)
            self._dirty = True
            self.tick()
            self.reply_finished.emit(self.pane_id)

    def _detach(self) -> None:
        """Forget the stream: late signals from its thread are ignored from now on."""
        stream, self.stream = self.stream, None
        if stream is not None:
            for signal in (stream.arrived, stream.finished, stream.memory, stream.failed):
                signal.disconnect()

    def _on_arrived(self) -> None:
        if self._from_current_stream():
            self._drain()

    def _drain(self) -> None:
        """Take the pieces the worker has buffered into the reply and the live counters."""
        if self.stream is None or self.reply is None:
            return
        for content, thinking, elapsed in self.stream.take():
            self.reply.content += content
            self.reply.thinking += thinking
            self._chunks += 1
            if self._live.get("ttft_s") is None:
                self._live["ttft_s"] = elapsed
            self._last_elapsed = elapsed
        self._live["eval_count"] = self._chunks
        ttft = self._live.get("ttft_s")
        if self._chunks > 1 and ttft is not None and self._last_elapsed > ttft:
            self._live["tokens_per_s"] = (self._chunks - 1) / (self._last_elapsed - ttft)
        self._dirty = True

    def _on_finished(self, stats: Any) -> None:
        if not self._from_current_stream():
            return
        self.reply.content = stats.content
        self.reply.thinking = stats.thinking
        self.reply.stats = {"ttft_s": stats.ttft_s, "tokens_per_s": stats.tokens_per_s, "eval_count": stats.eval_count,
                            "total_s": stats.total_s, "done_reason": stats.done_reason,
                            "prompt_tokens": stats.prompt_tokens, "load_s": stats.load_s}
        self.reply.state = "done"
        self._dirty = True
        self.tick()
        self.reply_finished.emit(self.pane_id)

    def _on_memory(self, loaded: Any) -> None:
        if not self._from_current_stream() or loaded is None:
            return
        self.reply.stats["memory_bytes"] = loaded.size
        self.reply.stats["vram_bytes"] = loaded.size_vram
        self.show_stats()

    def _on_failed(self, error: Any) -> None:
        if not self._from_current_stream():
            return
        self._drain()
        self.reply.state = "error"
        self.reply.error = error.message
        self.reply.stats = dict(self._live)
        self.show_banner(BANNER_TITLES.get(type(error).__name__, "Chatting failed"), error.message)
        self._dirty = True
        self.tick()
        self.reply_finished.emit(self.pane_id)

    def _on_ended(self) -> None:
        sender = self.sender()
        if self._from_current_stream():
            self._detach()
        if sender is not None:
            sender.deleteLater()      # its thread is done: nothing will emit on it any more

    def _from_current_stream(self) -> bool:
        """True for a signal of the stream this pane follows now (not one stopped or replaced)."""
        sender = self.sender()
        return sender is not None and sender is self.stream and self.reply is not None

    # ---- drawing -------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Redraw the streaming reply and the live stats (called by the page's redraw timer)."""
        if self.reply is None:
            return
        if self._dirty:
            self._dirty = False
            self.view.update_reply(self.reply, self.turn_index)
        self.show_stats()

    def show_stats(self) -> None:
        reply = self.reply
        if reply is None:
            self.stats.setText(" ")
        elif self.hide_identity:
            self.stats.setText("Stats hidden until you vote (speed and memory give the model away).")
        elif reply.state == "streaming":
            live = dict(self._live, total_s=time.perf_counter() - self._sent_at)
            self.stats.setText("Streaming… " + stats_text(live))
        else:
            self.stats.setText(stats_text(reply.stats) or {"stopped": "Stopped.", "error": "Failed."}.get(
                reply.state, " "))

    def show_banner(self, title: str, message: str, *, retry: bool = True) -> None:
        colors = theme.current_colors()
        tint = QColor(colors.error)
        tint.setAlpha(40)
        self.banner.setStyleSheet(f"QFrame#chatBanner {{ background: rgba({tint.red()}, {tint.green()}, "
                                  f"{tint.blue()}, 40); border: 1px solid {colors.error}; border-radius: 6px; }}")
        self.banner_title.setText(title)
        self.banner_text.setText(message)
        self.retry.setVisible(retry)
        self.banner.setVisible(True)

    def hide_banner(self) -> None:
        self.banner.setVisible(False)

    def reset(self) -> None:
        """Forget the reply (conversation cleared or replaced)."""
        self.stop()
        self.reply, self.turn_index = None, -1
        self.hide_banner()
        self.show_stats()
