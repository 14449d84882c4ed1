"""The cached teacher: bytes per token on disk, and a training step with the cache vs the live teacher.

Measured in one run, on the same models and batches (CPU unless --device says otherwise):

- ``bytes/token``: the cache files (ids.npy + logprobs.npy, headers included) divided by the learned
  tokens, for several k and both storage types, next to the full logits of one token in bf16;
- ``precompute``: the one-off cost of writing the cache (teacher forward + top-k), per token
  (best of two builds);
- ``step``: one optimizer step of the trainer's real code - ``trainer.compute_batch_loss`` + backward
  + AdamW - with the live teacher (top-k from its logits) and with the cache (rows read from the
  memory-mapped files), alternating, median of ``--steps`` rounds; plus the loss difference between
  the two on the same batch (the cached path reproduces the live one).

Models: Qwen2-architecture teacher 6 x 384 and student 2 x 128 (engine/tiny.py), vocabulary 8192
(byte-level BPE trained on step.py's Zipf pseudo-words), batch 8 x 256 tokens; forward KL, T = 2,
top-k renormalised.

Usage:
    python benchmarks/teacher_cache.py [--steps 12] [--k 64] [--device cpu|cuda] [--threads N]

Last run (CPU, 2 shared cores, about 3 minutes): 6 bytes per entry and learned token with float16
(k = 64: 384 B/token, 2.3 % of one token's bf16 logits at V = 8192), 8 with float32; the step with
the cache took 0.24 x the live-teacher step (880 vs 3,643 ms), loss equal to 2.5e-6 relative; the
one-off precompute cost 1,360 us per learned token (the teacher's forward pass dominates both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def build(folder: Path, vocab: int) -> tuple[Path, Path, Path]:
    from step import generated_text  # Zipf pseudo-words: enough distinct text for a large vocabulary

    from distill_gui.workflows.tiny import make_tiny_model, save_tokenizer, train_bpe_tokenizer

    texts = generated_text(8000, seed=0)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab, style="qwen")
    ids = dict(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    for name, shape, seed in (("teacher", dict(hidden=384, layers=6), 0), ("student", dict(hidden=128, layers=2), 1)):
        model = make_tiny_model("qwen2", len(tokenizer), heads=4, kv_heads=2, seed=seed, init_std=0.05, **shape, **ids)
        model.save_pretrained(str(folder / name))
        save_tokenizer(tokenizer, folder / name)
    rows = [" ".join(texts[i:i + 14]) for i in range(0, 8000 - 14, 14)]
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"text": r}) + "\n" for r in rows[:96]), encoding="utf-8")
    return folder / "teacher", folder / "student", data


def examples_of(data: Path, tokenizer) -> list:
    from distill_gui.config import DataConfig
    from distill_gui.engine.data import load_datasets

    cfg = DataConfig(train=str(data), max_length=256, eval_fraction=0.0)
    return load_datasets(cfg, tokenizer, seed=0).train


def cache_files_bytes(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in ("ids.npy", "logprobs.npy"))


def build_cache(folder: Path, examples, teacher, tokenizer, k: int, dtype: str, device: str):
    from distill_gui.engine.teacher.cache import CacheKey, TeacherTopK, examples_hash, open_or_build, tokenizer_hash

    key = CacheKey(tokenizer=tokenizer_hash(tokenizer), data=examples_hash(examples), teacher="bench", k=k,
                   dtype=dtype, vocab=len(tokenizer))
    rows = TeacherTopK(teacher, k=k, vocab=len(tokenizer), pad_id=tokenizer.pad_token_id, device=device,
                       autocast=contextlib.nullcontext)
    started = time.perf_counter()
    cache = open_or_build(folder, examples, key, rows, batch_size=8)
    return cache, time.perf_counter() - started


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def step(student, optimizer, teacher, batch, spec, topk, device: str) -> tuple[float, float]:
    from distill_gui.engine.trainer import compute_batch_loss

    sync(device)
    started = time.perf_counter()
    if callable(topk):
        topk = topk()
    result = compute_batch_loss(student, teacher, batch, spec, vocab_size=None, num_tokens=None, teacher_topk=topk)
    result.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - started, float(result.loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import torch

    from distill_gui.engine import models as M
    from distill_gui.engine.data import collate
    from distill_gui.engine.losses import LossSpec

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        teacher_dir, student_dir, data = build(folder, args.vocab)
        tokenizer = M.load_tokenizer(student_dir)
        examples = examples_of(data, tokenizer)
        tokens = sum(e.n_targets for e in examples)
        teacher = M.load_model(teacher_dir, dtype="float32", device=args.device).eval()
        print(f"device {args.device}, threads {torch.get_num_threads()}, vocabulary {len(tokenizer):,}, "
              f"{len(examples)} examples, {tokens:,} learned tokens")

        print("\ncache size on disk (learned tokens only; bf16 logits of one token: "
              f"{len(tokenizer) * 2:,} bytes)")
        print(f"{'k':>5} {'dtype':>8} {'bytes/token':>12} {'vs bf16 logits':>15}")
        subset = examples[:16]
        subset_tokens = sum(e.n_targets for e in subset)
        for k, dtype in [(8, "float16"), (32, "float16"), (64, "float16"), (128, "float16"), (64, "float32")]:
            small, _ = build_cache(folder / f"size-{k}-{dtype}", subset, teacher, tokenizer, k, dtype, args.device)
            per_token = cache_files_bytes(small.folder) / subset_tokens
            print(f"{k:>5} {dtype:>8} {per_token:>12.1f} {per_token / (len(tokenizer) * 2):>14.2%}")

        builds = []
        for attempt in range(2):  # the one-off precompute, k = args.k, float16; best of two
            cache, seconds = build_cache(folder / f"cache-{attempt}", examples, teacher, tokenizer, args.k, "float16",
                                         args.device)
            builds.append(seconds)
        print(f"\nprecompute (teacher forward + top-{args.k} + write): {1e6 * min(builds) / tokens:.0f} us per "
              f"learned token ({min(builds):.1f} s for {tokens:,})")

        student = M.load_model(student_dir, dtype="float32", device=args.device)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
        spec = LossSpec(loss="forward_kl", temperature=2.0, alpha=0.9, top_k=args.k, top_k_mode="renorm")
        size = 8
        batches = [(list(range(i, i + size)), collate(examples[i:i + size], tokenizer.pad_token_id))
                   for i in range(0, len(examples) - size + 1, size)]
        times: dict[str, list[float]] = {"live": [], "cached": []}
        differences = []
        for round_ in range(args.steps + 1):  # round 0 warms up
            indices, batch = batches[round_ % len(batches)]
            batch = {k: v.to(args.device) for k, v in batch.items()}
            state = {k: v.clone() for k, v in student.state_dict().items()}
            opt_state = optimizer.state_dict()
            live_s, live_loss = step(student, optimizer, teacher, batch, spec, None, args.device)
            student.load_state_dict(state)  # the cached step starts from the same weights
            optimizer.load_state_dict(opt_state)
            cached_s, cached_loss = step(student, optimizer, None, batch, spec,
                                         lambda: cache.batch_topk(indices, batch["labels"], args.device), args.device)
            if round_:
                times["live"].append(live_s)
                times["cached"].append(cached_s)
                differences.append(abs(cached_loss - live_loss) / abs(live_loss))
        live, cached = statistics.median(times["live"]), statistics.median(times["cached"])
        print(f"\ntraining step (batch {size} x 256, k = {args.k}, float16 cache), median of {args.steps}")
        print(f"{'teacher':>8} {'ms/step':>9} {'ratio':>7}")
        print(f"{'live':>8} {1e3 * live:>9.1f} {1.0:>7.2f}")
        print(f"{'cached':>8} {1e3 * cached:>9.1f} {cached / live:>7.2f}")
        print(f"largest relative loss difference cached vs live: {max(differences):.2e}")


if __name__ == "__main__":
    main()
