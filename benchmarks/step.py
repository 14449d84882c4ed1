"""KD training step against its cost floor: time and peak memory, each variant in its own process.

The floor of a distillation step is what cannot be avoided: the teacher's forward pass plus the
student's own training step (forward, backward, AdamW) on plain cross-entropy. This script
measures, on the same models and batches:

- ``floor``: the teacher forward alone and the student CE step alone (HF ``labels=`` loss),
  timed separately in one process; floor time = their sum, floor peak = that process's peak;
- ``ours``: the trainer's real KD step: ``trainer.compute_batch_loss`` (hidden states + the fused,
  chunked loss of engine/losses.py) + backward + AdamW;
- ``plain``: a plain autograd KD step: full logits of both models, log_softmax both at T,
  ``kl_div`` + CE, backward + AdamW.

Each variant runs in a fresh subprocess (so its peak RSS, or CUDA peak allocation, is its own),
and the variants are run in alternating rounds, keeping each variant's fastest step (the timeit
convention), which damps the noise of a shared machine. Models: Qwen2-architecture teacher 4 layers x 256 and student
2 layers x 128 (engine/tiny.py); the tokenizers are byte-level BPEs trained here on generated
text. Cases: small vocabulary at sequence length 256 and 2048, and a large vocabulary (26k).

Usage:
    python benchmarks/step.py                       # all cases on the CPU
    python benchmarks/step.py --cases large --steps 3
    python benchmarks/step.py --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CASES = {
    # name: (vocabulary, batch, sequence length)
    "small-256": (1024, 8, 256),
    "small-2048": (1024, 2, 2048),
    "large": (26000, 8, 256),
}
VARIANTS = ("floor", "ours", "plain")
# --liger adds "ours+liger": the same step with Liger-Kernel's JSD kernel per chunk (engine/liger.py;
# meant for CUDA: on the CPU Triton only runs through its slow interpreter). "ours" then runs with it off.
LIGER_VARIANT = "ours+liger"
TEACHER = dict(hidden=256, layers=4, heads=4, kv_heads=2)
STUDENT = dict(hidden=128, layers=2, heads=4, kv_heads=2)
TEMPERATURE, ALPHA = 2.0, 0.9


# ---- data (parent process) ----------------------------------------------------------------------


def generated_text(n_lines: int, seed: int = 0, n_words: int = 60000) -> list[str]:
    """Lines of Zipf-distributed pseudo-words: enough distinct words for a 26k-token BPE."""
    rng = random.Random(seed)
    syllables = [c + v for c in "b c d f g h j k l m n p r s t v w z ch sh th st tr pl".split()
                 for v in "a e i o u ai ou ea".split()]
    words = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n_words)})
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(len(words))))
    return [" ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(6, 20))) + rng.choice(".!?,;")
            for _ in range(n_lines)]


def build_batch(vocab: int, batch: int, length: int, texts: list[str], folder: Path) -> Path:
    """Train a BPE of ``vocab`` tokens, pack the text into (batch, length) ids, save the tensors."""
    import torch

    from distill_gui.workflows.tiny import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab)
    if len(tokenizer) < vocab:
        raise SystemExit(f"the generated text only supports {len(tokenizer)} BPE tokens, not {vocab}")
    ids: list[int] = []
    for line in texts[::-1]:  # the end of the text: lines the BPE saw as often as any
        ids += tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) > batch * length:
            break
    input_ids = torch.tensor(ids[:batch * length]).view(batch, length)
    path = folder / f"batch-{vocab}-{batch}x{length}.pt"
    torch.save({"input_ids": input_ids, "vocab": len(tokenizer)}, path)
    return path


# ---- one variant (child process) ----------------------------------------------------------------


def _models(vocab: int, length: int, device: str, dtype: str):
    import torch

    from distill_gui.workflows.tiny import make_tiny_model

    teacher = make_tiny_model("qwen2", vocab, max_positions=length, seed=0, init_std=0.05, **TEACHER).to(device)
    student = make_tiny_model("qwen2", vocab, max_positions=length, seed=1, init_std=0.05, **STUDENT).to(device)
    if dtype == "bf16":
        teacher.to(torch.bfloat16)
    teacher.eval()
    student.train()
    return teacher, student


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_variant(variant: str, batch_file: str, steps: int, device: str, dtype: str, threads: int) -> dict:
    """Warm up, then time ``steps`` steps of one variant; return the fastest step and the peak memory."""
    import contextlib

    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = torch.load(batch_file)
    ids = data["input_ids"].to(device)
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]  # shifted: position i predicts token i + 1
    teacher, student = _models(data["vocab"], ids.shape[1], device, dtype)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bf16" and device.startswith("cuda")
                else contextlib.nullcontext())

    def optimizer_step():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def teacher_forward():
        with torch.no_grad(), autocast:
            return teacher(input_ids=ids, attention_mask=mask, use_cache=False).logits

    def student_ce_step():
        with autocast:
            out = student(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False)
        out.loss.backward()
        optimizer_step()

    def ours_step():
        from distill_gui.engine.losses import LossSpec
        from distill_gui.engine.trainer import compute_batch_loss

        spec = LossSpec(loss="forward_kl", temperature=TEMPERATURE, alpha=ALPHA)
        with autocast:
            res = compute_batch_loss(student, teacher, {"input_ids": ids, "attention_mask": mask, "labels": labels},
                                     spec, vocab_size=None, num_tokens=None)
        res.loss.backward()
        optimizer_step()

    def plain_step():
        import torch.nn.functional as F

        t_logits = teacher_forward()
        with autocast:
            s_logits = student(input_ids=ids, attention_mask=mask, use_cache=False).logits
        v = s_logits.shape[-1]
        s_flat, t_flat, y = s_logits.float().view(-1, v), t_logits.float().view(-1, v), labels.view(-1)
        keep = (y != -100).float()
        kl = F.kl_div(F.log_softmax(s_flat / TEMPERATURE, -1), F.log_softmax(t_flat / TEMPERATURE, -1),
                      log_target=True, reduction="none").sum(-1)
        kd = (kl * keep).sum() / keep.sum() * TEMPERATURE ** 2
        loss = ALPHA * kd + (1 - ALPHA) * F.cross_entropy(s_flat, y, ignore_index=-100)
        loss.backward()
        optimizer_step()

    parts = {"floor": [teacher_forward, student_ce_step], "ours": [ours_step], "plain": [plain_step]}[variant]
    steps_wall: list[list[float]] = []  # per step: the seconds of each part
    steps_cpu: list[float] = []
    for step in range(steps + 1):  # the first is a warm-up
        wall = []
        cpu_start = time.process_time()
        for part in parts:
            _sync(device)
            start = time.perf_counter()
            part()
            _sync(device)
            wall.append(time.perf_counter() - start)
        if step:
            steps_wall.append(wall)
            steps_cpu.append(time.process_time() - cpu_start)
    # The fastest whole step (all parts of the same step) is the one least disturbed by other jobs
    # (the timeit convention); summing each part's own minimum would favour the two-part floor.
    return {"seconds": min(steps_wall, key=sum), "cpu_seconds": [min(steps_cpu)], "peak": _peak_bytes(device)}


# ---- the table (parent process) -----------------------------------------------------------------


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float
    peak: int
    detail: str = ""


def measure_case(batch_file: Path, args) -> dict[str, Measured]:
    """Run every variant ``args.rounds`` times in alternating fresh processes; keep the fastest step."""
    best: dict[str, Measured] = {}
    for _ in range(args.rounds):
        for variant in _variants(args):
            cmd = [sys.executable, __file__, "--child", "ours" if variant == LIGER_VARIANT else variant,
                   "--batch-file", str(batch_file), "--steps", str(args.steps), "--device", args.device,
                   "--dtype", args.dtype, "--threads", str(args.threads)]
            env = os.environ.copy()
            if args.liger:
                env["DISTILL_GUI_LIGER"] = "on" if variant == LIGER_VARIANT else "off"
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"variant {variant} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            secs, cpu = sum(result["seconds"]), sum(result["cpu_seconds"])
            detail = ("teacher %.3f + student %.3f" % tuple(result["seconds"])) if variant == "floor" else ""
            if variant not in best:
                best[variant] = Measured(secs, cpu, result["peak"], detail)
                continue
            if secs < best[variant].seconds:
                best[variant].seconds, best[variant].detail = secs, detail
            # CPU time and peak memory move less with the machine's load: keep the lowest seen too.
            best[variant].cpu_seconds = min(best[variant].cpu_seconds, cpu)
            best[variant].peak = min(best[variant].peak, result["peak"])
    return best


def _variants(args) -> tuple[str, ...]:
    return VARIANTS + ((LIGER_VARIANT,) if args.liger else ())


def print_table(rows: list[tuple[str, dict[str, Measured]]], args) -> None:
    unit = "GPU peak alloc" if args.device.startswith("cuda") else "peak RSS"
    print(f"\ndevice={args.device} dtype={args.dtype} threads={args.threads or _threads()} steps={args.steps} "
          f"rounds={args.rounds} load average at start={args.load_at_start:.1f}, at end={os.getloadavg()[0]:.1f}")
    print(f"| case | variant | s/step | x floor | CPU s/step | x floor | {unit} | x floor | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, best in rows:
        floor = best["floor"]
        for variant in _variants(args):
            m = best[variant]
            print(f"| {case} | {variant} | {m.seconds:.3f} | {m.seconds / floor.seconds:.2f} | "
                  f"{m.cpu_seconds:.3f} | {m.cpu_seconds / floor.cpu_seconds:.2f} | "
                  f"{m.peak / 2**30:.2f} GiB | {m.peak / floor.peak:.2f} | {m.detail} |")
    print("\ns/step: wall clock of the fastest step over all rounds; CPU s/step: process CPU time (all"
          " threads) of the step with the least, less sensitive to other jobs on a shared machine.")
    print("\nextra peak memory of our KD step over the floor, per case:")
    for case, best in rows:
        print(f"  {case}: {(best['ours'].peak - best['floor'].peak) / 2**20:+.0f} MiB")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per variant, alternating")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--liger", action="store_true", help="also time our step with Liger-Kernel's JSD kernel")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(args.child, args.batch_file, args.steps, args.device, args.dtype, args.threads)))
        return 0
    args.load_at_start = os.getloadavg()[0]
    texts = generated_text(60000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            vocab, batch, length = CASES[case]
            batch_file = build_batch(vocab, batch, length, texts, Path(tmp))
            print(f"{case}: vocabulary {vocab}, batch {batch} x {length} ...", flush=True)
            rows.append((f"{case} (V={vocab}, {batch}x{length})", measure_case(batch_file, args)))
    print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
