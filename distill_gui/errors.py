"""User-facing errors.

Every failure the user can see is a :class:`DistillError` carrying a message written for a person:
what is wrong, where (file, line, key, model, host) and what to do. The CLI prints the message and
exits with ``exit_code``; the GUI shows it in a dialog with the details on demand.

Hierarchy::

    DistillError                 exit 1: something failed while working
    ├── UserInputError           exit 2: the user's input is wrong
    │   ├── ConfigError          bad TOML, unknown key, bad value, bad --set
    │   ├── DataError            missing/empty/malformed data file
    │   └── ModelError           model not found, unsupported, incompatible tokenizers
    └── (other packages add their own trees, e.g. distill_gui.ollama.errors.OllamaError)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2


class DistillError(Exception):
    """Base of every error shown to the user.

    Args:
        message: One or a few sentences for the user: what, where, what to do.
        details: Optional longer text (a traceback, a server reply) shown on demand.
    """

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class UserInputError(DistillError):
    """The user's input is wrong (config, paths, data, models, names). Exit code 2."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserInputError):
    """A config file, key, value or ``--set`` override is wrong."""


class DataError(UserInputError):
    """A data file is missing, empty, not UTF-8 or has a malformed row."""


class ModelError(UserInputError):
    """A model cannot be found, loaded, derived, or paired with the other model."""


class TrainingError(DistillError):
    """Training failed while running (out of memory, NaN loss, disk full...). Exit code 1."""


class ExportError(DistillError):
    """Writing GGUF / Modelfile failed while working. Exit code 1."""


class ExportInputError(UserInputError):
    """The export request is wrong (unsupported architecture, missing tokenizer, bad name, bad folder)."""
