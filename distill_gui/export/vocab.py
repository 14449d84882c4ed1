"""The tokenizer part of a GGUF: tokens, types, scores, merges, special ids, add_bos/eos, chat template.

Two kinds of tokenizer are exported:

- byte-level BPE from ``tokenizer.json`` -> ``tokenizer.ggml.model = "gpt2"`` with merges and the
  llama.cpp pre-tokenizer name (pretokenizer.py);
- SentencePiece from ``tokenizer.model`` -> ``"llama"`` with scores and piece types (spm_model.py).

``add_bos_token`` is always written explicitly (older Ollama engines assume true when it is missing,
see docs/gguf.md), taken from what the HF tokenizer really does: its post-processor first, then
``tokenizer_config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.errors import ExportInputError
from distill_gui.export.checkpoint import read_json
from distill_gui.export.pretokenizer import check_pre_name, detect_pre_tokenizer
from distill_gui.export.spm_model import CONTROL, NORMAL, UNUSED, USER_DEFINED, read_spm_model

# End-of-turn tokens of the common chat formats, most specific first.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


@dataclass
class GGUFVocab:
    """Everything ``tokenizer.*`` in a GGUF holds."""

    model: str                          # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str                            # llama.cpp pre-tokenizer name ("default" for SentencePiece)
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)   # bos, eos, eot, pad, unk
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    warnings: list[str] = field(default_factory=list)

    def write(self, writer: Any) -> None:
        """Add the tokenizer KVs to a ``gguf.GGUFWriter``."""
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types([int(t) for t in self.types])
        if self.scores is not None:
            writer.add_token_scores([float(s) for s in self.scores])
        if self.merges:
            writer.add_token_merges(self.merges)
        adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "eot": writer.add_eot_token_id,
                  "pad": writer.add_pad_token_id, "unk": writer.add_unk_token_id}
        for kind, token_id in self.special_ids.items():
            adders[kind](int(token_id))
        writer.add_add_bos_token(bool(self.add_bos))
        writer.add_add_eos_token(bool(self.add_eos))
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(bool(self.add_space_prefix))
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def read_chat_template(model_dir: Path) -> str | None:
    """The chat template the model was trained with: tokenizer_config.json, else chat_template.jinja/.json."""
    config = read_json(model_dir / "tokenizer_config.json", what="tokenizer config", required=False)
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if not template and (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    if not template and (model_dir / "chat_template.json").is_file():
        template = read_json(model_dir / "chat_template.json", what="chat template").get("chat_template")
    return template or None


def load_vocab(model_dir: str | Path, n_rows: int, *, pre_tokenizer: str | None = None,
               model_config: dict[str, Any] | None = None, detect_pre: bool = True) -> GGUFVocab:
    """Build the GGUF vocabulary of a HF model folder.

    Args:
        model_dir: The HF folder.
        n_rows: Rows of the embedding matrix; the token list is padded to exactly this many.
        pre_tokenizer: A llama.cpp pre-tokenizer name to use instead of detecting one.
        model_config: config.json; its ``*_token_id`` values are used where the tokenizer config names none.
        detect_pre: False skips naming the pre-tokenizer (for callers that only need special tokens).

    Raises:
        ExportInputError: No tokenizer, an unsupported kind, or more tokens than embedding rows.
    """
    model_dir = Path(model_dir)
    tok_config = read_json(model_dir / "tokenizer_config.json", what="tokenizer config", required=False)
    tok_json = read_json(model_dir / "tokenizer.json", what="tokenizer", required=False)
    if (model_dir / "tokenizer.model").is_file():
        vocab = _spm_vocab(model_dir, tok_json, tok_config, n_rows)
    elif tok_json:
        vocab = _bpe_vocab(model_dir, tok_json, n_rows, pre_tokenizer if detect_pre else "default")
    else:
        raise ExportInputError(f"{model_dir} has no tokenizer: expected tokenizer.json (byte-level BPE) or "
                               f"tokenizer.model (SentencePiece). Save the tokenizer next to the model.")
    vocab.chat_template = read_chat_template(model_dir)
    _set_special_ids(vocab, tok_config, model_config or {})
    _set_add_bos_eos(vocab, tok_json, tok_config)
    return vocab


# ---- byte-level BPE ------------------------------------------------------------------------------
def _bpe_vocab(model_dir: Path, tok_json: dict[str, Any], n_rows: int, pre_tokenizer: str | None) -> GGUFVocab:
    where = str(model_dir / "tokenizer.json")
    model = tok_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportInputError(f"{where}: tokenizer model {model.get('type')!r} is not supported; the exporter "
                               f"handles byte-level BPE (tokenizer.json) and SentencePiece (tokenizer.model).")
    if not _is_byte_level(tok_json):
        raise ExportInputError(f"{where}: a BPE tokenizer without ByteLevel (SentencePiece-style) needs its "
                               f"tokenizer.model next to it; save the tokenizer with the SentencePiece file.")
    pre = check_pre_name(pre_tokenizer) if pre_tokenizer else detect_pre_tokenizer(tok_json, where)
    by_id: dict[int, tuple[str, int]] = {i: (t, NORMAL) for t, i in model.get("vocab", {}).items()}
    for added in tok_json.get("added_tokens", []):
        content = added["content"]
        special = added.get("special") or (content.startswith("<|") and content.endswith("|>"))
        by_id[int(added["id"])] = (content, CONTROL if special else USER_DEFINED)
    tokens, types, warnings = _dense_token_list(by_id, n_rows, where)
    merges = [m if isinstance(m, str) else " ".join(part.replace(" ", "\u0120") for part in m)
              for m in model.get("merges", [])]
    return GGUFVocab("gpt2", pre, tokens, types, merges=merges, warnings=warnings)


def _is_byte_level(tok_json: dict[str, Any]) -> bool:
    def has(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(has(v) for v in node.values())
        if isinstance(node, list):
            return any(has(v) for v in node)
        return False
    return has(tok_json.get("pre_tokenizer")) or has(tok_json.get("decoder"))


def _dense_token_list(by_id: dict[int, tuple[str, int]], n_rows: int,
                      where: str) -> tuple[list[str], list[int], list[str]]:
    """Tokens 0..n_rows-1; holes become unique ``[PADi]`` tokens of type UNUSED."""
    if by_id and max(by_id) >= n_rows:
        raise ExportInputError(f"{where}: the tokenizer has token id {max(by_id)} but the model's embedding has "
                               f"only {n_rows} rows. Tokenizer and model do not belong together.")
    tokens, types, seen, warnings = [], [], set(), []
    for i in range(n_rows):
        text, kind = by_id.get(i, (f"[PAD{i}]", UNUSED))
        if text in seen:  # llama.cpp requires unique token strings
            warnings.append(f"token {i} repeats the text {text!r}; written as [PAD{i}]")
            text, kind = f"[PAD{i}]", UNUSED
        seen.add(text)
        tokens.append(text)
        types.append(kind)
    return tokens, types, warnings


# ---- SentencePiece -------------------------------------------------------------------------------
def _spm_vocab(model_dir: Path, tok_json: dict[str, Any], tok_config: dict[str, Any], n_rows: int) -> GGUFVocab:
    where = str(model_dir / "tokenizer.model")
    spm = read_spm_model(model_dir / "tokenizer.model")
    by_id = {i: (piece, kind) for i, (piece, kind) in enumerate(zip(spm.pieces, spm.types))}
    scores = {i: s for i, s in enumerate(spm.scores)}
    for token_id, content, special in _added_tokens(tok_json, tok_config):
        if token_id >= len(spm.pieces):
            by_id[token_id] = (content, CONTROL if special else USER_DEFINED)
            scores[token_id] = -1000.0
        elif special and by_id[token_id][0] == content and by_id[token_id][1] == NORMAL:
            by_id[token_id] = (content, CONTROL)
    tokens, types, warnings = _dense_token_list(by_id, n_rows, where)
    vocab = GGUFVocab("llama", "default", tokens, types, scores=[scores.get(i, -1000.0) for i in range(n_rows)],
                      add_space_prefix=spm.add_dummy_prefix, warnings=warnings)
    if spm.model_type != "bpe":
        vocab.warnings.append(f"{where} is a {spm.model_type} SentencePiece model; llama.cpp tokenizes it with "
                              f"score-ordered merges, which can split some words differently.")
    trainer_ids = {"bos": spm.bos_id, "eos": spm.eos_id, "unk": spm.unk_id, "pad": spm.pad_id}
    vocab.special_ids = {k: v for k, v in trainer_ids.items() if 0 <= v < n_rows}
    vocab.add_bos = True  # SentencePiece default in llama.cpp and HF; the tokenizer config may override
    return vocab


def _added_tokens(tok_json: dict[str, Any], tok_config: dict[str, Any]) -> list[tuple[int, str, bool]]:
    if tok_json.get("added_tokens"):
        return [(int(t["id"]), t["content"], bool(t.get("special"))) for t in tok_json["added_tokens"]]
    decoder = tok_config.get("added_tokens_decoder") or {}
    return [(int(i), t["content"], bool(t.get("special"))) for i, t in decoder.items()]


# ---- special ids, add_bos / add_eos --------------------------------------------------------------
def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _set_special_ids(vocab: GGUFVocab, tok_config: dict[str, Any], model_config: dict[str, Any]) -> None:
    index = {t: i for i, t in enumerate(vocab.tokens)}
    for kind in ("bos", "eos", "pad", "unk"):
        text = _token_text(tok_config.get(f"{kind}_token"))
        if text is not None and text in index:
            vocab.special_ids[kind] = index[text]
            continue
        token_id = model_config.get(f"{kind}_token_id")   # e.g. Qwen names no bos_token, config.json does
        if isinstance(token_id, list):   # Llama-3.1 lists several eos ids: the first is the main one
            token_id = token_id[0] if token_id else None
        if isinstance(token_id, int) and 0 <= token_id < len(vocab.tokens) and kind not in vocab.special_ids:
            vocab.special_ids[kind] = token_id
    for text in END_OF_TURN_TOKENS:
        if text in index and vocab.chat_template and text in vocab.chat_template:
            vocab.special_ids["eot"] = index[text]
            break


def _set_add_bos_eos(vocab: GGUFVocab, tok_json: dict[str, Any], tok_config: dict[str, Any]) -> None:
    """What the HF tokenizer does: its TemplateProcessing if it has one, else tokenizer_config flags."""
    bos = vocab.tokens[vocab.special_ids["bos"]] if "bos" in vocab.special_ids else None
    eos = vocab.tokens[vocab.special_ids["eos"]] if "eos" in vocab.special_ids else None
    single = _template_single(tok_json.get("post_processor"))
    if single is not None:
        vocab.add_bos = _adds_before(single, bos)
        vocab.add_eos = _adds_after(single, eos)
        return
    if "add_bos_token" in tok_config:
        vocab.add_bos = bool(tok_config["add_bos_token"])
    if "add_eos_token" in tok_config:
        vocab.add_eos = bool(tok_config["add_eos_token"])
    if vocab.add_bos and bos is None:
        vocab.warnings.append("the tokenizer adds a BOS token but names none; add_bos_token written as false")
        vocab.add_bos = False


def _template_single(post: Any) -> list[dict[str, Any]] | None:
    """The ``single`` sequence of a TemplateProcessing post-processor (also inside a Sequence)."""
    if not isinstance(post, dict):
        return None
    if post.get("type") == "TemplateProcessing":
        return post.get("single") or []
    if post.get("type") == "Sequence":
        for item in post.get("processors", []):
            found = _template_single(item)
            if found is not None:
                return found
    return None


def _adds_before(single: list[dict[str, Any]], token: str | None) -> bool:
    for item in single:
        if "Sequence" in item:
            return False
        if token is not None and item.get("SpecialToken", {}).get("id") == token:
            return True
    return False


def _adds_after(single: list[dict[str, Any]], token: str | None) -> bool:
    seen_sequence = False
    for item in single:
        if "Sequence" in item:
            seen_sequence = True
        elif seen_sequence and token is not None and item.get("SpecialToken", {}).get("id") == token:
            return True
    return False
