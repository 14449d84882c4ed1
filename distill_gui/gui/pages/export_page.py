"""Export page (a placeholder until the export issue fills it: it says what will be here)."""

from __future__ import annotations

from .placeholder import PlaceholderPage


class ExportPage(PlaceholderPage):
    def __init__(self, parent=None) -> None:
        super().__init__(
            "Export", "Turn a distilled student into a GGUF file with an Ollama Modelfile, and register it.",
            ["Choose a run (or any Hugging Face folder) and a checkpoint",
             "GGUF type (f16, q8_0, q4_0…) with the size each would take",
             "The Ollama model name and quantize-on-register (q4_K_M…), a system prompt",
             "The generated Modelfile, editable, with reset",
             "Export and Register with progress; the registration is verified with a probe chat"],
            "Today you can export from the command line:<br><code>distill-gui export RUN/final --out RUN/export "
            "--type f16 --register</code>", parent=parent)
