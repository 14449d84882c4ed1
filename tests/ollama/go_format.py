"""Go's text formats that Ollama's JSON carries: RFC 3339 times and ``%#v`` parameter values.

Used by the test server (tests/ollama_server.py) to answer exactly as Ollama prints these.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from decimal import Decimal
from typing import Any


def go_time(moment: datetime) -> str:
    """RFC 3339 with nanoseconds, as Go marshals a time.Time."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000" + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


def go_value(value: Any) -> str:
    """Go's ``%#v`` of a JSON-decoded value (strings quoted, numbers as float64 in shortest %g form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    if isinstance(value, str):
        return _go_quote(value)
    return json.dumps(value)


def _go_float(number: float) -> str:
    if number == 0:
        return "0"
    if not math.isfinite(number):
        return "+Inf" if number > 0 else ("-Inf" if number < 0 else "NaN")
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    text_digits = "".join(map(str, digits))
    point = len(digits) + exponent  # digits before the decimal point
    exp10 = point - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:  # Go's %g with shortest precision switches to %e here
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text_digits}"
    if point >= len(text_digits):
        return prefix + text_digits + "0" * (point - len(text_digits))
    return f"{prefix}{text_digits[:point]}.{text_digits[point:]}"


def _go_quote(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char])
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}")
    out.append('"')
    return "".join(out)


def show_parameters(parameters: dict[str, Any]) -> str:
    """The ``parameters`` text block of /api/show: ``%-30s %#v`` per value, lists one line per item."""
    lines = []
    for key in sorted(parameters):
        values = parameters[key] if isinstance(parameters[key], list) else [parameters[key]]
        lines += [f"{key:<30} {go_value(value)}" for value in values]
    return "\n".join(lines)
