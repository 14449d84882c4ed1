"""Finding, inspecting, loading and deriving models; the tokenizer check.

A model reference is a local Hugging Face folder or a hub id. Hub ids go through the normal HF cache
(``settings.hf_cache_dir`` when set), respect ``HF_HUB_OFFLINE``, and report download progress as
``PhaseProgress("download", ...)`` events. ``trust_remote_code`` stays off unless the config opts in.

Public surface (the GUI's Models page and the trainer both use it):

- :func:`inspect_model` - architecture, sizes, vocabulary, chat template, WITHOUT loading weights.
- :func:`check_tokenizer_pair` - the same compatibility check ``train()`` runs.
- :func:`list_cached_models` - models already in the local HF cache.
- :func:`derive_student` - a student made of some of the teacher's decoder layers.
- :func:`load_model`, :func:`load_tokenizer`, :func:`resolve_model` - used by the trainer.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.config import ollama_model
from distill_gui.errors import DistillError, ModelError
from distill_gui.events import EventCallback, PhaseProgress, ignore_events
from distill_gui.formatting import human_count

# Files needed to know and run a model, besides weights. Tokenizers come in several formats.
CONFIG_PATTERNS = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "chat_template.jinja", "chat_template.json", "*.safetensors.index.json", "*.tiktoken"]
WEIGHT_PATTERNS = ["*.safetensors"]
LEGACY_WEIGHT_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# A sentence with the kinds of text tokenizers disagree on: spaces, digits, punctuation, non-ASCII.
PROBE_TEXT = "Hello world! It's 2024: 3.14 + 1,000 = café, naïve Grüße 東京 🙂\n  indented\tcode()"


@dataclass
class ModelInfo:
    """What :func:`inspect_model` finds out about a model without loading its weights."""

    ref: str                          # as the user gave it
    path: str                         # local folder (snapshot folder for hub ids)
    architecture: str                 # e.g. "Qwen2ForCausalLM"
    model_type: str                   # e.g. "qwen2"
    parameters: int                   # from safetensors headers, else estimated from the config
    parameters_exact: bool            # True when counted from the weight files
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    vocab_rows: int                   # rows of the embedding matrix (config vocab_size)
    tokenizer_vocab: int | None       # len(tokenizer); None when no tokenizer could be loaded
    chat_template: bool
    tied_embeddings: bool
    max_positions: int
    weights_dtype: str                # dtype recorded in the config ("bfloat16", ...)
    is_local: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the GUI: architecture, size, layers, vocabulary, chat template."""
        size = human_count(self.parameters)
        vocab = self.tokenizer_vocab if self.tokenizer_vocab is not None else "?"
        return (f"{self.architecture}: {size} parameters{'' if self.parameters_exact else ' (estimated)'}, "
                f"{self.layers} layers x {self.hidden_size}, vocabulary {vocab} "
                f"({self.vocab_rows} embedding rows), chat template {'yes' if self.chat_template else 'no'}")


@dataclass
class TokenizerVerdict:
    """Whether teacher and student can be distilled token by token.

    Attributes:
        compatible: True when both tokenize every text identically.
        shared_vocab: Size of the real shared vocabulary V (the loss restricts both sides to ids < V).
        message: Plain words for the user.
    """

    compatible: bool
    shared_vocab: int
    message: str


@dataclass
class CachedModel:
    """A model in the local HF cache."""

    repo_id: str
    path: str                         # snapshot folder of the newest revision
    size_bytes: int
    last_modified: float              # POSIX time
    has_weights: bool


# ---- resolving references ---------------------------------------------------------------------


def is_local_ref(ref: str) -> bool:
    """True when ``ref`` names a folder (existing, or written like a path rather than a hub id)."""
    if Path(ref).expanduser().exists():
        return True
    return ref.startswith((".", "/", "~", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", ref)) or ref.count("/") > 1


def resolve_model(ref: str, *, weights: bool = True, trust_remote_code: bool = False,
                  on_event: EventCallback | None = None, role: str = "model") -> Path:
    """The local folder of a model: the folder itself, or the HF cache snapshot (downloaded if needed).

    Args:
        ref: Local folder or hub id.
        weights: Also fetch the weight files (False for inspection).
        trust_remote_code: Also fetch the repository's Python files.
        on_event: Receives ``PhaseProgress("download", bytes_done, bytes_total, "B")``.
        role: "teacher" / "student" for messages.

    Raises:
        ModelError: the folder is missing or no model folder, the hub id does not exist or is gated,
            or the model is not cached while offline.
        DistillError: the hub cannot be reached (exit code 1).
    """
    if not ref:
        raise ModelError(f"No {role} model given. Set [{role}] model to a hub id or a local folder.")
    if ollama_model(ref) is not None:
        raise ModelError(f"{role} '{ref}' is an Ollama model: it has no Hugging Face files to inspect or load here.")
    if is_local_ref(ref):
        return _check_local_folder(Path(ref).expanduser(), ref, role)
    if not HUB_ID.match(ref):
        raise ModelError(f"{role} '{ref}' is neither an existing folder nor a hub id like 'Qwen/Qwen2.5-0.5B'.")
    patterns = list(CONFIG_PATTERNS) + (WEIGHT_PATTERNS if weights else []) + (["*.py"] if trust_remote_code else [])
    folder = _download(ref, patterns, on_event or ignore_events, role)
    if weights and not any(folder.glob("*.safetensors")):
        folder = _download(ref, patterns + LEGACY_WEIGHT_PATTERNS, on_event or ignore_events, role)
    return _check_local_folder(folder, ref, role)


def _check_local_folder(folder: Path, ref: str, role: str) -> Path:
    if not folder.is_dir():
        raise ModelError(f"{role} folder not found: {ref}. Give an existing Hugging Face model folder or a hub id.")
    if not (folder / "config.json").is_file():
        hint = " It holds GGUF files: distillation needs the Hugging Face (safetensors) version of the model." \
            if any(folder.glob("*.gguf")) else ""
        raise ModelError(f"{role} folder {folder} is not a Hugging Face model folder (no config.json).{hint}")
    return folder


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hf_cache_dir() -> str | None:
    """The HF cache folder from the app settings, or None for the normal one."""
    from distill_gui.settings import load_settings

    return load_settings().hf_cache_dir or None


def _download(ref: str, patterns: list[str], on_event: EventCallback, role: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = snapshot_download(ref, allow_patterns=patterns, ignore_patterns=["*/*"], cache_dir=hf_cache_dir(),
                                 local_files_only=_hub_offline(), tqdm_class=_progress_class(on_event, ref))
    except GatedRepoError:
        raise ModelError(f"{role} '{ref}' is gated: accept its license on https://huggingface.co/{ref} and log in "
                         f"with `hf auth login`, then try again.") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{role} '{ref}' was not found on the Hugging Face hub. Check the spelling "
                         f"(owner/name); private models need `hf auth login`.") from None
    except RevisionNotFoundError:
        raise ModelError(f"{role} '{ref}': revision not found on the hub.") from None
    except LocalEntryNotFoundError:
        if _hub_offline():
            raise ModelError(f"{role} '{ref}' is not in the local Hugging Face cache and offline mode is on "
                             f"(HF_HUB_OFFLINE=1). Download it once with internet access, or give a local "
                             f"folder.") from None
        raise DistillError(f"{role} '{ref}': cannot reach the Hugging Face hub and the model is not in the "
                           f"local cache. Check the internet connection, or give a local folder.") from None
    except HfHubHTTPError as exc:
        raise DistillError(f"{role} '{ref}': the Hugging Face hub answered with an error: {exc}") from None
    except OSError as exc:
        raise DistillError(f"{role} '{ref}': download failed ({exc}). Check the disk space and connection, "
                           f"then try again; finished files are kept.") from None
    return Path(path)


def _progress_class(on_event: EventCallback, ref: str):
    """A tqdm class for snapshot_download that turns byte progress into PhaseProgress events."""
    import io

    from tqdm.auto import tqdm

    class _EventProgress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["file"] = io.StringIO()  # never print; the events are the display
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)
            self._last_emit = 0.0

        def update(self, n: float | None = 1) -> bool | None:
            result = super().update(n)
            now = time.monotonic()
            if self.unit == "B" and (now - self._last_emit > 0.2 or (self.total and self.n >= self.total)):
                self._last_emit = now
                on_event(PhaseProgress("download", float(self.n), float(self.total) if self.total else None,
                                       "B", f"downloading {ref}"))
            return result

    return _EventProgress


# ---- inspection -------------------------------------------------------------------------------


def read_model_config(folder: str | os.PathLike) -> dict[str, Any]:
    """config.json as a dict, with a multimodal model's ``text_config`` merged in."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / 'config.json'}: cannot read the model config ({exc}).") from None
    text = config.get("text_config")
    if isinstance(text, dict):
        config = {**config, **{k: v for k, v in text.items() if k not in ("architectures",)}}
    return config


def published_dtype(folder: str | os.PathLike) -> str:
    """The dtype a model's weights were published in (its config), as a torch dtype name; float32 if unknown."""
    config = read_model_config(folder)
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def inspect_model(ref: str, *, trust_remote_code: bool = False, on_event: EventCallback | None = None) -> ModelInfo:
    """Describe a model without loading its weights (for the GUI's Check button and the planner).

    Downloads only the config and tokenizer files of a hub model (with PhaseProgress events).

    Raises:
        ModelError: see :func:`resolve_model`.
    """
    local = is_local_ref(ref)
    folder = resolve_model(ref, weights=False, trust_remote_code=trust_remote_code, on_event=on_event)
    config = read_model_config(folder)
    notes: list[str] = []
    params = count_parameters_from_files(folder)
    exact = params > 0
    if not exact and not local and not _hub_offline():
        params = _remote_parameter_count(ref)
        exact = params > 0
    if not exact:
        params = estimate_parameters(config)
        notes.append("parameter count estimated from the config (weights not available locally)")
    tokenizer_vocab, chat = None, False
    try:
        tok = load_tokenizer(folder, trust_remote_code=trust_remote_code, ref=ref)
        tokenizer_vocab, chat = len(tok), bool(getattr(tok, "chat_template", None))
    except ModelError as exc:
        notes.append(str(exc))
    hidden = int(config.get("hidden_size") or config.get("n_embd") or config.get("d_model") or 0)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 0)
    return ModelInfo(
        ref=ref, path=str(folder), architecture=(config.get("architectures") or ["?"])[0],
        model_type=str(config.get("model_type", "?")), parameters=int(params), parameters_exact=exact,
        layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0), hidden_size=hidden,
        intermediate_size=int(config.get("intermediate_size") or config.get("n_inner") or 4 * hidden),
        attention_heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
        vocab_rows=int(config.get("vocab_size") or 0), tokenizer_vocab=tokenizer_vocab, chat_template=chat,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_positions=int(config.get("max_position_embeddings") or 0),
        weights_dtype=str(config.get("torch_dtype") or config.get("dtype") or "float32"),
        is_local=local, notes=notes,
    )


def count_parameters_from_files(folder: str | os.PathLike) -> int:
    """Sum of tensor sizes in the folder's safetensors headers (reads only the headers); 0 if none."""
    total = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        try:
            with open(file, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
        except (OSError, ValueError, struct.error):
            return 0
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry.get("shape", []):
                    count *= int(dim)
                total += count
    return total


def _remote_parameter_count(ref: str) -> int:
    try:
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(ref)
        return int(sum(meta.parameter_count.values()))
    except Exception:  # any hub failure: fall back to the estimate; inspection must not fail for this
        return 0


def estimate_parameters(config: dict[str, Any]) -> int:
    """Parameters of a Llama-like decoder from its config (embedding, attention, MLP, norms, head)."""
    hidden = int(config.get("hidden_size") or 0)
    layers = int(config.get("num_hidden_layers") or 0)
    vocab = int(config.get("vocab_size") or 0)
    inter = int(config.get("intermediate_size") or 4 * hidden)
    heads = int(config.get("num_attention_heads") or 1)
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or (hidden // max(heads, 1)))
    attention = hidden * head_dim * (heads + 2 * kv) + heads * head_dim * hidden
    experts = int(config.get("num_local_experts") or config.get("num_experts") or 1)
    mlp = 3 * hidden * inter * experts
    per_layer = attention + mlp + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + layers * per_layer + hidden


# ---- loading ----------------------------------------------------------------------------------


def load_tokenizer(folder: str | os.PathLike, *, trust_remote_code: bool = False, ref: str | None = None):
    """The model's tokenizer, with a pad token (falls back to eos) for padded batches.

    Raises:
        ModelError: no tokenizer files, or they cannot be read.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for bad tokenizers
        raise ModelError(f"{ref or folder}: cannot load the tokenizer ({_first_line(exc)}). The folder needs "
                         f"tokenizer.json or tokenizer_config.json with its vocabulary files.") from None
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ModelError(f"{ref or folder}: the tokenizer has neither a pad nor an end-of-sequence token.")
        tok.pad_token = tok.eos_token
    return tok


def load_model(folder: str | os.PathLike, *, dtype: str, device: str, load_in: str = "full",
               trust_remote_code: bool = False, ref: str | None = None, role: str = "model"):
    """Load a causal LM onto ``device`` in ``dtype`` (optionally 8/4-bit through bitsandbytes).

    Raises:
        ModelError: unsupported architecture, unreadable or missing weights.
        ConfigError: a quantized load outside CUDA or without bitsandbytes.
        TrainingError: out of memory while loading.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from distill_gui.engine.device import require_bitsandbytes, torch_dtype
    from distill_gui.errors import TrainingError

    name = ref or str(folder)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "trust_remote_code": trust_remote_code}
    if load_in in ("8bit", "4bit"):
        require_bitsandbytes(f"[{role}] load_in = '{load_in}'", device)
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_8bit=True) if load_in == "8bit" else
                                         BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                            bnb_4bit_compute_dtype=torch_dtype(dtype)))
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except torch.OutOfMemoryError:
        raise TrainingError(f"Out of memory while loading the {role} {name}. Run `distill-gui plan` to see "
                            f"what fits: a quantized teacher, a smaller student or LoRA help.") from None
    except (ValueError, KeyError) as exc:
        hint = "" if trust_remote_code else " If the model ships its own code, set trust_remote_code = true " \
                                            "(only for repositories you trust)."
        raise ModelError(f"{role} {name}: transformers cannot load this model as a causal LM "
                         f"({_first_line(exc)}).{hint}") from None
    except OSError as exc:
        raise ModelError(f"{role} {name}: cannot read the weights ({_first_line(exc)}).") from None
    if load_in == "full":
        model.to(device)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---- the tokenizer check ----------------------------------------------------------------------


def check_tokenizer_pair(teacher_ref: str, student_ref: str, *, trust_remote_code: bool = False,
                         teacher_tokenizer=None, student_tokenizer=None, teacher_rows: int | None = None,
                         student_rows: int | None = None) -> TokenizerVerdict:
    """Can the student learn the teacher's token distributions directly?

    Compatible when both tokenizers map the same tokens to the same ids and encode a probe text
    identically. The real shared vocabulary is then ``len(tokenizer)``; embedding matrices padded to
    more rows (151,936 vs 152,064 in one family) are fine, because the loss restricts both
    distributions to that vocabulary and renormalises them. Both models need at least that many rows.

    Args:
        teacher_ref, student_ref: As in the config (used in messages; loaded when no tokenizer is given).
        teacher_tokenizer, student_tokenizer: Already loaded tokenizers (the trainer passes them).
        teacher_rows, student_rows: Embedding rows; read from config.json when not given.
    """
    if teacher_tokenizer is None or teacher_rows is None:
        folder = resolve_model(teacher_ref, weights=False, trust_remote_code=trust_remote_code, role="teacher")
        teacher_tokenizer = teacher_tokenizer or load_tokenizer(folder, trust_remote_code=trust_remote_code,
                                                                ref=teacher_ref)
        teacher_rows = teacher_rows or int(read_model_config(folder).get("vocab_size") or 0)
    if student_tokenizer is None or student_rows is None:
        folder = resolve_model(student_ref, weights=False, trust_remote_code=trust_remote_code, role="student")
        student_tokenizer = student_tokenizer or load_tokenizer(folder, trust_remote_code=trust_remote_code,
                                                                ref=student_ref)
        student_rows = student_rows or int(read_model_config(folder).get("vocab_size") or 0)
    t_vocab, s_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    names = f"teacher {teacher_ref} ({len(teacher_tokenizer):,} tokens) and student {student_ref} " \
            f"({len(student_tokenizer):,} tokens)"
    if t_vocab != s_vocab:
        differ = sum(1 for token, i in s_vocab.items() if t_vocab.get(token) != i)
        return TokenizerVerdict(False, 0, (
            f"The {names} use different tokenizers ({differ:,} student tokens are missing or have other ids in "
            f"the teacher's). Token-level distillation needs the same tokenizer: choose a student from the "
            f"teacher's model family, derive the student from the teacher (student.model = \"teacher\"), or "
            f"distill from the teacher's generated answers (black-box distillation) instead."))
    probe_t = teacher_tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    probe_s = student_tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    if probe_t != probe_s:
        return TokenizerVerdict(False, 0, (
            f"The {names} share a vocabulary but split text differently (different pre-tokenizer or "
            f"normalizer), so their predictions do not line up token by token. Choose a student from the "
            f"teacher's model family, or derive the student from the teacher."))
    shared = len(student_tokenizer)
    too_small = [(role, rows) for role, rows in (("teacher", teacher_rows), ("student", student_rows))
                 if rows and rows < shared]
    if too_small:
        role, rows = too_small[0]
        return TokenizerVerdict(False, shared, (
            f"The {role}'s embedding matrix has {rows:,} rows, fewer than the tokenizer's {shared:,} tokens: "
            f"the model cannot read every token. Check that the {role} folder holds the matching tokenizer."))
    padded = "" if teacher_rows == student_rows == shared else (
        f" Embedding rows differ from the vocabulary (teacher {teacher_rows:,}, student {student_rows:,}): "
        f"both distributions are restricted to the {shared:,} real tokens and renormalised.")
    return TokenizerVerdict(True, shared, f"The {names} use the same tokenizer.{padded}")


# ---- the HF cache -----------------------------------------------------------------------------


def list_cached_models() -> list[CachedModel]:
    """Models in the local HF cache (the settings' cache folder, else the normal one), by name."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hf_cache_dir())
    except (CacheNotFound, OSError):
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        names = {f.file_name for f in newest.files}
        if "config.json" not in names:
            continue
        has_weights = any(n.endswith((".safetensors", ".bin")) and not n.endswith(".index.json") for n in names)
        found.append(CachedModel(repo.repo_id, str(newest.snapshot_path), int(repo.size_on_disk),
                                 float(newest.last_modified), has_weights))
    return sorted(found, key=lambda m: m.repo_id.lower())


# ---- deriving a student from the teacher ------------------------------------------------------










# ---- LoRA -------------------------------------------------------------------------------------


def apply_lora(model, rank: int, alpha: int):
    """Wrap ``model`` in a peft LoRA on every linear layer except the LM head; only LoRA weights train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def unwrap(model):
    """The plain transformers model under a peft wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def merged_for_saving(model):
    """The model to write to ``final/``: LoRA merged into the weights, or the model itself."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def parameter_count(model, *, trainable: bool = False) -> int:
    """Parameters of ``model`` (only those that train when ``trainable``); 0 for no model."""
    if model is None:
        return 0
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """Save a tokenizer with its chat template inside tokenizer_config.json (Ollama reads it only there)."""
    tokenizer.save_pretrained(str(folder), save_jinja_files=False)

