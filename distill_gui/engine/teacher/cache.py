"""The teacher's top-k log-probabilities on disk: computed once, memory-mapped while training.

Why: a teacher that does not fit next to the student can still drive top-k KD. It runs once over
the tokenized data, alone in memory, stores for every learned position its k most likely tokens
with their log-probabilities (T = 1, over the shared vocabulary), and is freed; training then
reads the rows of each batch from the cache. Answers of an Ollama teacher with ``top_logprobs``
are stored in the same format (see teacher_targets).

Layout of one split, ``<run>/teacher-cache/<split>/``:

- ``ids.npy``       (rows, k) int32 token ids. Slots a row does not fill hold distinct filler ids
                    with log-probability :data:`PAD_LOGPROB` (probability 0).
- ``logprobs.npy``  (rows, k) float16 or float32 log-probabilities at T = 1.
- ``offsets.npy``   (examples + 1,) int64: the rows of example i are ``offsets[i]:offsets[i + 1]``.
- ``meta.json``     format, k, dtype, counts and the :class:`CacheKey`; written last.

There is one row per counted position (labels != -100) of each example, in order, so the rows of a
collated batch line up with the positions ``distill_loss`` counts. Bytes per learned token:
k * 6 with float16 (k = 64: 384 B), k * 8 with float32.

Validity: the key holds hashes of the student's tokenizer, of the tokenized data (ids and labels of
every example) and of the teacher (weights, dtype, precision), plus k, dtype and the vocabulary. A
cache whose key differs in anything is rebuilt, never used, and the reason is reported.

Building writes into ``<split>.partial/``: preallocated memory-mapped arrays plus ``progress.json``
(key and examples done), saved every few seconds, so an interrupted build resumes where it stopped.
The folder gets its final name only when complete (``os.replace``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from distill_gui.engine.data import IGNORE, Example
from distill_gui.errors import TrainingError
from distill_gui.events import Control, EventCallback, LogMessage, PhaseProgress, PhaseStopped, Throttle, ignore_events
from distill_gui.formatting import human_bytes
from distill_gui.paths import write_text_atomic

FORMAT = 1
DTYPES = {"float16": np.float16, "float32": np.float32}
#: Log-probability of a filler slot: exp(-1e4) is exactly 0 in float32, yet the value stays finite
#: (0 * log 0 never appears) and fits float16.
PAD_LOGPROB = -1.0e4
COMMIT_SECONDS = 5.0

#: (examples) -> per example (ids (n_i, k) int, logprobs (n_i, k) float) for its n_i counted positions.
RowProducer = Callable[[Sequence[Example]], list[tuple[np.ndarray, np.ndarray]]]






@dataclass(frozen=True)
class CacheKey:
    """What a cache was computed from; any difference makes it stale."""

    tokenizer: str
    data: str
    teacher: str
    k: int
    dtype: str
    vocab: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """Plain-word names of the parts that differ from a stored key."""
        words = {"tokenizer": "student tokenizer", "data": "training data", "teacher": "teacher", "k": "top-k",
                 "dtype": "storage type", "vocab": "vocabulary"}
        return [words[name] for name, value in self.to_dict().items() if stored.get(name) != value]


# ---- reading ---------------------------------------------------------------------------------------


class TeacherCache:
    """One complete split, memory-mapped read-only.

    Args:
        folder: A split folder written by :func:`open_or_build`.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        self.key = CacheKey(**self.meta["key"])
        self.ids = np.load(self.folder / "ids.npy", mmap_mode="r")
        self.logprobs = np.load(self.folder / "logprobs.npy", mmap_mode="r")
        self.offsets = np.load(self.folder / "offsets.npy")

    @property
    def k(self) -> int:
        return self.key.k

    @property
    def n_examples(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def nbytes(self) -> int:
        """Bytes of the two arrays on disk (without the small headers)."""
        return int(self.ids.nbytes + self.logprobs.nbytes)

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n, k), logprobs (n, k)) of example ``index``'s counted positions."""
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.ids[a:b], self.logprobs[a:b]

    def batch_topk(self, indices: Sequence[int], labels, device: Any = None):
        """Teacher top-k for a collated batch, in the shape ``distill_loss(teacher_topk=...)`` takes.

        Args:
            indices: Example indices of the batch rows, in order.
            labels: (B, L) labels of the collated batch (-100 = not counted).
            device: Where the tensors go (default: the labels' device).

        Returns:
            ids (B * L, k) int64 and logprobs (B * L, k) float32; rows of uncounted positions are 0.

        Raises:
            TrainingError: the batch does not match the cache (a bug or a changed data pipeline).
        """
        import torch

        counted = (labels != IGNORE).cpu()
        per_row = counted.sum(1).tolist()
        spans = [(int(self.offsets[i]), int(self.offsets[i + 1])) for i in indices]
        if [b - a for a, b in spans] != per_row:
            raise TrainingError(f"The teacher cache in {self.folder} does not match the batch (examples "
                                f"{list(indices)[:4]}...): delete the folder and start the run again.")
        k = self.k
        ids = np.concatenate([self.ids[a:b] for a, b in spans]) if spans else np.zeros((0, k), np.int32)
        lps = np.concatenate([self.logprobs[a:b] for a, b in spans]) if spans else np.zeros((0, k), np.float32)
        flat = counted.reshape(-1).nonzero().squeeze(1)
        n = counted.numel()
        full_ids = torch.zeros((n, k), dtype=torch.long)
        full_lps = torch.zeros((n, k), dtype=torch.float32)
        full_ids[flat] = torch.from_numpy(ids.astype(np.int64))
        full_lps[flat] = torch.from_numpy(lps.astype(np.float32))
        target = labels.device if device is None else device
        return full_ids.to(target), full_lps.to(target)


def read_key(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The stored key of a complete split folder, or None when there is none (or it is unreadable)."""
    try:
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or not isinstance(meta.get("key"), dict):
        return None
    return meta["key"]


# ---- building --------------------------------------------------------------------------------------


def open_or_build(folder: str | os.PathLike, examples: Sequence[Example], key: CacheKey, produce: RowProducer, *,
                  batch_size: int, phase: str = "precompute", what: str = "teacher top-k",
                  on_event: EventCallback = ignore_events, control: Control | None = None) -> TeacherCache:
    """Open the cache at ``folder`` if its key matches, else build it (resuming a partial build).

    Args:
        folder: The split folder, e.g. ``<run>/teacher-cache/train``.
        examples: The tokenized examples, in the order the trainer indexes them.
        key: What the cache must have been computed from.
        produce: Computes the rows of a list of examples (see :data:`RowProducer`).
        batch_size: Examples per ``produce`` call.
        phase, what: For the ``PhaseProgress`` events.

    Raises:
        PhaseStopped: ``control`` asked to stop; the progress so far is kept for the next start.
    """
    folder = Path(folder)
    stored = read_key(folder)
    if stored is not None:
        stale = key.differences(stored)
        if not stale:
            cache = TeacherCache(folder)
            if cache.n_examples == len(examples):
                on_event(LogMessage(f"Using the teacher cache in {folder} ({cache.n_rows:,} positions, "
                                    f"{human_bytes(cache.nbytes())})."))
                return cache
            stale = ["number of examples"]
        on_event(LogMessage(f"The teacher cache in {folder} was made for another {', '.join(stale)}: "
                            f"rebuilding it.", "warning"))
    writer = _Writer(folder, key, [e.n_targets for e in examples])
    if writer.done:
        on_event(LogMessage(f"Continuing the {what} cache at example {writer.done:,} of {len(examples):,}."))
    total = len(examples)
    on_event(PhaseProgress(phase, writer.done, total, "examples", f"computing the {what}"))
    control, throttle = control or Control(), Throttle(total)
    for start in range(writer.done, total, batch_size):
        if control.pause_requested and control.wait_while_paused() or control.stop_requested:
            writer.commit(start)
            raise PhaseStopped(phase)
        batch = examples[start:start + batch_size]
        writer.write(start, produce(batch))
        writer.maybe_commit(start + len(batch))
        kind = throttle.due(start + len(batch))
        if kind:
            done = start + len(batch)
            message = f"computing the {what}: {done:,} of {total:,} examples" if kind == "milestone" else ""
            on_event(PhaseProgress(phase, start + len(batch), total, "examples", message))
    cache = writer.finish()
    on_event(LogMessage(f"Teacher cache written to {folder}: {cache.n_rows:,} positions, k = {key.k}, "
                        f"{cache.nbytes() / max(1, cache.n_rows):.0f} bytes per position."))
    return cache


class _Writer:
    """Preallocated arrays in ``<split>.partial/``, a progress file, and the final rename."""

    def __init__(self, folder: Path, key: CacheKey, counts: list[int]) -> None:
        self.folder, self.key = folder, key
        self.partial = folder.with_name(folder.name + ".partial")
        self.offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        rows, k = int(self.offsets[-1]), key.k
        self.done = self._resumable()
        mode = "r+" if self.done else "w+"
        if not self.done:
            shutil.rmtree(self.partial, ignore_errors=True)
            self.partial.mkdir(parents=True)
            np.save(self.partial / "offsets.npy", self.offsets)
        open_memmap = np.lib.format.open_memmap
        self.ids = open_memmap(self.partial / "ids.npy", mode=mode, dtype=np.int32, shape=(rows, k))
        self.logprobs = open_memmap(self.partial / "logprobs.npy", mode=mode, dtype=DTYPES[key.dtype], shape=(rows, k))
        self.last_commit = time.monotonic()

    def _resumable(self) -> int:
        """Examples already written by an interrupted build with the same key and layout (else 0)."""
        try:
            progress = json.loads((self.partial / "progress.json").read_text(encoding="utf-8"))
            same_layout = np.array_equal(np.load(self.partial / "offsets.npy"), self.offsets)
        except (OSError, ValueError):
            return 0
        if progress.get("key") != self.key.to_dict() or not same_layout:
            return 0
        return int(progress.get("done", 0))

    def write(self, first: int, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for i, (ids, logprobs) in enumerate(parts):
            a, b = int(self.offsets[first + i]), int(self.offsets[first + i + 1])
            if ids.shape != (b - a, self.key.k) or logprobs.shape != ids.shape:
                raise ValueError(f"example {first + i}: expected ({b - a}, {self.key.k}) rows, got {ids.shape} "
                                 f"and {logprobs.shape}")
            self.ids[a:b] = ids
            self.logprobs[a:b] = logprobs

    def maybe_commit(self, done: int) -> None:
        if time.monotonic() - self.last_commit >= COMMIT_SECONDS:
            self.commit(done)

    def commit(self, done: int) -> None:
        """Make the first ``done`` examples durable and record that."""
        self.ids.flush()
        self.logprobs.flush()
        _write_json(self.partial / "progress.json", {"key": self.key.to_dict(), "done": done})
        self.last_commit = time.monotonic()

    def finish(self) -> TeacherCache:
        self.ids.flush()
        self.logprobs.flush()
        rows, k = self.ids.shape
        del self.ids, self.logprobs  # unmap before the rename (Windows cannot rename mapped files)
        (self.partial / "progress.json").unlink(missing_ok=True)
        _write_json(self.partial / "meta.json", {"format": FORMAT, "key": self.key.to_dict(), "rows": rows,
                                                 "examples": len(self.offsets) - 1, "created": time.time()})
        if self.folder.exists():
            shutil.rmtree(self.folder)
        os.replace(self.partial, self.folder)
        return TeacherCache(self.folder)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


# ---- hashes ------------------------------------------------------------------------------------------


def tokenizer_hash(tokenizer) -> str:
    """SHA-256 of what decides token ids: the tokenizer's definition, special tokens and chat template."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    extra = {"class": type(tokenizer).__name__, "template": getattr(tokenizer, "chat_template", None) or "",
             "special": {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())},
             "size": len(tokenizer)}
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()


def examples_hash(examples: Sequence[Example]) -> str:
    """SHA-256 of the ids and labels of every example, in order (the data exactly as trained)."""
    digest = hashlib.sha256()
    for example in examples:
        ids = np.asarray(example.input_ids, dtype=np.int64)
        labels = np.asarray(example.labels, dtype=np.int64)
        digest.update(np.int64(len(ids)).tobytes())
        digest.update(ids.tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()


def model_files_hash(folder: str | os.PathLike, settings: dict[str, Any] | None = None, *,
                     sample_bytes: int = 1 << 20) -> str:
    """SHA-256 identifying a model folder's weights without reading all of them.

    Covers config.json in full and, for every weight file, its name, size and the SHA-256 of its first
    and last ``sample_bytes`` (the header plus both ends of the tensor data), plus ``settings`` such as
    dtype and precision that change the numbers the teacher produces.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    config = folder / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    weights = sorted(p for pattern in ("*.safetensors", "*.bin", "*.pt") for p in folder.glob(pattern))
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            digest.update(f.read(sample_bytes))
            if size > 2 * sample_bytes:
                f.seek(size - sample_bytes)
                digest.update(f.read(sample_bytes))
    digest.update(json.dumps(settings or {}, sort_keys=True).encode())
    return digest.hexdigest()


# ---- the HF teacher's rows -------------------------------------------------------------------------------


def topk_logprobs(logits, k: int):
    """Top-k log-probabilities of each row at T = 1.

    Args:
        logits: (C, V) float logits over the shared vocabulary.
        k: Entries per row (<= V).

    Returns:
        ids (C, k) int64 and logprobs (C, k) float32, most likely first.
    """
    import torch

    lse = torch.logsumexp(logits, dim=1, keepdim=True)
    top = torch.topk(logits, k, dim=1)
    return top.indices, (top.values - lse).float()


class TeacherTopK:
    """Produces cache rows with an HF teacher: the same projection as the live top-k path.

    Args:
        teacher: The teacher causal LM (eval mode, on ``device``).
        k: Entries per position.
        vocab: Shared vocabulary V; logits are restricted to ids < V.
        pad_id: Padding id for collating.
        device: The teacher's device.
        autocast: A no-argument callable returning the autocast context the trainer uses.
        chunk_rows: Positions projected to the vocabulary at a time (bounds the (chunk x V) buffer).
    """

    def __init__(self, teacher, *, k: int, vocab: int, pad_id: int, device: Any, autocast: Callable[[], Any],
                 chunk_rows: int = 1024) -> None:
        self.teacher, self.k, self.vocab, self.pad_id = teacher, k, vocab, pad_id
        self.device, self.autocast, self.chunk_rows = device, autocast, chunk_rows

    def __call__(self, examples: Sequence[Example]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        from distill_gui.engine.data import collate
        from distill_gui.engine.losses.fused import Head, project
        from distill_gui.engine.models.forward import final_hidden

        batch = collate(list(examples), self.pad_id)
        labels = batch["labels"].reshape(-1)
        rows = (labels != IGNORE).nonzero().squeeze(1).to(self.device)
        ids_out, lps_out = [], []
        with torch.no_grad():
            with self.autocast():
                hidden, head = final_hidden(self.teacher, batch["input_ids"].to(self.device),
                                            batch["attention_mask"].to(self.device))
            head = Head() if head is None else Head(weight=head.weight, bias=head.bias)
            for start in range(0, int(rows.shape[0]), self.chunk_rows):
                x = hidden.index_select(0, rows[start:start + self.chunk_rows])
                ids, lps = topk_logprobs(project(x, head, self.vocab, torch.float32), self.k)
                ids_out.append(ids.to(torch.int32).cpu())
                lps_out.append(lps.cpu())
        k = self.k
        all_ids = torch.cat(ids_out).numpy() if ids_out else np.zeros((0, k), np.int32)
        all_lps = torch.cat(lps_out).numpy() if lps_out else np.zeros((0, k), np.float32)
        bounds = np.cumsum([0] + [e.n_targets for e in examples])
        return [(all_ids[a:b], all_lps[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
