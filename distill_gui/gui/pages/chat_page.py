"""Chat page (a placeholder until the chat issue fills it: it says what will be here)."""

from __future__ import annotations

from .placeholder import PlaceholderPage


class ChatPage(PlaceholderPage):
    def __init__(self, parent=None) -> None:
        super().__init__(
            "Chat", "Talk to the teacher and the student side by side, through Ollama.",
            ["Two panes, each with its own Ollama model; one input sends to both",
             "Replies stream at the same time, with time to first token, tokens/s and memory per pane",
             "Blind mode: vote left / right / tie without knowing which is which; tallies are kept",
             "Save and reopen conversations (JSONL and markdown)"],
            "Today you can compare two Ollama models from the command line:<br><code>distill-gui compare "
            "MODEL_A MODEL_B --prompt \"…\"</code>", parent=parent)
