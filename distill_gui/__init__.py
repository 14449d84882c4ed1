"""distill-gui: knowledge distillation of local LLMs, from teacher to a small student in Ollama."""

__version__ = "0.1.0"
