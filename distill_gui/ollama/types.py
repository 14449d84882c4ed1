"""Typed results of the Ollama client: plain frozen dataclasses, no pydantic, no raw dicts.

Each ``from_json`` reads the server's JSON as documented (docs/ollama.md) and tolerates
fields that older servers leave out (they become ``None`` or empty). Durations arrive in
nanoseconds and are stored here in seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

NS = 1e9


def parse_time(text: Any) -> datetime | None:
    """RFC 3339 with up to nanosecond precision (Go's format) -> aware datetime; None if unreadable."""
    if isinstance(text, datetime):
        return text
    if not isinstance(text, str) or not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(f"{base}.{micro}{zone}")
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    number = _int_or_none(value)
    return None if number is None else number / NS


# ---------------------------------------------------------------------------------------------------
# Models: /api/tags, /api/show, /api/ps


@dataclass(frozen=True)
class ModelEntry:
    """One installed model from ``/api/tags``.

    ``context_length`` is the model's trained maximum, not the window it will run with (that one is
    :attr:`LoadedModel.context_length`). ``capabilities`` and the lengths are missing on older servers.
    """

    name: str
    model: str
    size: int
    digest: str
    modified_at: datetime | None
    format: str
    family: str
    families: tuple[str, ...]
    parameter_size: str
    quantization_level: str
    context_length: int | None
    embedding_length: int | None
    capabilities: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelEntry:
        details = data.get("details") or {}
        name = data.get("name") or data.get("model") or ""
        return cls(
            name=name,
            model=data.get("model") or name,
            size=_int_or_none(data.get("size")) or 0,
            digest=data.get("digest") or "",
            modified_at=parse_time(data.get("modified_at")),
            format=details.get("format") or "",
            family=details.get("family") or "",
            families=tuple(details.get("families") or ()),
            parameter_size=details.get("parameter_size") or "",
            quantization_level=details.get("quantization_level") or "",
            context_length=_int_or_none(details.get("context_length")),
            embedding_length=_int_or_none(details.get("embedding_length")),
            capabilities=tuple(data.get("capabilities") or ()),
        )


@dataclass(frozen=True)
class ModelInfo:
    """Details of one model from ``/api/show``.

    Attributes:
        parameters: The model's stored parameters as a dict; ``stop`` (and any other repeated name)
            is always a list. Read from the text block Ollama returns (one ``name value`` per line).
        parameters_text: That text block, unparsed.
        model_info: GGUF key/values (arrays longer than 5 items come back empty, as the server sends them).
    """

    name: str
    template: str
    system: str
    parameters: dict[str, Any]
    parameters_text: str
    model_info: dict[str, Any]
    capabilities: tuple[str, ...]
    format: str
    family: str
    parameter_size: str
    quantization_level: str
    license: str
    modelfile: str
    modified_at: datetime | None

    @property
    def architecture(self) -> str:
        return str(self.model_info.get("general.architecture") or self.family or "")

    @property
    def context_length(self) -> int | None:
        """The trained maximum context, ``model_info[arch + ".context_length"]``."""
        return _int_or_none(self.model_info.get(f"{self.architecture}.context_length"))

    @property
    def stop(self) -> list[str]:
        return list(self.parameters.get("stop", []))

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ModelInfo:
        details = data.get("details") or {}
        text = data.get("parameters") or ""
        license_text = data.get("license") or ""
        if isinstance(license_text, list):
            license_text = "\n".join(map(str, license_text))
        return cls(
            name=name,
            template=data.get("template") or "",
            system=data.get("system") or "",
            parameters=parse_parameters(text),
            parameters_text=text,
            model_info=dict(data.get("model_info") or {}),
            capabilities=tuple(data.get("capabilities") or ()),
            format=details.get("format") or "",
            family=details.get("family") or "",
            parameter_size=details.get("parameter_size") or "",
            quantization_level=details.get("quantization_level") or "",
            license=license_text,
            modelfile=data.get("modelfile") or "",
            modified_at=parse_time(data.get("modified_at")),
        )


# Parameters that may repeat in a Modelfile and therefore always read back as a list.
LIST_PARAMETERS = frozenset({"stop"})


def parse_parameters(text: str) -> dict[str, Any]:
    """Read ``/api/show``'s parameter block: lines ``<name padded to 30> <Go %#v value>``.

    Strings come quoted (Go syntax, close to JSON), numbers and booleans bare. A name that appears
    more than once, or is ``stop``, becomes a list in order of appearance.
    """
    values: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, raw = line.strip().partition(" ")
        if not name:
            continue
        value = _parse_go_value(raw.strip())
        if name in values:
            previous = values[name]
            values[name] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            values[name] = [value] if name in LIST_PARAMETERS else value
    return values


def _parse_go_value(raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            return json.loads(raw)
        except ValueError:  # Go escapes JSON lacks (\x..): fall back to a Python string literal
            try:
                return raw[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
            except UnicodeDecodeError:
                return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    for number_type in (int, float):
        try:
            return number_type(raw)
        except ValueError:
            pass
    return raw


@dataclass(frozen=True)
class LoadedModel:
    """One model resident in memory, from ``/api/ps``.

    Attributes:
        size: Total bytes in memory. size_vram: bytes of it on the GPU.
        context_length: The num_ctx actually allocated (missing on older servers).
        expires_at: When keep_alive runs out and the model unloads.
    """

    name: str
    model: str
    digest: str
    size: int
    size_vram: int
    context_length: int | None
    expires_at: datetime | None
    family: str
    parameter_size: str
    quantization_level: str

    @property
    def gpu_fraction(self) -> float:
        """Share of the model on the GPU (1.0 = fully offloaded), as ``ollama ps`` shows it."""
        return self.size_vram / self.size if self.size else 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadedModel:
        details = data.get("details") or {}
        name = data.get("name") or data.get("model") or ""
        return cls(
            name=name,
            model=data.get("model") or name,
            digest=data.get("digest") or "",
            size=_int_or_none(data.get("size")) or 0,
            size_vram=_int_or_none(data.get("size_vram")) or 0,
            context_length=_int_or_none(data.get("context_length")),
            expires_at=parse_time(data.get("expires_at")),
            family=details.get("family") or "",
            parameter_size=details.get("parameter_size") or "",
            quantization_level=details.get("quantization_level") or "",
        )


# ---------------------------------------------------------------------------------------------------
# Inference: /api/chat and /api/generate


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one generated token, with the top alternatives when requested.

    ``bytes`` are the token's UTF-8 bytes; ``None`` where the source dropped them (the ``ollama``
    package's chat types do; :meth:`OllamaClient.generate` keeps them).
    """

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top_logprobs: tuple[TokenLogprob, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> TokenLogprob:
        get = data.get if isinstance(data, dict) else (lambda key, default=None: getattr(data, key, default))
        raw_bytes = get("bytes", None)
        return cls(
            token=get("token", "") or "",
            logprob=float(get("logprob", 0.0)),
            bytes=None if raw_bytes is None else tuple(int(b) for b in raw_bytes),
            top_logprobs=tuple(cls.from_json(alt) for alt in (get("top_logprobs", None) or ())),
        )


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed reply: answer text, reasoning text, and per-token logprobs if asked for.

    ``elapsed_s`` is the time since the request was sent, measured by the client.
    """

    content: str = ""
    thinking: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class ChatStats:
    """The end of a reply: the whole text plus timings. The last item a :class:`ChatStream` yields.

    Attributes:
        ttft_s: Time to first token (answer or reasoning), measured by the client from sending the
            request; includes model load time on a cold start. None if nothing was generated.
        total_s: Wall time from sending the request to the final line, measured by the client.
        eval_count / eval_s: Generated tokens and the server's time generating them.
        prompt_tokens / prompt_eval_s: Prompt tokens evaluated and the time for it (a prompt cut to
            fit the context shows up as fewer prompt tokens than sent).
        load_s: Server time spent loading the model for this request.
        server_total_s: The server's ``total_duration``.
        context: Token ids of prompt + reply (generate only, deprecated by Ollama).
    """

    model: str
    done_reason: str
    content: str
    thinking: str
    ttft_s: float | None
    total_s: float
    eval_count: int
    eval_s: float
    prompt_tokens: int
    prompt_eval_s: float
    load_s: float
    server_total_s: float
    logprobs: tuple[TokenLogprob, ...] = ()
    context: tuple[int, ...] | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed from the server's counters: eval_count / eval_duration."""
        return self.eval_count / self.eval_s if self.eval_s > 0 else None


# ---------------------------------------------------------------------------------------------------
# Registering a model


@dataclass(frozen=True)
class RegisterProgress:
    """A progress report of :meth:`OllamaClient.register_model`.

    Attributes:
        stage: ``"hash"`` (digesting a local file), ``"upload"`` (sending a blob), ``"create"``
            (the server's create stream) or ``"verify"`` (reading the model back).
        message: A short line for a status bar or log.
        file: The file key concerned (hash/upload), else None.
        completed / total: Bytes done and expected, when the stage has a size (None otherwise).
    """

    stage: str
    message: str
    file: str | None = None
    completed: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class RegisterResult:
    """What registering did and what Ollama reports back afterwards.

    Attributes:
        digests: File key -> ``sha256:<hex>`` as sent in the create request.
        uploaded: File keys whose blob was sent; skipped: those the server already had.
        statuses: The create stream's status lines, in order (``"success"`` last).
        info: ``/api/show`` of the new model, already checked against what was sent.
    """

    name: str
    digests: dict[str, str]
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    bytes_uploaded: int
    statuses: tuple[str, ...]
    info: ModelInfo
    warnings: tuple[str, ...] = field(default=())
