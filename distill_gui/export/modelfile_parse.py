"""Reading a Modelfile back: FROM / TEMPLATE / SYSTEM / PARAMETER, as the create API takes them.

The Export page lets the user edit the generated Modelfile; registering sends what the text says, so
the text is parsed here (every error names its line) before anything is written or sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from distill_gui.errors import ExportInputError

INT_PARAMETERS = frozenset({"top_k", "repeat_last_n", "seed", "num_predict", "num_keep", "num_ctx", "num_batch",
                            "num_gpu", "main_gpu", "num_thread", "draft_num_predict"})
FLOAT_PARAMETERS = frozenset({"temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                              "frequency_penalty"})
BOOL_PARAMETERS = frozenset({"use_mmap"})
LIST_PARAMETERS = frozenset({"stop"})


@dataclass
class ModelfileParts:
    """What the create API needs from a Modelfile."""

    from_: str = ""
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s*(.*)$", re.S)


def parse_modelfile(text: str) -> ModelfileParts:
    """Read FROM / TEMPLATE / SYSTEM / PARAMETER lines (values bare, ``"…"`` or ``\"\"\"…\"\"\"``).

    Raises:
        ExportInputError: Naming the line: an unknown instruction or parameter, a value of the wrong
            type, an unclosed quote, no FROM, or an instruction the Register step cannot send
            (ADAPTER, MESSAGE, LICENSE: use ``ollama create`` for those).
    """
    parts = ModelfileParts()
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            raise ExportInputError(f"Modelfile line {number}: {line.strip()!r} is not an instruction.")
        instruction, rest = match.group(1).upper(), match.group(2)
        if rest.lstrip().startswith('"""'):
            value, index = _triple_quoted(lines, index, rest.lstrip()[3:], number)
        else:
            value = _unquote(rest.strip(), number)
        _apply(parts, instruction, value, number)
    if not parts.from_:
        raise ExportInputError("The Modelfile has no FROM line; add FROM ./<model>.gguf (Reset restores it).")
    return parts


def _triple_quoted(lines: list[str], index: int, first: str, number: int) -> tuple[str, int]:
    collected = [first]
    while '"""' not in collected[-1]:
        if index >= len(lines):
            raise ExportInputError(f'Modelfile line {number}: the """ opened here is never closed.')
        collected.append(lines[index])
        index += 1
    joined = "\n".join(collected)
    value, _, tail = joined.partition('"""')
    if tail.strip():
        raise ExportInputError(f'Modelfile line {number}: text after the closing """: {tail.strip()!r}.')
    return value, index


def _unquote(value: str, number: int) -> str:
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise ExportInputError(f"Modelfile line {number}: the quote in {value!r} is not closed.")
        return value[1:-1]
    return value


def _apply(parts: ModelfileParts, instruction: str, value: str, number: int) -> None:
    if instruction == "FROM":
        parts.from_ = value
    elif instruction == "TEMPLATE":
        parts.template = value
    elif instruction == "SYSTEM":
        parts.system = value
    elif instruction == "PARAMETER":
        name, _, raw = value.strip().partition(" ")
        parsed = _parameter_value(name, _unquote(raw.strip(), number), number)
        if name in LIST_PARAMETERS:
            parts.parameters.setdefault(name, []).append(parsed)
        else:
            parts.parameters[name] = parsed
    elif instruction in ("ADAPTER", "MESSAGE", "LICENSE", "REQUIRES", "RENDERER", "PARSER", "DRAFT"):
        raise ExportInputError(f"Modelfile line {number}: {instruction} cannot be sent by Register (it sends FROM, "
                               f"TEMPLATE, SYSTEM and PARAMETER); remove it, or register by hand with "
                               f"`ollama create NAME -f Modelfile`.")
    else:
        raise ExportInputError(f"Modelfile line {number}: unknown instruction {instruction}; the known ones are "
                               f"FROM, TEMPLATE, SYSTEM, PARAMETER, ADAPTER, LICENSE, MESSAGE.")


def _parameter_value(name: str, raw: str, number: int) -> Any:
    try:
        if name in INT_PARAMETERS:
            return int(raw)
        if name in FLOAT_PARAMETERS:
            return float(raw)
        if name in BOOL_PARAMETERS:
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
    except ValueError:
        kind = "a whole number" if name in INT_PARAMETERS else "a number" if name in FLOAT_PARAMETERS else "true/false"
        raise ExportInputError(f"Modelfile line {number}: PARAMETER {name} must be {kind}, not {raw!r}.") from None
    if name in LIST_PARAMETERS:
        if not raw:
            raise ExportInputError(f"Modelfile line {number}: PARAMETER stop needs a value.")
        return raw
    known = sorted(INT_PARAMETERS | FLOAT_PARAMETERS | BOOL_PARAMETERS | LIST_PARAMETERS)
    raise ExportInputError(f"Modelfile line {number}: unknown parameter {name!r}. Known: {', '.join(known)}.")


def with_from(text: str, gguf_name: str) -> str:
    """The Modelfile text with its (first) FROM pointing at ``./<gguf_name>``; a FROM is added if missing."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^\s*FROM\s", line, re.I):
            lines[index] = f"FROM ./{gguf_name}"
            return "\n".join(lines) + "\n"
    return f"FROM ./{gguf_name}\n" + text

