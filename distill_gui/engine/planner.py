"""Memory plan: will teacher + student + activations + loss fit, and what to change if not.

An estimate from the model configs (no weights are loaded), at the configured batch, length and
precision. Parts:

- teacher weights: parameters x bytes of its dtype (8-bit ~1 byte, 4-bit ~0.56 byte per quantized
  weight; embeddings stay in 16 bit);
- student weights, gradients (trainable x weight bytes), optimizer state (AdamW: two fp32 moments,
  8 bytes per trainable parameter; 8-bit AdamW: 2 bytes);
- activations saved for the backward pass: per token and layer about ``9 H + 2 kv_dim + 4 I``
  values (norm inputs, q/k/v, attention output, residuals, the gated MLP), in the autocast dtype;
  with gradient checkpointing only each layer's input plus one layer's full set. SDPA attention
  (CUDA and CPU) never holds the L x L scores; on MPS one layer's scores (B x heads x L x L) are added;
- teacher activations of one layer at a time (no gradients), and its final hidden states;
- the loss: a handful of (chunk x V) float32 buffers (losses.auto_chunk_tokens) and the gradient of
  the student's hidden states;
- overhead: the CUDA context / the Python runtime, plus 10 % for allocator fragmentation.

A teacher that runs alone before training (``teacher.cache_top_k > 0``: its top-k is cached on disk,
or ``teacher.generate``: it writes the answers) is planned as a separate phase - its weights and
activations plus the top-k projection or the generation KV cache - and the run needs the larger of
that phase and training (where the cached rows of a batch replace the teacher). An Ollama teacher
uses no memory of this process.

The numbers are planning figures (within ~20 % for Llama-like models), not measurements.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from distill_gui.config import RunConfig, ollama_model
from distill_gui.engine.device import DTYPE_BYTES, available_memory, choose, resolve_device
from distill_gui.engine.models import ModelInfo, inspect_model
from distill_gui.formatting import human_bytes, human_count

GB = 1e9
LOSS_BUFFERS = 6                     # chunk x V float32 buffers alive at once inside the loss
CUDA_OVERHEAD = int(0.6 * GB)        # CUDA context + cuBLAS workspaces
CPU_OVERHEAD = int(0.4 * GB)         # Python + torch + transformers resident (0.35 GB measured)
FRAGMENTATION = 0.10


@dataclass
class MemoryItem:
    name: str
    bytes: int
    note: str = ""


@dataclass
class MemoryPlan:
    """The estimate, the detected memory, whether it fits, and advice in plain words."""

    device: str
    available_bytes: int              # free memory of the device (RAM on the CPU); 0 = unknown
    total_device_bytes: int
    items: list[MemoryItem]
    advice: list[str] = field(default_factory=list)
    teacher_phase: list[MemoryItem] = field(default_factory=list)  # the teacher alone, before training

    @property
    def needed_bytes(self) -> int:
        """The peak: training, or the teacher's phase before it when that needs more."""
        return max(sum(item.bytes for item in self.items), sum(item.bytes for item in self.teacher_phase))

    @property
    def fits(self) -> bool:
        return self.available_bytes > 0 and self.needed_bytes <= self.available_bytes

    def get(self, name: str) -> int:
        """Bytes of one item by name (0 when absent)."""
        return sum(item.bytes for item in self.items if item.name == name)

    def summary(self) -> str:
        """Plain words: what it needs, what there is, each part, and what to change."""
        lines = []
        where = f"{human_bytes(self.available_bytes)} free on {self.device}" if self.available_bytes else \
            f"unknown free memory on {self.device}"
        verdict = "fits" if self.fits else ("does not fit" if self.available_bytes else "cannot tell")
        lines.append(f"Needs about {human_bytes(self.needed_bytes)} of {where}: {verdict}.")
        width = max(len(item.name) for item in self.items)
        for item in self.items:
            note = f"  ({item.note})" if item.note else ""
            lines.append(f"  {item.name.ljust(width)}  {human_bytes(item.bytes).rjust(9)}{note}")
        if self.teacher_phase:
            lines.append(f"Before training the teacher runs alone: about "
                         f"{human_bytes(sum(item.bytes for item in self.teacher_phase))}.")
            lines += [f"  {item.name.ljust(width)}  {human_bytes(item.bytes).rjust(9)}" for item in self.teacher_phase]
        if self.advice:
            lines.append("To make it fit:" if not self.fits else "To save memory:")
            lines += [f"  - {text}" for text in self.advice]
        return "\n".join(lines)


def plan_memory(cfg: RunConfig, device: str | None = None, *, available_bytes: int | None = None,
                teacher_info: ModelInfo | None = None, student_info: ModelInfo | None = None) -> MemoryPlan:
    """Estimate the memory of a run (see the module docstring).

    Args:
        cfg: The run's config.
        device: Plan for this device; None = the config's device, resolved (auto -> CUDA, MPS, CPU).
        available_bytes: Free memory to plan against; None = measured on the device.
        teacher_info, student_info: Already inspected models (the GUI has them); else inspected here.

    Raises:
        ModelError, ConfigError: the models cannot be found, or the device does not exist.
    """
    device = device or resolve_device(cfg.train.device)
    if available_bytes is None:
        free, total = available_memory(device)
    else:
        free, total = available_bytes, available_bytes
    shapes = _Shapes.of(cfg, teacher_info, student_info)
    items = _estimate(cfg, device, shapes)
    plan = MemoryPlan(device, free, total, items, teacher_phase=_teacher_phase(cfg, device, shapes))
    plan.advice = _advice(cfg, device, shapes, plan)
    return plan


@dataclass
class _Shapes:
    teacher: ModelInfo | None
    student: ModelInfo
    vocab: int

    @classmethod
    def of(cls, cfg: RunConfig, teacher: ModelInfo | None, student: ModelInfo | None) -> "_Shapes":
        needs_teacher = cfg.distill.loss != "ce" or cfg.student.model == "teacher" or cfg.teacher.generate
        if ollama_model(cfg.teacher.model) is not None:  # served by Ollama: none of our memory
            needs_teacher, teacher = False, None
        if teacher is None and needs_teacher:
            teacher = inspect_model(cfg.teacher.model, trust_remote_code=cfg.teacher.trust_remote_code)
        if student is None:
            if cfg.student.model == "teacher":
                student = _derived_info(teacher, cfg.student.keep_layers)
            else:
                student = inspect_model(cfg.student.model, trust_remote_code=cfg.student.trust_remote_code)
        vocab = student.tokenizer_vocab or student.vocab_rows
        return cls(teacher, student, vocab)

    def live_teacher(self, cfg: RunConfig) -> ModelInfo | None:
        """The teacher while the student trains (None: no teacher, or its top-k comes from a cache)."""
        if cfg.distill.loss == "ce" or cfg.teacher.cache_top_k > 0:
            return None
        return self.teacher


def _derived_info(teacher: ModelInfo, keep_layers: list[int]) -> ModelInfo:
    kept = len(keep_layers) or (teacher.layers + 1) // 2
    per_layer = (teacher.parameters - _embeddinghuman_count(teacher)) / max(1, teacher.layers)
    params = int(_embeddinghuman_count(teacher) + kept * per_layer)
    return dataclasses.replace(teacher, layers=kept, parameters=params, parameters_exact=False)


def _embeddinghuman_count(info: ModelInfo) -> int:
    return info.vocab_rows * info.hidden_size * (1 if info.tied_embeddings else 2)


def _lorahuman_count(info: ModelInfo, rank: int) -> int:
    head_dim = info.hidden_size // max(1, info.attention_heads)
    kv = info.kv_heads * head_dim
    h, i = info.hidden_size, info.intermediate_size
    per_layer = rank * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))
    return per_layer * info.layers


def _estimate(cfg: RunConfig, device: str, shapes: _Shapes) -> list[MemoryItem]:
    choice = choose(device, cfg.train.precision, cfg.teacher.dtype, cfg.student.dtype)
    kind = device.split(":")[0]
    t, s = shapes.live_teacher(cfg), shapes.student
    batch, length = cfg.train.batch_size, cfg.data.max_length
    tokens = batch * length
    act_bytes = 4 if choice.precision == "fp32" else 2
    items = []
    if t is not None:
        items.append(MemoryItem("teacher weights", _teacher_weight_bytes(t, cfg.teacher.load_in, choice.teacher_dtype),
                                f"{human_count(t.parameters)} parameters, "
                                f"{cfg.teacher.load_in if cfg.teacher.load_in != 'full' else choice.teacher_dtype}"))
    student_bytes = DTYPE_BYTES[choice.student_dtype]
    trainable = _lorahuman_count(s, cfg.student.lora_rank) if cfg.student.lora_rank else s.parameters
    optimizer_bytes = 2 if cfg.train.optimizer == "adamw_8bit" else 8
    items += [
        MemoryItem("student weights", s.parameters * student_bytes + (trainable * 4 if cfg.student.lora_rank else 0),
                   f"{human_count(s.parameters)} parameters, {choice.student_dtype}"),
        MemoryItem("gradients", trainable * (4 if cfg.student.lora_rank else student_bytes),
                   f"{human_count(trainable)} trainable" + (f" (LoRA rank {cfg.student.lora_rank})"
                                                           if cfg.student.lora_rank else "")),
        MemoryItem("optimizer state", trainable * optimizer_bytes, cfg.train.optimizer),
        MemoryItem("activations", _student_activation_bytes(s, cfg, kind, act_bytes),
                   f"batch {batch} x {length} tokens" + (", checkpointed" if cfg.train.gradient_checkpointing else "")),
    ]
    if t is not None:
        per_token = 4 * t.hidden_size + 2 * t.intermediate_size
        items.append(MemoryItem("teacher activations", tokens * (per_token + t.hidden_size) * act_bytes,
                                "one layer at a time, no gradients"))
    if _cache_rows(cfg, shapes):
        items.append(MemoryItem("cached teacher rows", tokens * _cache_rows(cfg, shapes) * 12,
                                "top-k ids and log-probabilities of a batch"))
    items.append(MemoryItem("loss", _loss_bytes(cfg, shapes.vocab, tokens, s.hidden_size), "chunked over tokens"))
    base = CUDA_OVERHEAD if kind == "cuda" else CPU_OVERHEAD
    subtotal = sum(item.bytes for item in items)
    items.append(MemoryItem("overhead", int(base + FRAGMENTATION * subtotal),
                            "runtime + allocator fragmentation"))
    return items


def _cache_rows(cfg: RunConfig, shapes: _Shapes) -> int:
    """Entries per position the trainer reads from a teacher cache (0 = no cache)."""
    if cfg.distill.loss == "ce":
        return 0
    if ollama_model(cfg.teacher.model) is not None:
        return max(1, cfg.teacher.top_logprobs)
    return cfg.teacher.cache_top_k if shapes.teacher is not None else 0


def _teacher_phase(cfg: RunConfig, device: str, shapes: _Shapes) -> list[MemoryItem]:
    """The teacher alone before training: caching its top-k, or writing the answers (else [])."""
    t = shapes.teacher
    caching = cfg.distill.loss != "ce" and cfg.teacher.cache_top_k > 0
    if t is None or not (caching or cfg.teacher.generate):
        return []
    choice = choose(device, cfg.train.precision, cfg.teacher.dtype, cfg.student.dtype)
    act_bytes = 4 if choice.precision == "fp32" else 2
    items = [MemoryItem("teacher weights", _teacher_weight_bytes(t, cfg.teacher.load_in, choice.teacher_dtype))]
    work = 0
    if caching:  # one batch of 8 rows forward, then (1024 x V) float32 projections for the top-k
        tokens = 8 * cfg.data.max_length
        work = tokens * (4 * t.hidden_size + 2 * t.intermediate_size + t.hidden_size) * act_bytes \
            + 3 * 1024 * shapes.vocab * 4
    if cfg.teacher.generate:  # the KV cache of a batch of prompts and answers
        length = cfg.data.max_length + cfg.teacher.gen_max_tokens
        kv = t.kv_heads * (t.hidden_size // max(1, t.attention_heads))
        work = max(work, cfg.teacher.gen_parallel * length * t.layers * 2 * kv * act_bytes
                   + cfg.teacher.gen_parallel * shapes.vocab * 4 * 4)
    items.append(MemoryItem("teacher work", work, "top-k projection or generation KV cache"))
    base = CUDA_OVERHEAD if device.startswith("cuda") else CPU_OVERHEAD
    items.append(MemoryItem("overhead", int(base + FRAGMENTATION * sum(item.bytes for item in items))))
    return items


def _needed(cfg: RunConfig, device: str, shapes: _Shapes) -> int:
    return max(sum(item.bytes for item in _estimate(cfg, device, shapes)),
               sum(item.bytes for item in _teacher_phase(cfg, device, shapes)))


def _teacher_weight_bytes(info: ModelInfo, load_in: str, dtype: str) -> int:
    embeddings = _embeddinghuman_count(info)
    body = max(0, info.parameters - embeddings)
    per_weight = {"8bit": 1.02, "4bit": 0.56}.get(load_in)
    if per_weight is None:
        return info.parameters * DTYPE_BYTES[dtype]
    return int(body * per_weight + embeddings * 2)


def _student_activation_bytes(info: ModelInfo, cfg: RunConfig, kind: str, act_bytes: int) -> int:
    tokens = cfg.train.batch_size * cfg.data.max_length
    h, i = info.hidden_size, info.intermediate_size
    kv = info.kv_heads * (h // max(1, info.attention_heads))
    per_layer = tokens * (9 * h + 2 * kv + 4 * i) * act_bytes
    if cfg.train.gradient_checkpointing:
        total = info.layers * tokens * h * act_bytes + per_layer
    else:
        total = info.layers * per_layer
    if kind == "mps":  # no fused attention there: one layer's scores and probabilities exist at a time
        total += 2 * cfg.train.batch_size * info.attention_heads * cfg.data.max_length ** 2 * 4
    return int(total + tokens * h * 4)  # + the final hidden states in fp32


def _loss_bytes(cfg: RunConfig, vocab: int, tokens: int, hidden: int) -> int:
    from distill_gui.engine.losses import auto_chunk_tokens

    chunk = min(tokens, cfg.distill.chunk_tokens or auto_chunk_tokens(vocab))
    return LOSS_BUFFERS * chunk * vocab * 4 + 2 * tokens * hidden * 4


def _advice(cfg: RunConfig, device: str, shapes: _Shapes, plan: MemoryPlan) -> list[str]:
    """Each change that lowers the estimate, with its saving, biggest first (only when it does not fit)."""
    if plan.fits or not plan.available_bytes:
        return []
    cuda = device.startswith("cuda")
    changes: list[tuple[str, dict[str, object]]] = []
    if not cfg.train.gradient_checkpointing:
        changes.append(("set train.gradient_checkpointing = true (about 30 % slower)",
                        {"train.gradient_checkpointing": True}))
    if cfg.train.batch_size > 1:
        half = cfg.train.batch_size // 2
        changes.append((f"set train.batch_size = {half} and train.grad_accum = {cfg.train.grad_accum * 2} "
                        f"(same effective batch)",
                        {"train.batch_size": half, "train.grad_accum": cfg.train.grad_accum * 2}))
    if cfg.data.max_length > 256:
        changes.append((f"set data.max_length = {cfg.data.max_length // 2} (longer rows are truncated)",
                        {"data.max_length": cfg.data.max_length // 2}))
    if cfg.student.lora_rank == 0:
        changes.append(("train a LoRA: student.lora_rank = 16 (merged into final/)", {"student.lora_rank": 16}))
    if cuda and cfg.train.optimizer == "adamw" and cfg.student.lora_rank == 0:
        changes.append(("set train.optimizer = 'adamw_8bit' (bitsandbytes)", {"train.optimizer": "adamw_8bit"}))
    live = shapes.live_teacher(cfg)
    if live is not None and cfg.teacher.cache_top_k == 0:
        k = cfg.distill.top_k if 0 < cfg.distill.top_k <= 1024 else 64
        changes.append((f"cache the teacher's top-{k} on disk first, so teacher and student never share the "
                        f"device: teacher.cache_top_k = {k}" + ("" if cfg.distill.top_k else
                                                              f" (with distill.top_k = {k})"),
                        {"teacher.cache_top_k": k, "distill.top_k": k}))
    teacher_loaded = live is not None or bool(_teacher_phase(cfg, device, shapes))
    if cuda and teacher_loaded and cfg.teacher.load_in == "full":
        changes.append(("load the teacher in 8 bits: teacher.load_in = '8bit'", {"teacher.load_in": "8bit"}))
        changes.append(("load the teacher in 4 bits: teacher.load_in = '4bit'", {"teacher.load_in": "4bit"}))
    scored = []
    for text, values in changes:
        trial = cfg.copy()
        for key, value in values.items():
            trial.set(key, value)
        saving = plan.needed_bytes - _needed(trial, device, shapes)
        if saving >= max(0.01 * plan.needed_bytes, 1e6):  # leave out changes that barely matter
            scored.append((saving, text))
    scored.sort(reverse=True)
    advice = [f"{text}: saves about {human_bytes(saving)}" for saving, text in scored]
    missing = plan.needed_bytes - plan.available_bytes
    if scored and all(saving < missing for saving, _ in scored):
        advice.append(f"no single change saves the missing {human_bytes(missing)}; combine several, or pick a smaller "
                      f"teacher or student")
    if not cuda:
        advice.append("a CUDA GPU would allow a quantized teacher and 8-bit AdamW")
    return advice
