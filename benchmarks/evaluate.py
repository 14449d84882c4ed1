"""Evaluation cost: chunked scoring against the naive full-logits way, and the end-of-run report's share.

Measured in one run, side by side, on the same models and examples (CPU, one thread by default):

- ``score``: ``engine.evaluate.score`` (hidden states projected to the vocabulary 256 tokens at a time)
  vs ``naive``: the full (batch, length, vocabulary) logits of both models, log-softmax of the whole
  tensor. Each runs in its own child process; peak memory = peak RSS minus the RSS once the models and
  examples are loaded. Both must give the same numbers (checked).
- ``report``: ``train()`` of a short distillation run with ``train.report`` off and on: the seconds the
  end-of-run report (evaluation of 3 models, samples, speed, 3 PNGs) adds.

Models: Qwen2-architecture teacher 2 x 128 and student 1 x 128, vocabulary 32,768 (embedding rows; a
real 32k-vocabulary family), 32 examples x 256 tokens of generated text.

Usage:
    python benchmarks/evaluate.py [--threads 1] [--vocab 32768]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(folder: Path, vocab: int) -> None:
    from distill_gui.workflows.tiny import make_tiny_model, sample_text, save_tokenizer, train_bpe_tokenizer

    texts = sample_text(4000, seed=0)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=512, style="qwen")
    ids = dict(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    for name, layers, seed in (("teacher", 2, 0), ("student", 1, 1)):
        model = make_tiny_model("qwen2", vocab, hidden=128, layers=layers, heads=4, kv_heads=2, seed=seed,
                                init_std=0.2, **ids)  # padded rows: the loss and the scores use the first 512
        model.save_pretrained(str(folder / name))
        save_tokenizer(tokenizer, folder / name)
    rows = [" ".join(texts[i:i + 12]) for i in range(0, 4000 - 12, 12)]
    (folder / "data.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows), encoding="utf-8")


def _examples(folder: Path, tokenizer, n: int = 32, length: int = 256):
    from distill_gui.engine.data import read_rows, tokenize_rows

    rows = read_rows(folder / "data.jsonl")[:n]
    return tokenize_rows(rows, tokenizer, max_length=length, loss_on="all")[0]


def naive_score(student, teacher, examples, pad_id: int, vocab: int) -> dict:
    """Full logits of the whole batch at once (what evaluation code usually does)."""
    import torch

    from distill_gui.engine.data import collate

    nll = kl = 0.0
    agree = count = 0
    with torch.no_grad():
        for start in range(0, len(examples), 8):
            batch = collate(examples[start:start + 8], pad_id)
            labels = batch["labels"]
            s = torch.log_softmax(student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                                  .logits[..., :vocab].float(), dim=-1)
            t = torch.log_softmax(teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                                  .logits[..., :vocab].float(), dim=-1)
            mask = labels != -100
            nll -= float(s.gather(-1, labels.clamp(min=0)[..., None])[..., 0][mask].double().sum())
            agree += int((s.argmax(-1) == t.argmax(-1))[mask].sum())
            kl += float((t.exp() * (t - s)).sum(-1)[mask].double().sum())
            count += int(mask.sum())
    return {"tokens": count, "perplexity": math.exp(nll / count), "agreement": agree / count, "kl": kl / count}


def child(mode: str, folder: Path, threads: int) -> None:
    import torch

    from distill_gui.engine import models as M
    from distill_gui.engine.evaluation.evaluate import score

    torch.set_num_threads(threads)
    tokenizer = M.load_tokenizer(folder / "student")
    student = M.load_model(folder / "student", dtype="float32", device="cpu").eval()
    teacher = M.load_model(folder / "teacher", dtype="float32", device="cpu").eval()
    examples = _examples(folder, tokenizer)
    vocab = len(tokenizer)
    score(student, examples[:1], pad_id=tokenizer.pad_token_id, teacher=teacher, vocab_size=vocab)  # warm-up
    base = _rss_mb()
    started = time.perf_counter()
    if mode == "score":
        got = score(student, examples, pad_id=tokenizer.pad_token_id, teacher=teacher, vocab_size=vocab).to_dict()
    else:
        got = naive_score(student, teacher, examples, tokenizer.pad_token_id, vocab)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
                      **{k: got[k] for k in ("tokens", "perplexity", "agreement", "kl")}}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def report_overhead(folder: Path, threads: int) -> tuple[float, float]:
    """Seconds of train() with the report off and on (a 10-step forward-KL run on the same data)."""
    import torch

    from distill_gui.config import RunConfig
    from distill_gui.engine.trainer import train

    torch.set_num_threads(threads)
    times = []
    for index, report in enumerate((False, True)):
        cfg = RunConfig(name=f"run-{index}", output_dir=str(folder / "runs"))
        cfg.teacher.model, cfg.student.model = str(folder / "teacher"), str(folder / "student")
        cfg.data.train, cfg.data.max_length, cfg.data.eval_fraction = str(folder / "data.jsonl"), 256, 0.1
        t = cfg.train
        t.max_steps, t.batch_size, t.grad_accum, t.warmup_steps, t.device = 10, 8, 1, 0, "cpu"
        t.log_every, t.eval_every, t.save_every, t.report = 5, 0, 0, report
        started = time.perf_counter()
        train(cfg)
        times.append(time.perf_counter() - started)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--child", choices=("score", "naive"))
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.folder), args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, args.vocab)
        results = {}
        for mode in ("score", "naive"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--folder", str(folder), "--threads",
                                  str(args.threads)], capture_output=True, text=True, check=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
        off, on = report_overhead(folder, args.threads)
    s, n = results["score"], results["naive"]
    same = all(math.isclose(s[k], n[k], rel_tol=1e-4, abs_tol=1e-9) for k in ("perplexity", "agreement", "kl"))
    print(f"vocabulary {args.vocab:,} rows, {s['tokens']:,} scored tokens, {args.threads} thread(s)\n")
    print(f"{'scoring':<22}{'seconds':>9}{'peak MB':>10}")
    for name, r in (("score (chunked)", s), ("naive full logits", n)):
        print(f"{name:<22}{r['seconds']:>9.2f}{r['peak_mb']:>10.0f}")
    print(f"ratio naive / chunked: time {n['seconds'] / s['seconds']:.2f}x, peak memory "
          f"{n['peak_mb'] / max(s['peak_mb'], 1):.1f}x; same numbers: {same}\n")
    print(f"train() 10 steps: report off {off:.1f} s, on {on:.1f} s: the report adds {on - off:.1f} s")


if __name__ == "__main__":
    main()
