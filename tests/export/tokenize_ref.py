"""Tokenize text with nothing but the ``tokenizer.*`` values of a GGUF file, the way llama.cpp does.

- BPE ("gpt2"): split out control/user-defined tokens (longest first), split the rest with the regex
  llama.cpp uses for the file's ``tokenizer.ggml.pre``, map bytes to the GPT-2 byte alphabet, then
  merge by rank (with ``ignore_merges`` for llama-bpe: a piece that is a whole token stays whole).
- SentencePiece ("llama"): optional leading space, spaces -> U+2581, repeatedly merge the adjacent
  pair whose concatenation is the best-scoring token, unknown pieces fall back to ``<0xXX>`` bytes.
"""

from __future__ import annotations

import regex

# llama.cpp's regexes per pre-tokenizer name (llama-vocab.cpp), with its case-insensitive contractions.
PRE_REGEXES = {
    "llama-bpe": (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "qwen2": (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
}
IGNORE_MERGES = {"llama-bpe"}
CONTROL, USER_DEFINED, BYTE = 3, 4, 6


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_ALPHABET = _byte_alphabet()


def _split_specials(text: str, tokens: list[str], types: list[int]) -> list[tuple[bool, str]]:
    specials = sorted({t for t, k in zip(tokens, types) if k in (CONTROL, USER_DEFINED)}, key=len, reverse=True)
    if not specials:
        return [(False, text)]
    parts = regex.split("(" + "|".join(regex.escape(s) for s in specials) + ")", text)
    return [(i % 2 == 1, part) for i, part in enumerate(parts) if part]


def bpe_encode(kv: dict, text: str, add_special: bool = True) -> list[int]:
    tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    index = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(kv["tokenizer.ggml.merges"])}
    pre = kv["tokenizer.ggml.pre"]
    ids = [kv["tokenizer.ggml.bos_token_id"]] if add_special and kv["tokenizer.ggml.add_bos_token"] else []
    for is_special, part in _split_specials(text, tokens, types):
        if is_special:
            ids.append(index[part])
            continue
        for piece in regex.findall(PRE_REGEXES[pre], part):
            word = "".join(BYTE_ALPHABET[b] for b in piece.encode("utf-8"))
            if pre in IGNORE_MERGES and word in index:
                ids.append(index[word])
                continue
            ids += [index[s] for s in _merge_by_rank(list(word), ranks)]
    return ids


def _merge_by_rank(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        best_rank, at = min(pairs)
        if best_rank == float("inf"):
            break
        symbols = symbols[:at] + [symbols[at] + symbols[at + 1]] + symbols[at + 2:]
    return symbols


def spm_encode(kv: dict, text: str, add_special: bool = True) -> list[int]:
    tokens, scores, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"]
    index = {t: i for i, t in enumerate(tokens)}
    ids = [kv["tokenizer.ggml.bos_token_id"]] if add_special and kv["tokenizer.ggml.add_bos_token"] else []
    if kv.get("tokenizer.ggml.add_space_prefix", True):
        text = " " + text
    symbols = list(text.replace(" ", "\u2581"))
    while len(symbols) > 1:
        best = None
        for i in range(len(symbols) - 1):
            joined = symbols[i] + symbols[i + 1]
            if joined in index and (best is None or scores[index[joined]] > best[0]):
                best = (scores[index[joined]], i)
        if best is None:
            break
        i = best[1]
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    for symbol in symbols:
        if symbol in index and types[index[symbol]] != BYTE:
            ids.append(index[symbol])
        else:
            ids += [index[f"<0x{b:02X}>"] for b in symbol.encode("utf-8")]
    return ids
