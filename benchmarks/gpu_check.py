"""The GPU checks in one prepared run, for a session that has a CUDA machine (a few minutes).

    python benchmarks/gpu_check.py                # on CUDA
    python benchmarks/gpu_check.py --device cpu   # the same script on the CPU (checks the script itself)

1. The device: torch and CUDA versions, GPU, memory, bf16 support, liger-kernel, bitsandbytes.
2. Real distillation runs on the device (``engine.trainer.train``; precision auto = bf16 autocast on
   CUDA): the default run, and where bitsandbytes is installed an 8-bit teacher with AdamW 8-bit, and
   LoRA. Per run: s/step, peak memory (CUDA: max_memory_allocated) against the planner's estimate,
   first and last loss (finite, decreasing), the loss kernel the run reported.
3. The tests that need CUDA (those with "cuda" in their name, and the Liger check).
4. ``benchmarks/step.py`` on the device (bf16 and the Liger variant on CUDA; fp32 on the CPU).

Prints a table per part and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_loop import build, config  # noqa: E402  (the same models as the loop benchmark)

FAILURES: list[str] = []


def check(ok: bool, what: str) -> str:
    if not ok:
        FAILURES.append(what)
    return "ok" if ok else "FAILED"


def describe_device(device: str) -> None:
    import torch

    print("## Device\n\n| item | value |\n|---|---|")
    print(f"| torch | {torch.__version__} (CUDA {torch.version.cuda}) |")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"| GPU | {props.name}, {props.total_memory / 2**30:.1f} GiB, capability {props.major}.{props.minor} |")
        print(f"| bf16 supported | {torch.cuda.is_bf16_supported()} |")
    for package in ("liger_kernel", "triton", "bitsandbytes"):
        print(f"| {package} | {'installed' if importlib.util.find_spec(package) else 'not installed'} |")


def one_run(cfg, device: str) -> dict:
    import torch

    from distill_gui.engine.planner import plan_memory
    from distill_gui.engine.trainer import train
    from distill_gui.events import LogMessage, StepMetrics

    plan = plan_memory(cfg, device)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    steps, notes = [], []

    def on_event(event):
        if isinstance(event, StepMetrics):
            steps.append((time.perf_counter(), event.loss))
        elif isinstance(event, LogMessage) and ("Liger" in event.message or "kernel" in event.message):
            notes.append(event.message)

    train(cfg, on_event=on_event)
    gaps = [b[0] - a[0] for a, b in zip(steps, steps[1:])][3:]  # the first steps pay one-time setup
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return {"s_per_step": sorted(gaps)[len(gaps) // 2] if gaps else float("nan"), "peak": peak,
            "planned": plan.needed_bytes, "first": steps[0][1], "last": steps[-1][1], "notes": notes}


def training_runs(device: str, steps: int) -> None:
    print("\n## Training runs on the device\n")
    print("| run | s/step | peak alloc | planner | peak / plan | loss first -> last | check | kernel |")
    print("|---|---|---|---|---|---|---|---|")
    variants = {"default (precision auto)": {}, "LoRA r=16": {"student.lora_rank": 16}}
    if device == "cuda" and importlib.util.find_spec("bitsandbytes"):
        variants["8-bit teacher + AdamW 8-bit"] = {"teacher.load_in": "8bit", "train.optimizer": "adamw_8bit"}
        variants["4-bit teacher"] = {"teacher.load_in": "4bit"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        teacher, student, data = build(folder)
        for index, (name, overrides) in enumerate(variants.items()):
            cfg = config(folder, teacher, student, data, steps)
            cfg.name, cfg.train.device = f"gpu-check-{index}", device
            for key, value in overrides.items():
                cfg.set(key, value)
            try:
                r = one_run(cfg, device)
            except Exception as exc:  # a failure of one variant is a result, not the end of the check
                print(f"| {name} | – | – | – | – | – | {check(False, f'{name}: {exc}')} | {exc} |")
                continue
            ok = math.isfinite(r["last"]) and r["last"] < r["first"]
            ratio = f"{r['peak'] / r['planned']:.2f}" if r["peak"] else "–"
            peak = f"{r['peak'] / 2**20:.0f} MiB" if r["peak"] else "–"
            print(f"| {name} | {r['s_per_step']:.4f} | {peak} | {r['planned'] / 2**20:.0f} MiB | "
                  f"{ratio} | {r['first']:.3f} -> {r['last']:.3f} | {check(ok, name + ': loss did not fall')} | "
                  f"{' '.join(r['notes']) or 'own kernels'} |")


def cuda_tests(device: str) -> None:
    print("\n## Tests that need CUDA\n")
    if device != "cuda":
        print("skipped: not on CUDA")
        return
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda or liger",
           "tests/engine", "tests/export"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print("```\n" + "\n".join(result.stdout.strip().splitlines()[-15:]) + "\n```")
    check(result.returncode == 0, "CUDA tests failed")


def step_benchmark(device: str) -> None:
    print("\n## benchmarks/step.py\n")
    extra = ["--dtype", "bf16", "--liger"] if device == "cuda" else ["--steps", "2"]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--device", device, "--rounds", "1", *extra]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(result.stdout.strip() or result.stderr[-2000:])
    check(result.returncode == 0, "step.py failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-benchmark", action="store_true", help="leave out step.py (the longest part)")
    args = parser.parse_args()
    import torch
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu to check the script itself")
        return 2
    describe_device(args.device)
    training_runs(args.device, args.steps)
    cuda_tests(args.device)
    if not args.skip_benchmark:
        step_benchmark(args.device)
    print("\n" + ("all checks passed" if not FAILURES else "FAILED:\n  " + "\n  ".join(FAILURES)))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
