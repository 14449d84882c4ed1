"""HF folder -> one GGUF file, written tensor by tensor.

The file is produced in two steps. ``gguf.GGUFWriter`` writes the header, the key/values and the
tensor table (names, shapes, types, offsets) from a plan made from the safetensors headers alone.
Then each tensor's data is appended block by block (read rows -> convert -> write), padded to the
GGUF alignment; two threads read and convert a few blocks ahead of the writer, so peak memory is a
few blocks, not the model. Everything goes to a temporary file next to the target that is fsynced
and renamed only when complete.

Tensor types: 1-D tensors and norms stay F32; other weights get the requested type. Quantized types
fall back to F16 for rows not divisible by the block size, and (for 4/5-bit types) the output head
is kept at Q8_0, as llama.cpp's quantizer keeps it at higher precision.
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from distill_gui.errors import ExportError, ExportInputError
from distill_gui.events import PhaseProgress
from distill_gui.export.archs import (
    ArchSpec,
    HParams,
    arch_for,
    llama3_rope_factors,
    map_tensor_names,
    permute_for_pair_rope,
    read_hparams,
)
from distill_gui.export.checkpoint import Checkpoint, TensorRef
from distill_gui.export.vocab import GGUFVocab, load_vocab

GGUF_TYPE_NAMES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
_CHUNK_BYTES = 16 * 1024 * 1024      # source bytes converted per block
_WORKERS = 2                         # threads reading + converting blocks
_LOOKAHEAD = 2                       # converted blocks waiting for the writer
_ALIGNMENT = 32                      # GGUF default data alignment (general.alignment is not written)

ProgressCallback = Callable[[PhaseProgress], None]


def _gguf():
    import gguf  # imported on use: keeps `import distill_gui.export` light

    return gguf


def ggml_type(gguf_type: str):
    """The GGMLQuantizationType for a user-facing type name; ExportInputError for unknown names."""
    if gguf_type not in GGUF_TYPE_NAMES:
        raise ExportInputError(f"GGUF type {gguf_type!r} is not supported; choose one of "
                               f"{', '.join(GGUF_TYPE_NAMES)}.")
    return getattr(_gguf().GGMLQuantizationType, gguf_type.upper())


def _file_type(gguf_type: str) -> int:
    names = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16"}
    return int(getattr(_gguf().LlamaFileType, names.get(gguf_type, "MOSTLY_" + gguf_type.upper())))


@dataclass
class TensorPlan:
    """One tensor of the output file."""

    name: str                         # GGUF name
    shape: tuple[int, ...]            # numpy (row-major) order
    qtype: object                     # gguf.GGMLQuantizationType
    source: TensorRef | None = None   # None for generated tensors
    data: np.ndarray | None = None    # generated tensors (rope_freqs)
    permute_heads: int = 0            # > 0: reorder rows for GGML pair rope with this many heads

    @property
    def nbytes(self) -> int:
        block, type_size = _gguf().GGML_QUANT_SIZES[self.qtype]
        return int(np.prod(self.shape[:-1], dtype=np.int64)) * (self.shape[-1] // block) * type_size

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class ExportPlan:
    """What will be written: hyper-parameters, vocabulary and the tensor list."""

    model_dir: Path
    spec: ArchSpec
    hp: HParams
    checkpoint: Checkpoint
    gguf_type: str
    tensors: list[TensorPlan]
    vocab: GGUFVocab | None
    warnings: list[str] = field(default_factory=list)

    @property
    def tensor_bytes(self) -> int:
        return sum(_padded(t.nbytes) for t in self.tensors)


@dataclass
class GGUFExportInfo:
    """What export_gguf wrote."""

    path: Path
    gguf_type: str
    arch: str
    nbytes: int
    seconds: float
    tensor_types: dict[str, int]      # GGML type name -> number of tensors
    vocab: GGUFVocab
    warnings: list[str] = field(default_factory=list)


def _padded(n: int) -> int:
    return (n + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT


# ---- planning ------------------------------------------------------------------------------------
def plan_export(model_dir: str | Path, gguf_type: str = "f16", *, pre_tokenizer: str | None = None,
                with_vocab: bool = True) -> ExportPlan:
    """Check the folder and decide every tensor's name, shape and type, reading headers only.

    Raises:
        ExportInputError: Unsupported architecture, missing/unknown tensors, missing tokenizer, bad type.
    """
    qtype = ggml_type(gguf_type)
    model_dir = Path(model_dir)
    checkpoint = Checkpoint(model_dir)
    where = str(model_dir / "config.json")
    spec = arch_for(checkpoint.config, where)
    hp = read_hparams(checkpoint.config, where)
    mapping = map_tensor_names(list(checkpoint.tensors), spec, hp, where)
    warnings: list[str] = []
    tensors = [_plan_tensor(checkpoint.tensors[hf], gguf, spec, hp, qtype, warnings) for hf, gguf in mapping.items()]
    if hp.rope_type == "llama3":
        factors = llama3_rope_factors(hp)
        tensors.insert(1, TensorPlan("rope_freqs.weight", factors.shape, _gguf().GGMLQuantizationType.F32,
                                     data=factors))
    n_rows = checkpoint.tensors[next(hf for hf, g in mapping.items() if g == "token_embd.weight")].shape[0]
    vocab = None
    if with_vocab:
        vocab = load_vocab(model_dir, n_rows, pre_tokenizer=pre_tokenizer,
                           model_config=checkpoint.config)
        warnings += vocab.warnings
    warnings += _config_warnings(checkpoint.config, hp)
    return ExportPlan(model_dir, spec, hp, checkpoint, gguf_type, tensors, vocab, warnings)


def _plan_tensor(ref: TensorRef, name: str, spec: ArchSpec, hp: HParams, qtype, warnings: list[str]) -> TensorPlan:
    types = _gguf().GGMLQuantizationType
    if ref.dtype not in ("F32", "F16", "BF16", "F64"):
        raise ExportInputError(f"tensor {ref.name} in {ref.file} is {ref.dtype}; the exporter needs float weights "
                               f"(a quantized or integer checkpoint cannot be exported; save it in 16/32-bit).")
    plan = TensorPlan(name, ref.shape, _tensor_type(name, ref.shape, qtype, hp, warnings), source=ref)
    if spec.permute_qk and name.split(".")[-2] in ("attn_q", "attn_k"):
        plan.permute_heads = hp.n_heads if name.split(".")[-2] == "attn_q" else hp.n_kv_heads
    if plan.qtype == types.F64:
        plan.qtype = types.F32
    return plan


def _tensor_type(name: str, shape: tuple[int, ...], qtype, hp: HParams, warnings: list[str]):
    types = _gguf().GGMLQuantizationType
    if len(shape) == 1 or name.endswith("_norm.weight"):
        return types.F32
    if qtype in (types.F32, types.F16, types.BF16):
        return qtype
    is_head = name == "output.weight" or (hp.tie_embeddings and name == "token_embd.weight")
    if is_head and qtype in (types.Q4_0, types.Q4_1, types.Q5_0, types.Q5_1):
        qtype = types.Q8_0
    block = _gguf().GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        warnings.append(f"{name}: rows of {shape[-1]} are not a multiple of {block}; written as F16")
        return types.F16
    return qtype


def _config_warnings(config: dict, hp: HParams) -> list[str]:
    warnings = []
    window = config.get("sliding_window")
    if window and config.get("use_sliding_window", True) and int(window) < hp.context_length:
        warnings.append(f"sliding_window={window} is not represented in GGUF llama/qwen; outputs beyond {window} "
                        f"tokens of context may differ from transformers")
    if hp.rope_type == "dynamic":
        warnings.append("dynamic NTK rope scaling has no GGUF equivalent; written as plain rope "
                        "(identical up to the original context length)")
    return warnings


# ---- writing -------------------------------------------------------------------------------------
def export_gguf(model_dir: str | Path, out_path: str | Path, *, gguf_type: str = "f16",
                pre_tokenizer: str | None = None, on_progress: ProgressCallback | None = None,
                model_name: str | None = None) -> GGUFExportInfo:
    """Write ``out_path`` (a .gguf) from a HF folder, streaming tensor by tensor.

    Args:
        model_dir: HF folder with config.json, safetensors weights and a tokenizer.
        out_path: Target file; written to a temporary name in the same folder, renamed when complete.
        gguf_type: One of ``GGUF_TYPE_NAMES``; f16 (default) lets Ollama quantize further.
        pre_tokenizer: llama.cpp pre-tokenizer name when it cannot be detected.
        on_progress: Called with ``PhaseProgress(phase="export", done, total, unit="B")`` per block;
            an exception raised from it aborts the export (how the GUI cancels), leaving no file.
        model_name: ``general.name`` (default: the folder name).

    Raises:
        ExportInputError: The input cannot be exported (see plan_export).
        ExportError: Writing failed (disk full, permissions...); no partial file is left behind.
    """
    plan = plan_export(model_dir, gguf_type, pre_tokenizer=pre_tokenizer)
    return write_gguf(plan, out_path, on_progress=on_progress, model_name=model_name)


def write_gguf(plan: ExportPlan, out_path: str | Path, *, on_progress: ProgressCallback | None = None,
               model_name: str | None = None) -> GGUFExportInfo:
    """Write a planned export to ``out_path`` (temp file + rename); see export_gguf."""
    started = time.perf_counter()
    out_path = Path(out_path)
    tmp = _temp_path(out_path)
    try:
        _write_metadata(plan, tmp, model_name or plan.model_dir.name)
        with open(tmp, "r+b") as fh:
            fh.seek(0, os.SEEK_END)
            _write_tensor_data(plan, fh, on_progress)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except OSError as exc:
        raise ExportError(f"writing {out_path} failed: {exc.strerror or exc}. Check free disk space and "
                          f"permissions of {out_path.parent}; nothing was left behind.") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    counts = Counter(t.qtype.name for t in plan.tensors)
    return GGUFExportInfo(out_path, plan.gguf_type, plan.spec.gguf_arch, out_path.stat().st_size,
                          time.perf_counter() - started, dict(counts), plan.vocab, plan.warnings)


def estimate_gguf_size(model_dir: str | Path, gguf_type: str) -> int:
    """Bytes the GGUF of ``model_dir`` will take (exact tensor data + approximate metadata)."""
    plan = plan_export(model_dir, gguf_type, with_vocab=False)
    tokenizer_bytes = sum(p.stat().st_size for p in Path(model_dir).glob("tokenizer*") if p.is_file())
    header = 4096 + sum(len(t.name) + 48 for t in plan.tensors)
    return plan.tensor_bytes + header + tokenizer_bytes // 2


def _temp_path(out_path: Path) -> Path:
    if not out_path.parent.is_dir():
        raise ExportInputError(f"output folder {out_path.parent} does not exist.")
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        open(tmp, "xb").close()   # not mkstemp: the finished file should get the usual (umask) permissions
    except OSError as exc:
        raise ExportInputError(f"cannot write into {out_path.parent}: {exc.strerror or exc}. Choose a folder you "
                               f"can write to.") from exc
    return tmp


def _fast_writer_class():
    """GGUFWriter whose long metadata arrays (tokens, merges, types, scores) are packed in bulk.

    The stock writer packs arrays one element at a time (~10 us each), seconds for a 150k-token
    vocabulary with its merges. The bytes are the same: GGUF arrays are the element type, the count,
    then the elements (strings as u64 length + UTF-8), little-endian.
    """
    gguf = _gguf()
    value_type = gguf.GGUFValueType
    numeric = {value_type.INT32: "<i4", value_type.UINT32: "<u4", value_type.FLOAT32: "<f4"}

    class FastArrayWriter(gguf.GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if (vtype != value_type.ARRAY or self.endianess != gguf.GGUFEndian.LITTLE
                    or not isinstance(val, (list, tuple)) or len(val) < 64):
                return super()._pack_val(val, vtype, add_vtype, sub_type=sub_type)
            item_type = sub_type if sub_type is not None else value_type.get_type(val[0])
            if item_type == value_type.STRING and all(isinstance(v, str) for v in val):
                encoded = [v.encode("utf-8") for v in val]
                body = b"".join(struct.pack("<Q", len(e)) + e for e in encoded)
            elif item_type in numeric and all(type(v) is type(val[0]) for v in val):
                body = np.asarray(val, dtype=numeric[item_type]).tobytes()
            else:
                return super()._pack_val(val, vtype, add_vtype, sub_type=sub_type)
            head = struct.pack("<I", int(vtype)) if add_vtype else b""
            return head + struct.pack("<IQ", int(item_type), len(val)) + body

    return FastArrayWriter


def _write_metadata(plan: ExportPlan, path: Path, model_name: str) -> None:
    """Header, key/values and tensor table through gguf.GGUFWriter (data follows separately)."""
    writer = _fast_writer_class()(str(path), plan.spec.gguf_arch)
    try:
        _add_general(writer, plan, model_name)
        _add_hparams(writer, plan)
        plan.vocab.write(writer)
        for t in plan.tensors:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
    finally:
        writer.close()


def _add_general(writer, plan: ExportPlan, model_name: str) -> None:
    gguf = _gguf()
    writer.add_type("model")
    writer.add_name(model_name)
    writer.add_file_type(_file_type(plan.gguf_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # Ollama shows this as the parameter size; tied embeddings count once.
    n_params = sum(t.n_elements for t in plan.tensors if t.source is not None)
    writer.add_uint64("general.parameter_count", int(n_params))


def _add_hparams(writer, plan: ExportPlan) -> None:
    gguf, hp = _gguf(), plan.hp
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.hidden)
    writer.add_block_count(hp.n_layers)
    writer.add_feed_forward_length(hp.intermediate)
    writer.add_head_count(hp.n_heads)
    writer.add_head_count_kv(hp.n_kv_heads)
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)
    writer.add_rope_dimension_count(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_vocab_size(len(plan.vocab.tokens))
    if hp.rope_type in ("linear", "yarn"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR if hp.rope_type == "linear"
                                     else gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(hp.rope.get("factor", 1.0)))
        if hp.rope_type == "yarn" and hp.rope.get("original_max_position_embeddings"):
            writer.add_rope_scaling_orig_ctx_len(int(hp.rope["original_max_position_embeddings"]))


def _write_tensor_data(plan: ExportPlan, fh, on_progress: ProgressCallback | None) -> None:
    """Append every tensor's data, padded to the alignment, in table order.

    Blocks are read and converted by a small thread pool (numpy and file reads release the GIL) a few
    blocks ahead of the writer, which keeps the file order; at most ``_WORKERS + _LOOKAHEAD`` blocks
    are in memory at once.
    """
    fh.write(b"\0" * (_padded(fh.tell()) - fh.tell()))
    total, done = plan.tensor_bytes, 0
    pending: deque[tuple[TensorPlan, Future, bool]] = deque()
    written: dict[str, int] = {}

    def write_next() -> None:
        nonlocal done
        tensor, future, last = pending.popleft()
        block = future.result()
        fh.write(memoryview(np.ascontiguousarray(block)).cast("B"))
        written[tensor.name] += block.nbytes
        done += block.nbytes
        if last:
            if written[tensor.name] != tensor.nbytes:  # a bug, never a user error: refuse to write a bad file
                raise ExportError(f"internal error: {tensor.name} produced {written[tensor.name]} bytes, "
                                  f"expected {tensor.nbytes}")
            padding = _padded(tensor.nbytes) - tensor.nbytes
            fh.write(b"\0" * padding)
            done += padding
        if on_progress is not None:
            on_progress(PhaseProgress("export", done, total, "B", tensor.name))

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        try:
            for tensor in plan.tensors:
                written[tensor.name] = 0
                jobs = _block_jobs(plan.checkpoint, tensor)
                for i, job in enumerate(jobs):
                    pending.append((tensor, pool.submit(job), i == len(jobs) - 1))
                    while len(pending) > _WORKERS + _LOOKAHEAD:
                        write_next()
            while pending:
                write_next()
        finally:
            for _, future, _ in pending:
                future.cancel()


def _block_jobs(checkpoint: Checkpoint, tensor: TensorPlan) -> list[Callable[[], np.ndarray]]:
    """Zero-argument jobs that each return the next block of the tensor's output bytes."""
    if tensor.data is not None:
        return [lambda: _convert(tensor.data, tensor.qtype)]
    ref = tensor.source
    if tensor.permute_heads:  # q/k projections: reorder whole heads at once (they are small)
        return [lambda: _convert(permute_for_pair_rope(checkpoint.read_f32(ref), tensor.permute_heads),
                                 tensor.qtype)]
    n_rows = ref.shape[0]
    rows_per_block = max(1, _CHUNK_BYTES // max(1, ref.nbytes // max(1, n_rows)))
    same_encoding = _stored_as(ref.dtype) == tensor.qtype.name

    def job(start: int, stop: int) -> Callable[[], np.ndarray]:
        if same_encoding:  # copy the bytes
            return lambda: checkpoint.read_rows(ref, start, stop)
        return lambda: _convert(checkpoint.read_f32(ref, start, stop), tensor.qtype)

    return [job(start, min(n_rows, start + rows_per_block)) for start in range(0, n_rows, rows_per_block)]


def _stored_as(dtype: str) -> str:
    return {"F32": "F32", "F16": "F16", "BF16": "BF16"}.get(dtype, "")


def _convert(values: np.ndarray, qtype) -> np.ndarray:
    types = _gguf().GGMLQuantizationType
    if qtype == types.F32:
        return values.astype(np.float32, copy=False)
    if qtype == types.F16:
        return values.astype(np.float16)
    return _gguf().quants.quantize(np.ascontiguousarray(values, dtype=np.float32), qtype)
