"""GGUF export speed and peak memory, side by side in one run.

Builds a Llama-shaped HF folder of a few hundred MB (float32 safetensors written with numpy, random
weights; a small trained tokenizer, the token list padded to the embedding rows), then runs each
case in a fresh subprocess and reports wall time, throughput and the child's peak RSS:

- ``copy``: ``shutil.copyfile`` of the safetensors file: the disk/page-cache floor for any exporter;
- ``ours f16`` / ``ours q8_0``: ``export_gguf`` (16 MB row blocks read and converted by two threads
  a few blocks ahead of the writer);
- ``in-memory f16``: the obvious approach for contrast: every tensor converted and handed to
  ``GGUFWriter.add_tensor``, then ``write_tensors_to_file`` (the whole converted model in RAM).

MB/s counts source (safetensors) megabytes per second; each case runs ``--repeats`` times and the
median is shown. Ours includes the fsync before the final rename (the in-memory contrast has none).
Targets: ours f16 >= 200 MB/s, peak RSS <= 1.5 x model size. The source file is read from the page
cache (it was just written).

Run: ``python benchmarks/export.py [--params-m 150] [--repeats 3] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(folder: Path, params_m: int) -> int:
    """A Llama-style folder with about ``params_m`` million float32 parameters; returns its weight bytes."""
    import numpy as np
    from safetensors.numpy import save_file

    from distill_gui.workflows.tiny import sample_text, save_tokenizer, train_bpe_tokenizer

    hidden, inter, heads, kv_heads, vocab = 1024, 2816, 16, 4, 32000
    per_layer = 2 * hidden * hidden + 2 * hidden * (hidden * kv_heads // heads) + 3 * hidden * inter + 2 * hidden
    layers = max(1, int((params_m * 1e6 - 2 * vocab * hidden) // per_layer))
    rng = np.random.default_rng(0)
    kv = hidden * kv_heads // heads
    tensors = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden),
               "model.norm.weight": (hidden,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors.update({p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
                        p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
                        p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
                        p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                        p + "mlp.down_proj.weight": (hidden, inter)})
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {name: (rng.standard_normal(shape, dtype=np.float32) * 0.02) for name, shape in tensors.items()}
    save_file(arrays, str(folder / "model.safetensors"))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
              "bos_token_id": 0, "eos_token_id": 4}
    (folder / "config.json").write_text(json.dumps(config))
    save_tokenizer(train_bpe_tokenizer(sample_text(1500), vocab_size=2000, style="llama"), folder)
    return (folder / "model.safetensors").stat().st_size


CASES = {
    "copy": "import shutil,sys; shutil.copyfile(sys.argv[1] + '/model.safetensors', sys.argv[2])",
    "ours f16": "import sys; from distill_gui.export import export_gguf; export_gguf(sys.argv[1], sys.argv[2], "
                "gguf_type='f16')",
    "ours q8_0": "import sys; from distill_gui.export import export_gguf; export_gguf(sys.argv[1], sys.argv[2], "
                 "gguf_type='q8_0')",
    "in-memory f16": """
import sys, numpy as np, gguf
from distill_gui.export.gguf_file import plan_export, _write_metadata, _add_general, _add_hparams, _block_jobs
plan = plan_export(sys.argv[1], 'f16')
writer = gguf.GGUFWriter(sys.argv[2], plan.spec.gguf_arch)
_add_general(writer, plan, 'bench'); _add_hparams(writer, plan); plan.vocab.write(writer)
for tensor in plan.tensors:
    data = np.concatenate([job().reshape(-1) for job in _block_jobs(plan.checkpoint, tensor)])
    writer.add_tensor(tensor.name, data.reshape(tensor.shape), raw_dtype=tensor.qtype)
writer.write_header_to_file(); writer.write_kv_data_to_file(); writer.write_tensors_to_file(); writer.close()
""",
}


def run_case(code: str, model: Path, out: Path) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of the case in a fresh interpreter, imports excluded.

    Peak RSS is the child's own VmHWM (ru_maxrss would carry over the parent's peak across fork/exec).
    """
    script = ("import time, sys\nimport numpy, gguf\n"
              "sys.path.insert(0, %r)\nimport distill_gui.export\nt0 = time.perf_counter()\n%s\n"
              "seconds = time.perf_counter() - t0\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print(seconds, hwm)\n" % (str(ROOT), code))
    proc = subprocess.run([sys.executable, "-c", script, str(model), str(out)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"case failed:\n{proc.stderr}")
    seconds, peak_kib = proc.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(peak_kib) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-m", type=int, default=150, help="model size in millions of parameters")
    parser.add_argument("--keep", type=Path, default=None, help="build the model here and keep it")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (the median is shown)")
    parser.add_argument("--build-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build_model(args.build_only, args.params_m)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="export-bench-"))
    model = work / "model"
    t0 = time.perf_counter()
    if not (model / "model.safetensors").exists():   # built in a child: this process stays small
        subprocess.run([sys.executable, __file__, "--build-only", str(model), "--params-m", str(args.params_m)],
                       check=True)
    size = (model / "model.safetensors").stat().st_size
    print(f"model: {size / 1e6:.0f} MB float32 safetensors ({time.perf_counter() - t0:.1f} s to build), "
          f"{os.cpu_count()} CPUs")
    print(f"{'case':<16}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}{'RSS / model':>13}{'out MB':>9}"
          f"   (median of {args.repeats}; peak RSS = max)")
    rows = {}
    for name, code in CASES.items():
        out = work / f"{name.replace(' ', '_')}.out"
        runs = sorted(run_case(code, model, out) for _ in range(args.repeats))
        seconds, peak = runs[len(runs) // 2][0], max(r[1] for r in runs)
        rows[name] = (seconds, peak)
        print(f"{name:<16}{seconds:>9.2f}{size / 1e6 / seconds:>9.0f}{peak / 1e6:>13.0f}{peak / size:>13.2f}"
              f"{out.stat().st_size / 1e6:>9.0f}")
        out.unlink()
    f16 = rows["ours f16"][0]
    print(f"ours f16 vs copy: {rows['copy'][0] / f16:.2f}x the copy speed; "
          f"vs in-memory: {rows['in-memory f16'][0] / f16:.2f}x faster")
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
