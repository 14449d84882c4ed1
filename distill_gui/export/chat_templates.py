"""Derive an Ollama Go TEMPLATE (and stop strings) from the Jinja chat template a model was trained with.

A family is recognised by its markers (ChatML ``<|im_start|>``, Llama-3 headers, ``[INST]``, Gemma
turns, Phi-3 ``<|end|>``, Zephyr role tags). Each family has a few Go template variants covering the
way its published Jinja templates differ (spacing, where the system prompt goes). A variant is only
chosen if, on probe conversations, it renders *exactly* the text the Jinja template renders (minus
the BOS text that llama.cpp adds itself), with Ollama's semantics: the Modelfile SYSTEM is prepended
as a system message when a request has none, and ``.System`` joins all system messages.

When nothing matches, no TEMPLATE is written and the caller warns: Ollama >= 0.30 then renders the
GGUF's own Jinja template; older versions fall back to a guess.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from distill_gui.export import gotemplate

# Probe conversations: (messages, whether they carry a system message)
_SYS = "You are a careful assistant."
PROBES: list[list[dict[str, str]]] = [
    [{"role": "system", "content": _SYS}, {"role": "user", "content": "Hi there!"},
     {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Name a river."},
     {"role": "assistant", "content": "The Nile."}, {"role": "user", "content": "And a mountain?"}],
    [{"role": "user", "content": "Hi there!"}],
    [{"role": "system", "content": _SYS}, {"role": "user", "content": "Hi there!"}],
    [{"role": "user", "content": "Hi there!"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Bye."}],
]


@dataclass
class TemplateChoice:
    """The outcome of deriving a Go template."""

    family: str | None                      # "chatml", "llama3", "inst", "gemma", "phi3", "zephyr" or None
    variant: str | None = None              # which Go variant matched
    go_template: str | None = None          # None: write no TEMPLATE
    stop: list[str] = field(default_factory=list)
    default_system: str | None = None       # the template's built-in system prompt, if any
    warnings: list[str] = field(default_factory=list)


# ---- Jinja rendering like transformers' apply_chat_template ---------------------------------------
def render_jinja(template: str, messages: list[dict[str, str]], *, bos_token: str = "", eos_token: str = "",
                 add_generation_prompt: bool = True) -> str:
    """Render a HF chat template the way ``tokenizer.apply_chat_template(tokenize=False)`` does."""
    return _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=bos_token, eos_token=eos_token, tools=None, documents=None)


def _compile(template: str):
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlocks(Extension):
        """``{% generation %}...{% endgeneration %}`` (assistant-mask markers) render their body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlocks, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    import json

    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# ---- families and their Go variants --------------------------------------------------------------
CHATML_GO = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
             "{{ end }}<|im_start|>assistant\n")

LLAMA3_GO = ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
             "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")


def _role_tag_go(end: str, with_system: bool) -> str:
    """Phi-3 / Zephyr: ``<|role|>\\ncontent<end>\\n`` per message, then ``<|assistant|>\\n``."""
    skip = '{{ if ne .Role "system" }}' if not with_system else ""
    close = "{{ end }}" if not with_system else ""
    return (f"{{{{- range .Messages }}}}{skip}<|{{{{ .Role }}}}|>\n{{{{ .Content }}}}{end}\n{close}"
            f"{{{{ end }}}}<|assistant|>\n")


def _gemma_go() -> str:
    return ('{{- $first := true }}{{- range .Messages }}'
            '{{- if eq .Role "user" }}<start_of_turn>user\n'
            '{{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n'
            '{{ $first = false }}'
            '{{- else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
            '{{ end }}{{- end }}<start_of_turn>model\n')


def _inst_go(*, open_: str, close: str, asst_prefix: str, asst_suffix: str, system: str, turn_bos: str) -> str:
    """``[INST]`` family (Llama-2, Mistral): every spacing and system-placement knob their templates use.

    system: "llama2" (<<SYS>> block in the first user turn), "first" / "last" (system + blank line
    before the first / last user message), "none" (system not shown).
    """
    condition = {"llama2": "and $.System $first", "first": "and $.System $first",
                 "last": "and $.System (eq (len (slice $.Messages $i)) 1)"}.get(system)
    sys_open, sys_close = ("<<SYS>>\n", "\n<</SYS>>\n\n") if system == "llama2" else ("", "\n\n")
    sys_part = f"{{{{ if {condition} }}}}{sys_open}{{{{ $.System }}}}{sys_close}{{{{ end }}}}" if condition else ""
    bos_part = f"{{{{ if not $first }}}}{turn_bos}{{{{ end }}}}" if turn_bos else ""
    return ('{{- $first := true }}{{- range $i, $m := .Messages }}'
            f'{{{{- if eq $m.Role "user" }}}}{bos_part}{open_}{sys_part}{{{{ $m.Content }}}}{close}'
            '{{- $first = false }}'
            f'{{{{- else if eq $m.Role "assistant" }}}}{asst_prefix}{{{{ $m.Content }}}}{asst_suffix}'
            '{{- end }}{{- end }}')


def _inst_variants(bos: str, eos: str) -> list[tuple[str, str]]:
    variants = [("llama2", _inst_go(open_="[INST] ", close=" [/INST]", asst_prefix=" ", asst_suffix=f" {eos}",
                                    system="llama2", turn_bos=bos))]
    knobs = itertools.product(("first", "last", "none"), ("[INST] ", " [INST] "), (" [/INST]", "[/INST]"),
                              (" ", ""), (eos, f"{eos} ", f" {eos}"))
    for system, open_, close, prefix, suffix in knobs:
        name = f"mistral(system={system},open={open_!r},close={close!r},answer={prefix!r}..{suffix!r})"
        variants.append((name, _inst_go(open_=open_, close=close, asst_prefix=prefix, asst_suffix=suffix,
                                        system=system, turn_bos="")))
    return variants


def _family(template: str) -> str | None:
    if "<|im_start|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template:
        return "llama3"
    if "[INST]" in template:
        return "inst"
    if "<start_of_turn>" in template:
        return "gemma"
    if "<|user|>" in template and "<|end|>" in template:
        return "phi3"
    if "<|user|>" in template:
        return "zephyr"
    return None


def _variants(family: str, bos: str, eos: str) -> list[tuple[str, str]]:
    if family == "chatml":
        return [("chatml", CHATML_GO)]
    if family == "llama3":
        return [("llama3", LLAMA3_GO)]
    if family == "inst":
        return _inst_variants(bos, eos)
    if family == "gemma":
        return [("gemma", _gemma_go())]
    end = "<|end|>" if family == "phi3" else eos
    return [(f"{family}", _role_tag_go(end, True)), (f"{family}-no-system", _role_tag_go(end, False))]


def family_stops(family: str | None, template: str, eos: str) -> list[str]:
    """Stop strings: the family's turn markers, or the end-of-turn tokens an unknown template uses."""
    stops = {
        "chatml": ["<|im_start|>", "<|im_end|>"],
        "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "inst": ["[INST]", "[/INST]", eos],
        "gemma": ["<start_of_turn>", "<end_of_turn>"],
        "phi3": ["<|end|>", "<|user|>", "<|assistant|>"],
        "zephyr": ["<|system|>", "<|user|>", "<|assistant|>", eos],
    }.get(family)
    if stops is None:
        candidates = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", eos]
        stops = [s for s in candidates if s and s in template]
    return [s for i, s in enumerate(stops) if s and s not in stops[:i]]


# ---- derivation ----------------------------------------------------------------------------------
def ollama_values(messages: list[dict[str, str]], default_system: str | None) -> dict[str, Any]:
    """What Ollama passes a Go template for a chat request (messages + Modelfile SYSTEM)."""
    if default_system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": default_system}] + messages
    return {"System": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
            "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}


def _expected(template: str, messages, bos: str, eos: str, add_bos: bool) -> str | None:
    import jinja2

    try:
        text = render_jinja(template, messages, bos_token=bos, eos_token=eos)
    except jinja2.exceptions.TemplateError:
        return None   # e.g. "System role not supported": nothing to compare for this probe
    if add_bos and bos and text.startswith(bos):
        text = text[len(bos):]   # llama.cpp adds BOS itself when the GGUF says add_bos_token
    return text


def _default_system(template: str, bos: str, eos: str) -> str | None:
    """A system prompt the template inserts when the conversation has none (e.g. Qwen2.5's)."""
    marker = "\x00SYSTEM\x00"
    try:
        with_sys = render_jinja(template, [{"role": "system", "content": marker}, {"role": "user", "content": "Hi"}],
                                bos_token=bos, eos_token=eos)
        without = render_jinja(template, [{"role": "user", "content": "Hi"}], bos_token=bos, eos_token=eos)
    except Exception:  # noqa: BLE001 - any template failure just means: no default found
        return None
    if marker not in with_sys:
        return None
    prefix, suffix = with_sys.split(marker, 1)
    if without.startswith(prefix) and without.endswith(suffix) and len(without) > len(prefix) + len(suffix):
        return without[len(prefix):len(without) - len(suffix)]
    return None


def derive_template(template: str | None, *, bos: str = "", eos: str = "", add_bos: bool = False) -> TemplateChoice:
    """Pick the Go template that reproduces ``template`` exactly, or explain why there is none.

    Args:
        template: The model's Jinja chat template (None when it has none).
        bos, eos: The tokenizer's BOS/EOS texts (as the Jinja template sees them).
        add_bos: Whether the GGUF tells llama.cpp to add BOS itself.
    """
    if not template:
        return TemplateChoice(None, warnings=["the model has no chat template: no TEMPLATE written; chat in "
                                              "Ollama will send raw text. Export a model trained with one."])
    family = _family(template)
    choice = TemplateChoice(family, stop=family_stops(family, template, eos))
    if family is None:
        choice.warnings.append("the chat template is not one of the families we translate (ChatML/Qwen, Llama-3, "
                               "Llama-2/Mistral [INST], Gemma, Phi-3, Zephyr): no TEMPLATE written. Ollama >= 0.30 "
                               "uses the template inside the GGUF; older Ollama versions may format chats wrongly.")
        return choice
    choice.default_system = _default_system(template, bos, eos)
    expected = [(probe, _expected(template, probe, bos, eos, add_bos)) for probe in PROBES]
    checked = [(probe, text) for probe, text in expected if text is not None]
    if not checked:
        choice.warnings.append(f"the {family} chat template fails on every probe conversation; no TEMPLATE written.")
        return choice
    for name, go in _variants(family, bos, eos):
        if all(_render_go(go, probe, choice.default_system) == text for probe, text in checked):
            choice.variant, choice.go_template = name, go
            return choice
    choice.warnings.append(f"the chat template looks like {family} but differs from every Go template we emit "
                           f"for it (e.g. extra date lines or tool sections): no TEMPLATE written. Ollama >= 0.30 "
                           f"uses the exact template inside the GGUF; older versions may format chats wrongly.")
    return choice


def _render_go(go: str, messages, default_system: str | None) -> str | None:
    try:
        return gotemplate.render(go, ollama_values(messages, default_system))
    except gotemplate.TemplateError:
        return None
