"""Name the llama.cpp pre-tokenizer (``tokenizer.ggml.pre``) that matches a tokenizer.json.

llama.cpp's own converter hashes the token ids of a test string and looks the hash up in a table
of known base models, so any retrained or unusual vocabulary fails. We compare the tokenizer's
pre-tokenizer *definition* instead (split regex, ByteLevel options, digit splitting): the regex is
what llama.cpp reproduces per name, independent of the vocabulary. An unknown definition is a clear
error; the user may then choose a name (``--pre-tokenizer``), checked against the names llama.cpp knows.
"""

from __future__ import annotations

from typing import Any

from distill_gui.errors import ExportInputError

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN_REGEX = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK3_REGEXES = (
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    '[!"#$%&' + r"'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)

# Pre-tokenizer names llama.cpp accepts for BPE vocabularies (llama-vocab.cpp); "default" is its fallback.
KNOWN_PRE_NAMES = frozenset("""
default llama-bpe llama3 llama-v3 falcon3 deepseek-llm deepseek-coder deepseek-v3 deepseek-r1-qwen falcon mpt
starcoder gpt-2 phi-2 refact command-r qwen2 qwen35 stablelm2 olmo dbrx smaug-bpe poro-chat chatglm-bpe viking
jais tekken smollm codeshell bloom gpt3-finnish exaone chameleon minerva-7b megrez gpt-4o superbpe llama4
pixtral seed-coder
""".split())

# (steps signature) -> name. A step is ("split", regex) | ("bytelevel", use_regex) | ("digits", individual).
_SIGNATURES: list[tuple[tuple[tuple[Any, ...], ...], str]] = [
    ((("split", LLAMA3_REGEX), ("bytelevel", False)), "llama-bpe"),
    ((("split", QWEN2_REGEX), ("bytelevel", False)), "qwen2"),
    ((("split", TEKKEN_REGEX), ("bytelevel", False)), "tekken"),
    ((("bytelevel", True),), "gpt-2"),
    ((("digits", True), ("bytelevel", True)), "smollm"),
    (tuple(("split", r) for r in DEEPSEEK3_REGEXES) + (("bytelevel", False),), "deepseek-v3"),   # also R1 distills
]
# llama.cpp turns on ignore_merges for these names; a tokenizer without it gets the twin name below.
_IGNORE_MERGES_TWIN = {"llama-bpe": "smaug-bpe"}


def pre_tokenizer_steps(pre: dict[str, Any] | None) -> tuple[tuple[Any, ...], ...]:
    """Flatten a tokenizer.json ``pre_tokenizer`` into comparable steps."""
    if not pre:
        return ()
    items = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    steps = []
    for item in items:
        kind = item.get("type")
        if kind == "Split":
            pattern = item.get("pattern", {})
            regex = pattern.get("Regex", pattern.get("String"))
            if item.get("behavior", "Isolated") != "Isolated" or item.get("invert", False):
                steps.append(("split-other", regex, item.get("behavior"), item.get("invert")))
            else:
                steps.append(("split", _normalized(regex)))
        elif kind == "ByteLevel":
            steps.append(("bytelevel", bool(item.get("use_regex", True))))
        elif kind == "Digits":
            steps.append(("digits", bool(item.get("individual_digits", False))))
        else:
            steps.append((kind,))
    return tuple(steps)


def _normalized(regex: str | None) -> str | None:
    """Literal CR/LF characters and their regex escapes mean the same; compare them as escapes."""
    return regex.replace("\r", r"\r").replace("\n", r"\n") if regex else regex


def detect_pre_tokenizer(tokenizer_json: dict[str, Any], where: str) -> str:
    """The llama.cpp pre-tokenizer name whose splitting equals this tokenizer's.

    Raises:
        ExportInputError: The definition matches no known name; the message says how to choose one.
    """
    steps = pre_tokenizer_steps(tokenizer_json.get("pre_tokenizer"))
    ignore_merges = bool((tokenizer_json.get("model") or {}).get("ignore_merges", False))
    for signature, name in _SIGNATURES:
        if steps == signature:
            if name in _IGNORE_MERGES_TWIN and not ignore_merges:
                return _IGNORE_MERGES_TWIN[name]
            return name
    described = "; ".join(" ".join(str(part) for part in step) for step in steps) or "none"
    raise ExportInputError(
        f"{where}: the tokenizer's pre-tokenizer ({described}) matches none that llama.cpp knows by name, so "
        f"Ollama could split text differently from training. If you know the base model, choose its name with "
        f"--pre-tokenizer (e.g. llama-bpe for Llama 3, qwen2 for Qwen, gpt-2, smollm, tekken).")


def check_pre_name(name: str) -> str:
    """Validate a user-chosen pre-tokenizer name against the names llama.cpp accepts."""
    if name not in KNOWN_PRE_NAMES:
        raise ExportInputError(f"pre-tokenizer {name!r} is not a name llama.cpp knows; a GGUF with it would not "
                               f"load. Known names: {', '.join(sorted(KNOWN_PRE_NAMES))}.")
    return name
