"""The training loop's own cost, and the memory planner against a measurement.

Measured in one run, on the same models and batches (CPU unless --device says otherwise):

- ``bare``: a hand-written loop over pre-built batches: ``trainer.compute_batch_loss`` + backward +
  clipping + AdamW (the work that cannot be avoided);
- ``train()``: the real ``engine.trainer.train`` (data stream, token counting, metrics, events,
  Control checks, scheduler), timed between its first and last StepMetrics;
- the planner's activation estimate against the bytes autograd actually saves in the student's
  forward pass (a ``saved_tensors_hooks`` count), and its total against the peak RSS of the run.

Models: Qwen2-architecture teacher 4 x 256 and student 2 x 128 (engine/tiny.py), vocabulary 4096,
batch 8 x 256 tokens of generated text.

Usage:
    python benchmarks/train_loop.py [--steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(folder: Path, vocab: int = 4096) -> tuple[Path, Path, Path]:
    from distill_gui.workflows.tiny import make_tiny_model, sample_text, save_tokenizer, train_bpe_tokenizer

    texts = sample_text(6000, seed=0)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab, style="qwen")
    ids = dict(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    for name, shape, seed in (("teacher", dict(hidden=256, layers=4), 0), ("student", dict(hidden=128, layers=2), 1)):
        model = make_tiny_model("qwen2", len(tokenizer), heads=4, kv_heads=2, seed=seed, **shape, **ids)
        model.save_pretrained(str(folder / name))
        save_tokenizer(tokenizer, folder / name)
    rows = [" ".join(texts[i:i + 14]) for i in range(0, 6000 - 14, 14)]  # long rows: all truncated to 256
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"text": r}) + "\n" for r in rows), encoding="utf-8")
    return folder / "teacher", folder / "student", data


def config(folder: Path, teacher: Path, student: Path, data: Path, steps: int):
    from distill_gui.config import RunConfig

    cfg = RunConfig(name="bench", output_dir=str(folder / "runs"))
    cfg.teacher.model, cfg.student.model, cfg.data.train = str(teacher), str(student), str(data)
    cfg.data.max_length, cfg.data.eval_fraction = 256, 0.0
    t = cfg.train
    t.max_steps, t.batch_size, t.grad_accum, t.lr, t.warmup_steps = steps, 8, 1, 1e-3, 0
    t.log_every, t.eval_every, t.save_every, t.device = 1, 0, 0, "cpu"
    return cfg


def bare_steps(cfg, steps: int) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    from distill_gui.engine.data import BatchStream, load_datasets
    from distill_gui.engine.losses import LossSpec
    from distill_gui.engine.models import load_tokenizer
    from distill_gui.engine.trainer import compute_batch_loss

    tokenizer = load_tokenizer(cfg.student.model)
    data = load_datasets(cfg.data, tokenizer, seed=cfg.train.seed)
    stream = BatchStream(data.train, cfg.train.batch_size, cfg.train.seed, tokenizer.pad_token_id)
    batches = [stream.batch(k) for k in range(steps)]
    teacher = AutoModelForCausalLM.from_pretrained(cfg.teacher.model).eval().requires_grad_(False)
    student = AutoModelForCausalLM.from_pretrained(cfg.student.model).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.train.lr)
    spec = LossSpec.from_config(cfg.distill)
    times = []
    for batch in batches:
        start = time.perf_counter()
        result = compute_batch_loss(student, teacher, batch, spec, vocab_size=None, num_tokens=None)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def loop_steps(cfg) -> list[float]:
    from distill_gui.engine.trainer import train
    from distill_gui.events import StepMetrics

    stamps = []
    train(cfg, on_event=lambda e: stamps.append(time.perf_counter()) if isinstance(e, StepMetrics) else None)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def saved_activation_bytes(cfg) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.student.model).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        key = tensor.untyped_storage().data_ptr()
        if key not in params:
            saved[key] = max(saved.get(key, 0), tensor.untyped_storage().nbytes())
        return tensor

    ids = torch.randint(0, model.config.vocab_size, (cfg.train.batch_size, cfg.data.max_length))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model(input_ids=ids, use_cache=False)
    return sum(saved.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    import torch
    from transformers.utils import logging

    from distill_gui.engine.planner import plan_memory

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        teacher, student, data = build(folder)
        cfg = config(folder, teacher, student, data, args.steps)
        warm = 3  # the first steps pay one-time kernel setup
        bare, loop = [], []
        for _ in range(2):  # alternate, keep each one's best median: damps a shared machine's noise
            bare.append(statistics.median(bare_steps(cfg, args.steps)[warm:]))
            cfg.name = f"bench-{len(loop)}"
            loop.append(statistics.median(loop_steps(cfg)[warm:]))
        plan = plan_memory(cfg, "cpu")
        saved = saved_activation_bytes(cfg)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    b, l_ = min(bare), min(loop)
    print(f"torch threads {torch.get_num_threads()}, batch {cfg.train.batch_size} x {cfg.data.max_length}, "
          f"vocab 4096, teacher 4x256, student 2x128, {args.steps} steps")
    print("| measure | value |\n|---|---|")
    print(f"| bare step (compute_batch_loss + backward + AdamW), median | {b * 1e3:.1f} ms |")
    print(f"| train() step, median | {l_ * 1e3:.1f} ms |")
    print(f"| train() / bare | {l_ / b:.3f} |")
    estimate = plan.get("activations") - cfg.train.batch_size * cfg.data.max_length * 128 * 4
    print(f"| planner activations / autograd saved bytes | {estimate / 1e6:.1f} MB / {saved / 1e6:.1f} MB = "
          f"{estimate / saved:.3f} |")
    print(f"| planner total / peak RSS of this process | {plan.needed_bytes / 1e9:.2f} GB / {peak / 1e9:.2f} GB = "
          f"{plan.needed_bytes / peak:.2f} |")


if __name__ == "__main__":
    main()
