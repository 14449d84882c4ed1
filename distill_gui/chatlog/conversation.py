"""A side-by-side conversation: one user message per turn, one reply per pane (Qt-free).

Both panes get the same user messages; each pane's model sees its own earlier replies, so the
history it is sent is ``system? + (user, own reply)* + user``. Conversations are saved as JSONL
(reopenable: a header line, then one line per turn) or as markdown (for reading and sharing).

JSONL layout::

    {"type": "conversation", "version": 1, "created": "...", "models": {"A": "...", "B": "..."},
     "settings": {"A": {"system": "...", "options": {...}}, "B": {...}}, "blind": null}
    {"type": "turn", "user": "Hi", "replies": {"A": {"model": "...", "content": "...", "state": "done",
     "stats": {"ttft_s": 0.3, "tokens_per_s": 41.0, ...}}, "B": {...}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.chatlog.votes import VOTE_LABELS, now_iso
from distill_gui.errors import UserInputError
from distill_gui.paths import user_data_dir

PANES = ("A", "B")
FORMAT_VERSION = 1
REPLY_STATES = ("pending", "streaming", "done", "stopped", "error")


class ConversationFileError(UserInputError):
    """A conversation file cannot be read: not found, not JSONL, or not a distill-gui conversation."""


def conversations_dir() -> Path:
    """Default folder for saved conversations (created on first use)."""
    path = user_data_dir() / "conversations"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Reply:
    """One pane's answer to one user message.

    ``state``: pending (not sent yet), streaming, done (the model stopped or hit the limit), stopped
    (the user pressed Stop), error (``error`` says why; ``content`` keeps what arrived before).
    ``stats``: ttft_s, tokens_per_s, eval_count, total_s, done_reason, prompt_tokens, load_s and,
    when /api/ps answered, memory_bytes and vram_bytes.
    """

    model: str
    content: str = ""
    thinking: str = ""
    state: str = "pending"
    error: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "error")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        state = data.get("state", "done")
        return cls(model=str(data.get("model", "")), content=str(data.get("content", "")),
                   thinking=str(data.get("thinking", "")),
                   state=state if state in REPLY_STATES else "done", error=str(data.get("error", "")),
                   stats=dict(data.get("stats") or {}))


@dataclass
class Turn:
    user: str
    replies: dict[str, Reply] = field(default_factory=dict)


@dataclass
class Conversation:
    """The whole side-by-side chat.

    Attributes:
        models: Pane -> the model it talks to now (a picker change applies to the next message).
        settings: Pane -> {"system": str, "options": {...}} as last sent.
        blind: None, or {"vote": None | one of VOTES, "revealed": bool} for a blind round
            (pane A is shown as Left, pane B as Right).
    """

    turns: list[Turn] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    blind: dict[str, Any] | None = None
    created: str = field(default_factory=now_iso)

    def messages_for(self, pane: str, turn_index: int) -> list[dict[str, str]]:
        """The chat messages pane ``pane`` sends for turn ``turn_index`` (system prompt not included).

        Earlier replies that produced no text (failed before the first token) are left out;
        Ollama merges the consecutive user messages that leaves.
        """
        messages: list[dict[str, str]] = []
        for turn in self.turns[:turn_index]:
            messages.append({"role": "user", "content": turn.user})
            reply = turn.replies.get(pane)
            if reply is not None and reply.content:
                messages.append({"role": "assistant", "content": reply.content})
        messages.append({"role": "user", "content": self.turns[turn_index].user})
        return messages

    @property
    def first_prompt(self) -> str:
        return self.turns[0].user if self.turns else ""

    # -- JSONL -------------------------------------------------------------------------------------------

    def to_jsonl(self) -> str:
        header = {"type": "conversation", "version": FORMAT_VERSION, "created": self.created,
                  "models": self.models, "settings": self.settings, "blind": self.blind}
        lines = [json.dumps(header, ensure_ascii=False)]
        for turn in self.turns:
            lines.append(json.dumps({"type": "turn", "user": turn.user,
                                     "replies": {pane: asdict(reply) for pane, reply in turn.replies.items()}},
                                    ensure_ascii=False))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_jsonl(cls, text: str, *, source: str = "the conversation file") -> Conversation:
        """Parse :meth:`to_jsonl` output.

        Raises:
            ConversationFileError: A line is not JSON, or the file is not a distill-gui conversation.
        """
        conversation: Conversation | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ConversationFileError(f"{source}, line {number}: not valid JSON ({exc.msg}). Open a "
                                            f"conversation saved as .jsonl by distill-gui.") from None
            kind = data.get("type") if isinstance(data, dict) else None
            if conversation is None:
                if kind != "conversation":
                    raise ConversationFileError(f"{source} is not a distill-gui conversation: line {number} "
                                                f"should be its header ({{\"type\": \"conversation\"}}).")
                conversation = cls(models=dict(data.get("models") or {}), settings=dict(data.get("settings") or {}),
                                   blind=data.get("blind"), created=str(data.get("created") or now_iso()))
            elif kind == "turn":
                replies = {pane: Reply.from_json(reply) for pane, reply in (data.get("replies") or {}).items()
                           if isinstance(reply, dict)}
                conversation.turns.append(Turn(str(data.get("user", "")), replies))
        if conversation is None:
            raise ConversationFileError(f"{source} is empty; there is no conversation to open.")
        return conversation

    # -- markdown ----------------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """A readable transcript: each user message, then each pane's reply with its stats."""
        blind = self.blind or {}
        hidden = bool(self.blind) and not blind.get("revealed")
        names = {pane: _pane_title(pane, self.models.get(pane, ""), self.blind is not None, hidden)
                 for pane in PANES}
        lines = ["# Side-by-side chat", "", f"Saved {now_iso()} · started {self.created}", ""]
        lines += [f"- **{names[pane].split(' · ')[0]}**: {'hidden' if hidden else self.models.get(pane, '?')}"
                  for pane in PANES]
        if blind.get("vote"):
            lines.append(f"- **Vote**: {VOTE_LABELS.get(blind['vote'], blind['vote'])}")
        system = {pane: (self.settings.get(pane) or {}).get("system", "") for pane in PANES}
        if any(system.values()):
            lines += ["", "## System prompt", ""]
            if system["A"] == system["B"]:
                lines.append(system["A"])
            else:
                lines += [f"**{pane}:** {system[pane] or '(none)'}" for pane in PANES]
        for number, turn in enumerate(self.turns, start=1):
            lines += ["", f"## {number}. You", "", turn.user]
            for pane in PANES:
                reply = turn.replies.get(pane)
                if reply is None:
                    continue
                title = _pane_title(pane, reply.model, self.blind is not None, hidden)
                lines += ["", f"### {title}", "", reply.content or "_(no answer)_"]
                note = _reply_note(reply)
                if note:
                    lines += ["", f"_{note}_"]
        return "\n".join(lines) + "\n"


def _pane_title(pane: str, model: str, blind: bool, hidden: bool) -> str:
    label = ("Left" if pane == "A" else "Right") if blind else pane
    return label if hidden else f"{label} · {model}"


def _reply_note(reply: Reply) -> str:
    if reply.state == "error":
        return f"failed: {reply.error}"
    if reply.state == "stopped":
        return "stopped by the user"
    stats = reply.stats
    parts = []
    if stats.get("ttft_s") is not None:
        parts.append(f"TTFT {stats['ttft_s']:.2f} s")
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("eval_count"):
        parts.append(f"{stats['eval_count']} tokens")
    if stats.get("done_reason") == "length":
        parts.append("hit the token limit")
    return " · ".join(parts)


def save_conversation(conversation: Conversation, path: str | Path) -> Path:
    """Write ``path`` as markdown when it ends in .md, else as JSONL; atomically (temp file + rename).

    Raises:
        ConversationFileError: The folder cannot be written.
    """
    path = Path(path)
    text = conversation.to_markdown() if path.suffix.lower() in (".md", ".markdown") else conversation.to_jsonl()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if "tmp" in locals():
            Path(tmp).unlink(missing_ok=True)
        raise ConversationFileError(f"Cannot save the conversation to {path}: {exc.strerror or exc}. Choose a "
                                    f"folder you can write to.") from None
    return path


def load_conversation(path: str | Path) -> Conversation:
    """Read a conversation saved as JSONL.

    Raises:
        ConversationFileError: Missing file, a markdown transcript, or not a conversation.
    """
    path = Path(path)
    if path.suffix.lower() in (".md", ".markdown"):
        raise ConversationFileError(f"{path.name} is a markdown transcript, which is for reading; open the "
                                    f".jsonl file saved with it to continue the conversation.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversationFileError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    return Conversation.from_jsonl(text, source=str(path))
