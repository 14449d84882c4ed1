"""The Ollama Modelfile for an exported student: FROM, TEMPLATE, SYSTEM, stop strings, num_ctx.

The TEMPLATE is derived from the chat template the student was trained with and verified to render
the same text (chat_templates.py). ``build_modelfile`` returns a ``ModelfileSpec`` whose parts the
register step sends to Ollama's create API as they are, so the file and the API agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.errors import ExportInputError
from distill_gui.export.chat_templates import derive_template
from distill_gui.export.checkpoint import read_json
from distill_gui.export.vocab import load_vocab

DEFAULT_NUM_CTX = 4096


@dataclass
class ModelfileSpec:
    """Everything the Modelfile says, in parts."""

    gguf_name: str
    text: str                                  # the Modelfile itself
    template: str | None                       # Go TEMPLATE, None when not derivable
    system: str | None
    stop: list[str]
    parameters: dict[str, Any]                 # {"stop": [...], "num_ctx": n}: Ollama create "parameters"
    family: str | None = None                  # chat template family, e.g. "chatml"
    warnings: list[str] = field(default_factory=list)


def build_modelfile(model_dir: str | Path, gguf_name: str, *, system: str | None = None,
                    num_ctx: int | None = None) -> ModelfileSpec:
    """Build the Modelfile for the model in ``model_dir`` whose GGUF is ``gguf_name`` (same folder).

    Args:
        model_dir: The HF folder the GGUF comes from (its tokenizer and chat template are read).
        gguf_name: File name of the GGUF next to the Modelfile, e.g. ``student.gguf``.
        system: SYSTEM prompt; default: the chat template's own default system prompt, if any.
        num_ctx: Context window; default min(4096, trained context); clamped to the trained context.

    Raises:
        ExportInputError: Unreadable tokenizer/config, or a SYSTEM text the Modelfile cannot hold.
    """
    model_dir = Path(model_dir)
    config = read_json(model_dir / "config.json", what="model config")
    trained_ctx = int(config.get("max_position_embeddings") or DEFAULT_NUM_CTX)
    vocab = load_vocab(model_dir, _embedding_rows(config), model_config=config, detect_pre=False)
    bos = vocab.tokens[vocab.special_ids["bos"]] if "bos" in vocab.special_ids else ""
    eos = vocab.tokens[vocab.special_ids["eos"]] if "eos" in vocab.special_ids else ""
    choice = derive_template(vocab.chat_template, bos=bos, eos=eos, add_bos=vocab.add_bos)
    warnings = list(choice.warnings)
    system = system or choice.default_system
    if system and '"""' in system:
        raise ExportInputError('the SYSTEM prompt contains """, which a Modelfile cannot hold; rephrase it.')
    ctx = _num_ctx(num_ctx, trained_ctx, warnings)
    stop = [s for s in choice.stop if _stop_ok(s, warnings)]
    template = choice.go_template
    if template and '"""' in template:   # never for the templates we emit; kept as a guard
        warnings.append('the TEMPLATE contains """ and cannot be written; none written')
        template = None
    parameters: dict[str, Any] = {"stop": stop, "num_ctx": ctx} if stop else {"num_ctx": ctx}
    text = _render(gguf_name, template, system, stop, ctx, choice.family)
    return ModelfileSpec(gguf_name, text, template, system, stop, parameters, choice.family, warnings)


def _embedding_rows(config: dict[str, Any]) -> int:
    try:
        return int(config["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportInputError("config.json has no usable vocab_size.") from exc


def _num_ctx(requested: int | None, trained: int, warnings: list[str]) -> int:
    if requested is None:
        return min(DEFAULT_NUM_CTX, trained)
    if requested < 1:
        raise ExportInputError(f"num_ctx must be a positive number of tokens, not {requested}.")
    if requested > trained:
        warnings.append(f"num_ctx {requested} is beyond the trained context {trained}; using {trained}")
        return trained
    return requested


def _stop_ok(stop: str, warnings: list[str]) -> bool:
    if '"' in stop or "\n" in stop or not stop.strip():
        warnings.append(f"stop string {stop!r} cannot be written in a Modelfile; left out")
        return False
    return True


def _render(gguf_name: str, template: str | None, system: str | None, stop: list[str], num_ctx: int,
            family: str | None) -> str:
    lines = [f"# Modelfile for {Path(gguf_name).stem}, written by distill-gui"
             + (f" (chat format: {family})" if family else ""),
             f"FROM ./{gguf_name}"]
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stop]
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"
