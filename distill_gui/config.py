"""The one RunConfig used by the GUI, the CLI, run folders and tests.

A RunConfig is a set of small dataclasses mirroring the TOML sections (README, docs/architecture.md). Every field
carries a one-sentence ``help`` (the GUI's tooltips) and, where it has a fixed set of values,
``choices``. ``load_config`` reads TOML, applies ``--set section.key=value`` overrides, checks
every key and value, and names the file, line and key in any error.

Relative paths (models given as folders, data files, output_dir) are resolved against the
folder of the config file when they exist there, else against the current folder, so a config
next to its data works from anywhere. Hub ids that are not existing folders stay as they are.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from distill_gui.errors import ConfigError
from distill_gui.paths import write_text_atomic

LOSSES = ("forward_kl", "reverse_kl", "jsd", "skew_forward_kl", "skew_reverse_kl", "tvd", "ce")
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
OLLAMA_QUANTIZE = ("", "q4_K_M", "q4_K_S", "q8_0")


def _f(default: Any, help: str, choices: tuple | None = None, **limits: Any) -> Any:
    """A dataclass field with GUI/validation metadata (help text, choices, min/max)."""
    meta = {"help": help, "choices": choices, **limits}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TeacherConfig:
    model: str = _f("", "Teacher: a Hugging Face hub id, a local model folder, or ollama:<name> for a black-box "
                        "teacher.")
    dtype: str = _f("auto", "Precision the teacher is loaded in; auto picks bf16 on GPUs that support it.",
                    ("auto", "float32", "bfloat16", "float16"))
    load_in: str = _f("full", "Load the teacher quantized to 8 or 4 bits (CUDA + bitsandbytes) to save GPU memory.",
                      ("full", "8bit", "4bit"))
    trust_remote_code: bool = _f(False, "Allow running Python code shipped with the model repository (off unless you "
                                        "trust it).")
    cache_top_k: int = _f(0, "0 runs the teacher next to the student; k > 0 runs it once over the data first, stores "
                             "its top-k log-probabilities on disk (32-128 is typical) and trains from that cache, so "
                             "teacher and student never share the GPU.", min=0, max=1024)
    cache_dtype: str = _f("float16", "How the teacher cache stores log-probabilities: float16 (6 bytes per entry with "
                                     "its token id) or float32 (8 bytes, exact).", ("float16", "float32"))
    generate: bool = _f(False, "Let the teacher write the answers first (sequence-level KD): [data] train then holds "
                               "prompts ({\"prompt\"} or {\"messages\"} rows). Always on for an ollama: teacher.")
    gen_temperature: float = _f(0.0, "Sampling temperature of the teacher's answers (0 = always its most likely "
                                     "token).", min=0.0)
    gen_seed: int = _f(42, "Seed of the teacher's sampling: the same seed gives the same answers.")
    gen_max_tokens: int = _f(512, "Longest answer the teacher may write, in its own tokens.", min=1)
    gen_num_ctx: int = _f(4096, "Context window an Ollama teacher runs with (the same for every request, so it never "
                                "reloads); prompts Ollama had to shorten are left out.", min=64)
    gen_think: bool = _f(False, "Let a thinking model reason before answering (the reasoning is not trained on).")
    gen_parallel: int = _f(2, "Prompts answered at once: requests in flight to Ollama, or the batch of an HF teacher.",
                           min=1, max=64)
    top_logprobs: int = _f(20, "Ollama teacher: alternatives per answer token (0-20), used as soft targets when its "
                               "tokens line up with the student's tokenizer; 0 = learn the answers only.",
                           min=0, max=20)


@dataclass
class StudentConfig:
    model: str = _f("", "Student: a hub id, a local folder, or 'teacher' to derive it from the teacher's layers.")
    keep_layers: list = _f([], "With model = 'teacher': indices of the teacher's decoder layers the student keeps "
                               "(empty = every other layer: 0, 2, 4, ...).")
    dtype: str = _f("auto", "Precision of the student's weights.", ("auto", "float32", "bfloat16", "float16"))
    lora_rank: int = _f(0, "0 trains all weights; > 0 trains a LoRA of this rank and merges it into final/.", min=0)
    lora_alpha: int = _f(16, "LoRA scaling (alpha); the update is scaled by alpha / rank.", min=1)
    trust_remote_code: bool = _f(False, "Allow running Python code shipped with the model repository (off unless you "
                                        "trust it).")


@dataclass
class DataConfig:
    train: str = _f("", "Training data: .txt (paragraphs) or .jsonl with text, prompt/response or messages rows.")
    eval: str = _f("", "Optional held-out file; when empty, eval_fraction of the training rows is held out.")
    eval_fraction: float = _f(0.05, "Share of training rows held out for evaluation when no eval file is "
                                    "given.", min=0.0, max=0.5)
    max_length: int = _f(1024, "Longest sequence in tokens; longer rows are truncated.", min=8)
    loss_on: str = _f("response", "Learn only the answers (response) or every token (all).", ("response", "all"))


@dataclass
class DistillConfig:
    loss: str = _f("forward_kl", "Divergence between teacher and student; ce is plain fine-tuning without a "
                                 "teacher.", LOSSES)
    temperature: float = _f(2.0, "Softens both distributions; the KD term is scaled by T^2.", min_excl=0.0)
    alpha: float = _f(0.9, "Weight of the KD term: total = alpha * KD + (1 - alpha) * CE.", min=0.0, max=1.0)
    beta: float = _f(0.5, "JSD mixing weight between teacher and student.", min=0.0, max=1.0)
    skew: float = _f(0.1, "Skew KL mixing weight (DistiLLM).", min=0.0, max=1.0)
    top_k: int = _f(0, "0 uses the full vocabulary; k > 0 distills only the teacher's top-k tokens.", min=0)
    top_k_mode: str = _f("renorm", "Top-k: renormalise over the k tokens, or keep the rest as one tail bucket.",
                         ("renorm", "tail"))
    chunk_tokens: int = _f(0, "Tokens per loss chunk (0 = automatic); bounds the loss's extra memory.", min=0)


@dataclass
class TrainConfig:
    max_steps: int = _f(1000, "Optimizer steps to run (0 = use epochs).", min=0)
    epochs: int = _f(0, "Passes over the data when max_steps is 0.", min=0)
    batch_size: int = _f(4, "Sequences per forward pass.", min=1)
    grad_accum: int = _f(4, "Forward passes accumulated per optimizer step.", min=1)
    lr: float = _f(5e-5, "Peak learning rate.", min_excl=0.0)
    warmup_steps: int = _f(50, "Steps of linear warm-up before the schedule.", min=0)
    scheduler: str = _f("cosine", "Learning-rate schedule after warm-up.", ("cosine", "linear", "constant"))
    weight_decay: float = _f(0.0, "AdamW weight decay.", min=0.0)
    max_grad_norm: float = _f(1.0, "Clip gradients to this norm (0 = no clipping).", min=0.0)
    optimizer: str = _f("adamw", "adamw, or adamw_8bit (bitsandbytes, CUDA) to save optimizer memory.",
                        ("adamw", "adamw_8bit"))
    seed: int = _f(42, "Random seed for data order and initialisation.")
    device: str = _f("auto", "auto picks CUDA, then Apple MPS, then CPU; or cpu, cuda, cuda:N, mps.")
    precision: str = _f("auto", "Training precision; auto uses bf16 autocast on GPUs that support it.",
                        ("auto", "fp32", "bf16", "fp16"))
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass: less memory, ~30% slower.")
    log_every: int = _f(10, "Report training metrics every N steps.", min=1)
    eval_every: int = _f(200, "Evaluate on held-out data every N steps (0 = only at the end).", min=0)
    save_every: int = _f(200, "Save a checkpoint every N steps (0 = only at the end and on stop).", min=0)
    keep_checkpoints: int = _f(2, "How many recent checkpoints to keep.", min=1)
    report: bool = _f(True, "When the run completes (not after Stop), evaluate the teacher and the student before and "
                            "after on the held-out data and write report.md with plots into the run folder.")


@dataclass
class ExportConfig:
    type: str = _f("f16", "GGUF weight type; f16 lets Ollama quantize further.", GGUF_TYPES)
    ollama_name: str = _f("", "Register the student in Ollama under this name when set.")
    quantize: str = _f("", "Ask Ollama to quantize on create (needs an f16/bf16 GGUF).", OLLAMA_QUANTIZE)
    system: str = _f("", "Default SYSTEM prompt written into the Modelfile.")


SECTIONS: dict[str, type] = {
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "data": DataConfig,
    "distill": DistillConfig,
    "train": TrainConfig,
    "export": ExportConfig,
}
TOP_LEVEL = {
    "name": "Run folder name.",
    "output_dir": "Folder that holds run folders (empty = the app's user data folder / runs).",
}


@dataclass
class RunConfig:
    """The whole run: models, data, loss, training and export settings."""

    name: str = "run"
    output_dir: str = ""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    # ---- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> "RunConfig":
        return copy.deepcopy(self)

    def to_toml(self) -> str:
        """The config as commented TOML, in the canonical key order."""
        lines = [f"name = {_toml_value(self.name)}", f"output_dir = {_toml_value(self.output_dir)}"]
        for section, cls in SECTIONS.items():
            lines += ["", f"[{section}]"]
            obj = getattr(self, section)
            for f_ in fields(cls):
                value = _toml_value(getattr(obj, f_.name))
                lines.append(f"{f_.name} = {value}".ljust(40) + f"  # {f_.metadata['help']}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the TOML atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.to_toml())

    def get(self, dotted_key: str) -> Any:
        """The value of ``section.key`` (or a top-level key); the one way GUI and CLI read a key by name."""
        section, _, key = dotted_key.rpartition(".")
        return getattr(getattr(self, section) if section else self, key)

    def run_dir(self) -> Path:
        """The run folder ``<output_dir>/<name>``."""
        return Path(self.output_dir or default_runs_dir()) / self.name

    def set(self, dotted_key: str, value: Any, *, source: str = "--set") -> None:
        """Set ``section.key`` (or a top-level key) to ``value`` after checking it."""
        section, _, key = dotted_key.rpartition(".")
        if not section:
            if dotted_key not in TOP_LEVEL:
                raise ConfigError(f"{source}: unknown key '{dotted_key}'. Top-level keys: {', '.join(TOP_LEVEL)}.")
            setattr(self, dotted_key, _check_value(str, value, f"{source}: '{dotted_key}'", {}))
            return
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section '{section}' in '{dotted_key}'. "
                              f"Sections: {', '.join(SECTIONS)}.")
        cls = SECTIONS[section]
        by_name = {f_.name: f_ for f_ in fields(cls)}
        if key not in by_name:
            raise ConfigError(f"{source}: unknown key '{key}' in section [{section}]. "
                              f"Known keys: {', '.join(by_name)}.")
        f_ = by_name[key]
        checked = _check_value(f_.type, value, f"{source}: '{section}.{key}'", f_.metadata)
        setattr(getattr(self, section), key, checked)


def default_runs_dir() -> Path:
    """The runs folder from the app settings, else ``<user data dir>/runs`` (DISTILL_GUI_HOME in tests)."""
    from distill_gui.paths import user_data_dir
    from distill_gui.settings import load_settings

    return Path(load_settings().runs_dir or user_data_dir() / "runs")


# ---- loading ---------------------------------------------------------------------------------


def config_from_dict(data: dict[str, Any], *, source: str = "config", text: str | None = None) -> RunConfig:
    """Build a RunConfig from a parsed TOML dict, naming ``source`` (and lines) in errors."""
    cfg = RunConfig()
    for key, value in data.items():
        where = _where(source, text, None, key)
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a [{key}] section, not a value.")
            _fill_section(cfg, key, value, source, text)
        elif key in TOP_LEVEL:
            setattr(cfg, key, _check_value(str, value, f"{where}: '{key}'", {}))
        else:
            raise ConfigError(f"{where}: unknown key '{key}'. Top-level keys: {', '.join(TOP_LEVEL)}; "
                              f"sections: {', '.join('[' + s + ']' for s in SECTIONS)}.")
    return cfg


def _fill_section(cfg: RunConfig, section: str, values: dict, source: str, text: str | None) -> None:
    by_name = {f_.name: f_ for f_ in fields(SECTIONS[section])}
    for key, value in values.items():
        where = _where(source, text, section, key)
        if key not in by_name:
            raise ConfigError(f"{where}: unknown key '{key}' in section [{section}]. "
                              f"Known keys: {', '.join(by_name)}.")
        f_ = by_name[key]
        checked = _check_value(f_.type, value, f"{where}: '{section}.{key}'", f_.metadata)
        setattr(getattr(cfg, section), key, checked)


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML RunConfig, apply ``--set section.key=value`` overrides, resolve paths, validate.

    Raises:
        ConfigError: the file is missing or unreadable, the TOML is invalid, a key is unknown, or a
            value has the wrong type or range. The message names the file, line and key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}. Pass the path of a .toml file "
                          f"(see the README for an example).")
    data, text = read_toml(path)
    cfg = config_from_dict(data, source=str(path), text=text)
    for item in overrides:
        apply_override(cfg, item)
    resolve_paths(cfg, base_dir=path.parent)
    validate(cfg, source=str(path))
    return cfg


def read_toml(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The one TOML reader: (parsed dict, text) of a UTF-8 file.

    Raises:
        ConfigError: unreadable, not UTF-8, or invalid TOML (the message names the file, and the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}). Save the config as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc}).") from None
    return parse_toml(text, source=str(path)), text


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """Parse TOML text; ConfigError naming ``source`` and the parser's line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}.") from None


# ---- teacher references ---------------------------------------------------------------------

OLLAMA_PREFIX = "ollama:"


def ollama_model(ref: str) -> str | None:
    """The Ollama model name of a ``teacher.model = "ollama:<name>"`` reference; None for any other reference."""
    return ref[len(OLLAMA_PREFIX):].strip() if ref.startswith(OLLAMA_PREFIX) else None


def ollama_ref(name: str) -> str:
    """The ``teacher.model`` value that names an Ollama model."""
    return OLLAMA_PREFIX + name


def apply_override(cfg: RunConfig, item: str) -> None:
    """Apply one ``section.key=value``; the value is read as TOML when it parses, else as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set '{item}': expected section.key=value, e.g. --set train.max_steps=100.")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    cfg.set(key.strip(), value, source=f"--set {key.strip()}")


def resolve_paths(cfg: RunConfig, base_dir: str | os.PathLike | None = None) -> None:
    """Make relative model folders, data files and output_dir absolute (config folder first, then cwd)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    def resolve(value: str, must_exist: bool, keyword: str = "") -> str:
        if not value or value == keyword or value.startswith("ollama:"):
            return value
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        for candidate in (base / p, Path.cwd() / p):
            if candidate.exists():
                return str(candidate.resolve())
        # A model that is no folder stays a hub id; a data path that does not exist stays as
        # written relative to the config, so the error message names the place we looked.
        return value if must_exist else str((base / p).resolve())

    cfg.teacher.model = resolve(cfg.teacher.model, must_exist=True)
    cfg.student.model = resolve(cfg.student.model, must_exist=True, keyword="teacher")
    cfg.data.train = resolve(cfg.data.train, must_exist=False)
    cfg.data.eval = resolve(cfg.data.eval, must_exist=False)
    if cfg.output_dir:
        cfg.output_dir = resolve(cfg.output_dir, must_exist=False)


def validate(cfg: RunConfig, *, source: str = "config") -> None:
    """Cross-field checks that single values cannot express."""
    if not cfg.teacher.model and cfg.distill.loss != "ce":
        raise ConfigError(f"{source}: [teacher] model is not set. Give a hub id, a local folder or ollama:<name>.")
    if not cfg.student.model:
        raise ConfigError(f"{source}: [student] model is not set. Give a hub id, a local folder, or 'teacher'.")
    if cfg.student.model == "teacher" and cfg.teacher.model.startswith("ollama:"):
        raise ConfigError(f"{source}: a student cannot be derived from an Ollama teacher; "
                          f"choose a Hugging Face student model.")
    if not cfg.data.train:
        raise ConfigError(f"{source}: [data] train is not set. Give a .txt or .jsonl file.")
    if cfg.train.max_steps == 0 and cfg.train.epochs == 0:
        raise ConfigError(f"{source}: set [train] max_steps or epochs (both are 0).")
    if any(not isinstance(i, int) or i < 0 for i in cfg.student.keep_layers):
        raise ConfigError(f"{source}: [student] keep_layers must be a list of layer indices >= 0.")
    if not cfg.name or any(c in cfg.name for c in '/\\:*?"<>|') or cfg.name in (".", ".."):
        raise ConfigError(f"{source}: name '{cfg.name}' cannot be a folder name; "
                          f"use letters, digits, '-', '_' or '.'.")


# ---- helpers ---------------------------------------------------------------------------------


def _check_value(typ: Any, value: Any, where: str, meta: dict) -> Any:
    typ = {"str": str, "int": int, "float": float, "bool": bool, "list": list}.get(typ, typ)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}.")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}.")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a number, not {value!r}.")
        value = float(value)
    elif typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string (in quotes), not {value!r}.")
    elif typ is list:
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise ConfigError(f"{where} must be a list of whole numbers like [0, 2, 4], not {value!r}.")
        value = list(value)
    choices = meta.get("choices")
    if choices and value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{where} must be one of {shown}, not {value!r}.")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{where} must be >= {meta['min']}, not {value!r}.")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{where} must be <= {meta['max']}, not {value!r}.")
    if "min_excl" in meta and value <= meta["min_excl"]:
        raise ConfigError(f"{where} must be > {meta['min_excl']}, not {value!r}.")
    return value


def _where(source: str, text: str | None, section: str | None, key: str) -> str:
    line = _find_line(text, section, key) if text else None
    return f"{source}, line {line}" if line else source


def _find_line(text: str, section: str | None, key: str) -> int | None:
    """1-based line of ``key = ...`` inside ``[section]`` (None = top level), or None."""
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[") and not line.startswith("[["):
            current = line.strip("[] \t")
            if section is None and current == key:
                return number
            continue
        name = line.split("=", 1)[0].strip().strip('"').strip("'") if "=" in line else None
        if name == key and current == section:
            return number
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
