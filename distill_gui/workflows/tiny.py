"""Tiny models and tokenizers built offline: for tests, benchmarks and the offline demo.

Nothing here downloads anything. Tokenizers are byte-level BPEs trained with ``tokenizers`` on
text the caller supplies (``sample_text`` makes some), in two faithful styles:

- ``"qwen"``: Qwen2 split regex + ByteLevel, ChatML chat template, eos ``<|im_end|>``, no BOS.
- ``"llama"``: Llama-3 split regex + ByteLevel, ``<|begin_of_text|>`` BOS added by the
  post-processor, Llama-3 chat template, end of turn ``<|eot_id|>``.

Models are real ``transformers`` classes (Llama, Mistral, Qwen2, Qwen3) with small configs.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

from distill_gui.engine.models.loading import save_tokenizer

QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_WORDS = (
    "the a an of to in and is was for on with as by at from that this it be are were have has had not "
    "model teacher student learns small large fast slow token probability distribution answer question "
    "river mountain city number seven twelve red green blue light heavy water fire stone tree bird "
    "quickly slowly always never often because however therefore while during after before"
).split()


def sample_text(n_lines: int = 2000, seed: int = 0) -> list[str]:
    """Pseudo-English lines with digits, punctuation and some non-ASCII, for training tokenizers."""
    rng = random.Random(seed)
    extras = ["café", "naïve", "Grüße", "東京", "привет", "🙂", "3.14", "1,000", "x = y + 2", "it's", "they'll"]
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), rng.choice(extras))
        line = " ".join(words)
        lines.append(line[0].upper() + line[1:] + rng.choice([".", "!", "?", ":", ";"]))
    return lines


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512, style: str = "qwen"):
    """Train a byte-level BPE in the given style and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        texts: Training text (lines or documents).
        vocab_size: Target vocabulary size including the 256 byte tokens and special tokens.
        style: ``"qwen"`` or ``"llama"`` (see the module docstring).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if style not in ("qwen", "llama"):
        raise ValueError(f"unknown tokenizer style {style!r}")
    regex = QWEN_SPLIT_REGEX if style == "qwen" else LLAMA3_SPLIT_REGEX
    if style == "qwen":
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    else:
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>"]
    tok = Tokenizer(models.BPE(ignore_merges=(style == "llama"), byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    if style == "qwen":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
            additional_special_tokens=["<|im_start|>", "<|im_end|>"], clean_up_tokenization_spaces=False,
        )
        wrapped.chat_template = CHATML_TEMPLATE
    else:
        bos = "<|begin_of_text|>"
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))]),
        ])
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=bos, eos_token="<|eot_id|>", pad_token="<|end_of_text|>",
            additional_special_tokens=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            clean_up_tokenization_spaces=False,
        )
        wrapped.chat_template = LLAMA3_TEMPLATE
    return wrapped


def make_tiny_model(arch: str, vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                    kv_heads: int = 2, intermediate: int | None = None, tie: bool = False,
                    max_positions: int = 512, seed: int = 0, init_std: float = 0.02,
                    bos_token_id: int | None = None, eos_token_id: int | None = None,
                    pad_token_id: int | None = None, rope_scaling: dict | None = None):
    """A small randomly initialised causal LM of a real ``transformers`` architecture.

    Args:
        arch: ``"llama"``, ``"mistral"``, ``"qwen2"`` or ``"qwen3"``.
        vocab_size: Rows of the embedding matrix (may exceed the tokenizer's size, like real models).
        tie: Tie the LM head to the input embeddings.
        init_std: Std of the normal initialisation; larger values give less flat logits.
        rope_scaling: e.g. Llama-3.1 style ``{"rope_type": "llama3", ...}``.
    """
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    }
    if arch not in classes:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {sorted(classes)}")
    config_cls, model_cls = classes[arch]
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=intermediate or hidden * 5 // 2,
        max_position_embeddings=max_positions, tie_word_embeddings=tie, initializer_range=init_std,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        rms_norm_eps=1e-6,
    )
    if arch == "qwen3":
        kwargs["head_dim"] = hidden // heads
    if rope_scaling is not None:
        kwargs["rope_scaling"] = rope_scaling
    config = config_cls(**kwargs)
    torch.manual_seed(seed)
    model = model_cls(config)
    model.eval()
    return model




def build_tiny_pair(folder: str | Path, *, style: str = "qwen", arch: str = "qwen2", vocab_size: int = 512,
                    texts: list[str] | None = None, teacher_layers: int = 4, student_layers: int = 2,
                    hidden: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Write ``folder/teacher`` and ``folder/student`` HF folders sharing one trained tokenizer."""
    folder = Path(folder)
    tokenizer = train_bpe_tokenizer(texts or sample_text(1500, seed), vocab_size=vocab_size, style=style)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    paths = []
    for name, layers, model_seed in (("teacher", teacher_layers, seed), ("student", student_layers, seed + 1)):
        model = make_tiny_model(arch, len(tokenizer), hidden=hidden, layers=layers, seed=model_seed, **ids)
        out = folder / name
        model.save_pretrained(str(out))
        save_tokenizer(tokenizer, out)
        paths.append(out)
    return paths[0], paths[1]
