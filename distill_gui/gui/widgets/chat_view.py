"""One pane's side of the conversation: user messages and this pane's replies, markdown rendered.

A single QTextBrowser per pane (selection across messages, smooth scrolling, one document). The
whole document is rebuilt when the conversation changes shape; while a reply streams only its body
is replaced (``update_reply``), at the page's ~10 Hz redraw tick rather than per token. Markdown
goes through Qt's own reader (``QTextCursor.insertMarkdown``); fenced code blocks then get a shaded
background so they stand apart. Each message header has a Copy link that copies the raw markdown.
"""

from __future__ import annotations

import html
from typing import Callable, Sequence

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QColor, QGuiApplication, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import QTextBrowser, QWidget

from distill_gui.chatlog import Reply
from distill_gui.gui import theme

LabelFor = Callable[[Reply], str]
WAITING = "waiting for the first token (a model that is not loaded yet takes a while)…"


class ConversationView(QTextBrowser):
    """Shows ``(user text, reply or None)`` pairs; ``copied(text)`` after a Copy link was used."""

    copied = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.document().setDocumentMargin(8)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._anchor)
        self.setPlaceholderText("The replies appear here.")
        self._copy_texts: dict[str, str] = {}
        self._reply_start: int | None = None      # document position where the last reply's body starts
        self._stable_pos: int | None = None       # ... and where its part that is still changing starts
        self._stable_text = ""                    # the reply text rendered before _stable_pos
        self._stable_thinking = ""
        theme.notifier().changed.connect(self._restyle)     # a bound slot: disconnected when this view goes
        self._last: tuple[Sequence[tuple[str, Reply | None]], LabelFor] | None = None

    # ---- building ------------------------------------------------------------------------------------
    def show_turns(self, turns: Sequence[tuple[str, Reply | None]], label_for: LabelFor) -> None:
        """Rebuild the document from the conversation (keeps the scroll position at the end)."""
        self._last = (turns, label_for)
        at_end = self._at_end()
        self.clear()
        self._copy_texts.clear()
        self._reply_start = self._stable_pos = None
        cursor = QTextCursor(self.document())
        first = True
        for index, (user, reply) in enumerate(turns):
            self._header(cursor, "You", f"user:{index}", user, accent=True, first=first)
            first = False
            self._markdown(cursor, user)
            if reply is not None:
                self._header(cursor, label_for(reply), f"reply:{index}", reply.content)
                self._reply_start = cursor.position()
                self._reply_body(cursor, reply)
        if at_end:
            self._scroll_to_end()

    def update_reply(self, reply: Reply, index: int) -> None:
        """Redraw the last reply (the one streaming) with its current text.

        Only the unfinished tail is re-rendered: text up to the last blank line outside a code fence
        is final, rendered once and kept, so a tick costs the size of the last paragraph, not of the
        whole reply (a long reply would otherwise make every redraw slower than the last).
        """
        if self._reply_start is None:
            return
        at_end = self._at_end()
        self._copy_texts[f"reply:{index}"] = reply.content
        cursor = QTextCursor(self.document())
        if self._stable_pos is None or reply.thinking != self._stable_thinking \
                or not reply.content.startswith(self._stable_text):
            cursor.setPosition(self._reply_start)
            self._stable_thinking, self._stable_text = reply.thinking, ""
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            self._thinking(cursor, reply.thinking)
            self._stable_pos = cursor.position()
        else:
            cursor.setPosition(self._stable_pos)
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        boundary = stable_boundary(reply.content, len(self._stable_text))
        if boundary > len(self._stable_text):
            self._markdown(cursor, reply.content[len(self._stable_text):boundary])
            self._stable_pos, self._stable_text = cursor.position(), reply.content[:boundary]
        self._reply_rest(cursor, reply, reply.content[boundary:], has_text=bool(reply.content))
        if at_end:
            self._scroll_to_end()

    def _header(self, cursor: QTextCursor, title: str, key: str, text: str, *, accent: bool = False,
                first: bool = False) -> None:
        colors = theme.current_colors()
        self._copy_texts[key] = text
        block = QTextBlockFormat()
        block.setTopMargin(0 if first else 14)
        block.setBottomMargin(2)
        if first and cursor.position() == 0:
            cursor.setBlockFormat(block)
        else:
            cursor.insertBlock(block, QTextCharFormat())
        color = colors.accent if accent else colors.text
        cursor.insertHtml(f"<span style='font-weight:600; color:{color}'>{html.escape(title)}</span>"
                          f"&nbsp;&nbsp;<a href='copy:{key}' style='color:{colors.muted}; font-size:small'>Copy</a>")

    def _markdown(self, cursor: QTextCursor, text: str) -> None:
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        start = cursor.position()
        cursor.insertMarkdown(text or " ")
        self._shade_code(start, cursor.position())

    def _reply_body(self, cursor: QTextCursor, reply: Reply) -> None:
        self._thinking(cursor, reply.thinking)
        self._reply_rest(cursor, reply, reply.content, has_text=bool(reply.content))

    def _thinking(self, cursor: QTextCursor, thinking: str) -> None:
        if thinking:
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            text = html.escape(thinking.strip()).replace("\n", "<br>")
            cursor.insertHtml(f"<span style='color:{theme.current_colors().muted}; font-style:italic'>"
                              f"Thinking: {text}</span>")

    def _reply_rest(self, cursor: QTextCursor, reply: Reply, text: str, *, has_text: bool) -> None:
        """The not-yet-final text of a reply, then the note its state calls for."""
        colors = theme.current_colors()
        if text.strip():
            self._markdown(cursor, text)
        elif not has_text and reply.state in ("pending", "streaming"):
            self._note(cursor, WAITING, colors.muted)
        elif not has_text and reply.state != "error":
            self._note(cursor, "(no answer)", colors.muted)
        if reply.state == "stopped":
            self._note(cursor, "Stopped.", colors.muted)
        elif reply.state == "error":
            self._note(cursor, f"Failed: {reply.error}", colors.error)
        elif reply.state == "done" and reply.stats.get("done_reason") == "length":
            self._note(cursor, "Cut off at the token limit (Max tokens).", colors.warn)

    def _note(self, cursor: QTextCursor, text: str, color: str) -> None:
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        cursor.insertHtml(f"<span style='color:{color}; font-style:italic'>{html.escape(text)}</span>")

    def _shade_code(self, start: int, end: int) -> None:
        """Give fenced code blocks a background and an inset, so code reads as code."""
        shade = QColor(theme.current_colors().surface_alt)
        block = self.document().findBlock(start)
        while block.isValid() and block.position() <= end:
            fmt = block.blockFormat()
            if fmt.hasProperty(QTextFormat.Property.BlockCodeFence):
                fmt.setBackground(shade)
                fmt.setLeftMargin(8)
                fmt.setRightMargin(8)
                cursor = QTextCursor(block)
                cursor.setBlockFormat(fmt)
            block = block.next()

    # ---- helpers -------------------------------------------------------------------------------------
    def _restyle(self, _colors: object = None) -> None:
        if self._last is not None:
            self.show_turns(*self._last)

    def _at_end(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _anchor(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("copy:"):
            copied = self._copy_texts.get(text[len("copy:"):], "")
            QGuiApplication.clipboard().setText(copied)
            self.copied.emit(copied)

    def plain_text(self) -> str:
        return self.document().toPlainText()

    def copy_link(self, key: str) -> None:
        """Act as if the Copy link of ``key`` ("user:0", "reply:0") was clicked (keyboard users, tests)."""
        self._anchor(QUrl(f"copy:{key}"))


def stable_boundary(text: str, start: int) -> int:
    """End of the last blank line at or after ``start`` that is outside a code fence (``start`` if none).

    ``start`` must itself be such a boundary (or 0). Markdown before it can no longer change as more
    text arrives (a new paragraph, list item or fence starts after a blank line).
    """
    boundary, in_fence, position = start, False, start
    for line in text[start:].splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            in_fence = not in_fence
        position += len(line)
        if not stripped and not in_fence and line.endswith("\n") and position < len(text):
            boundary = position
    return boundary
