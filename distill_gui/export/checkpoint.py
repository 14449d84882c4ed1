"""Read a Hugging Face model folder without torch: ``config.json`` and safetensors tensors.

Tensors are located from the safetensors headers (a JSON table of name, dtype, shape and byte
range per file) and read on demand, a block of rows at a time, straight from the file. Nothing is
memory-mapped or cached, so exporting a model never holds more than one block of it in RAM.

Folders saved as ``pytorch_model*.bin`` (older transformers) are read through torch, imported
only for them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill_gui.errors import ExportInputError

# safetensors dtype -> numpy dtype of the stored bytes. BF16 has no numpy type: read as uint16.
_STORED_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives: file, stored dtype, numpy shape and absolute byte range."""

    name: str
    file: Path
    dtype: str                 # safetensors dtype name: "F32", "F16", "BF16", ...
    shape: tuple[int, ...]
    offset: int                # absolute offset of the first byte in ``file``
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 values stored as uint16 to float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class Checkpoint:
    """A HF causal-LM folder: its config and a table of its tensors.

    Args:
        model_dir: Folder with ``config.json`` and ``*.safetensors`` (or ``pytorch_model*.bin``).

    Raises:
        ExportInputError: The folder, its config or its weights are missing or unreadable.
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ExportInputError(f"model folder {self.model_dir} does not exist. Pass a Hugging Face model "
                                   f"folder, e.g. a run's final/ folder.")
        self.config = read_json(self.model_dir / "config.json", what="model config")
        self._torch_state: dict[str, Any] | None = None
        self.tensors = self._index_tensors()

    # ---- index -------------------------------------------------------------------------------
    def _index_tensors(self) -> dict[str, TensorRef]:
        files = sorted(self.model_dir.glob("*.safetensors"))
        if files:
            table: dict[str, TensorRef] = {}
            for file in files:
                table.update(_safetensors_table(file))
            return table
        bins = sorted(self.model_dir.glob("pytorch_model*.bin"))
        if bins:
            return self._index_torch_bins(bins)
        raise ExportInputError(f"no weights in {self.model_dir}: expected model.safetensors (or "
                               f"model-0000N-of-0000M.safetensors). Save the model with save_pretrained().")

    def _index_torch_bins(self, bins: list[Path]) -> dict[str, TensorRef]:
        import torch  # only for old .bin checkpoints

        state: dict[str, Any] = {}
        for file in bins:
            state.update(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
        self._torch_state = state
        names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
        return {name: TensorRef(name, bins[0], names.get(t.dtype, "F32"), tuple(t.shape), 0,
                                t.numel() * t.element_size())
                for name, t in state.items()}

    # ---- reading -----------------------------------------------------------------------------
    def read_rows(self, ref: TensorRef, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a tensor as stored (BF16 as uint16 bits), shape (stop-start, *shape[1:])."""
        if self._torch_state is not None:
            return self._torch_rows(ref, start, stop)
        dtype = _STORED_DTYPES[ref.dtype]
        if not ref.shape:
            return np.fromfile(ref.file, dtype=dtype, count=1, offset=ref.offset)
        row_elems = ref.n_elements // ref.shape[0] if ref.shape[0] else 0
        count = (stop - start) * row_elems
        offset = ref.offset + start * row_elems * np.dtype(dtype).itemsize
        data = np.fromfile(ref.file, dtype=dtype, count=count, offset=offset)
        if data.size != count:
            raise ExportInputError(f"{ref.file} is truncated: tensor {ref.name} needs {ref.nbytes} bytes. "
                                   f"Save the model again.")
        return data.reshape((stop - start, *ref.shape[1:]))

    def read_f32(self, ref: TensorRef, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of a float tensor as float32."""
        stop = (ref.shape[0] if ref.shape else 1) if stop is None else stop
        rows = self.read_rows(ref, start, stop)
        if ref.dtype == "BF16":
            return bf16_bits_to_f32(rows)
        if ref.dtype not in _FLOAT_DTYPES:
            raise ExportInputError(f"tensor {ref.name} in {ref.file} has dtype {ref.dtype}; expected a float tensor.")
        return rows.astype(np.float32, copy=False)

    def _torch_rows(self, ref: TensorRef, start: int, stop: int) -> np.ndarray:
        import torch

        tensor = self._torch_state[ref.name][start:stop] if ref.shape else self._torch_state[ref.name]
        if tensor.dtype == torch.bfloat16:
            return tensor.contiguous().view(torch.int16).numpy().view(np.uint16)
        return tensor.contiguous().numpy()


def _safetensors_table(file: Path) -> dict[str, TensorRef]:
    """Parse one safetensors header into ``{name: TensorRef}``."""
    try:
        with open(file, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                raise ValueError("file shorter than its header")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > 100_000_000:
                raise ValueError("implausible header size")
            header = json.loads(fh.read(header_len))
    except (OSError, ValueError) as exc:
        raise ExportInputError(f"cannot read safetensors file {file}: {exc}. Save the model again.") from exc
    base = 8 + header_len
    table = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        if dtype not in _STORED_DTYPES:
            raise ExportInputError(f"tensor {name} in {file} has dtype {dtype}, which the exporter cannot read "
                                   f"(supported: {', '.join(_STORED_DTYPES)}).")
        begin, end = info["data_offsets"]
        table[name] = TensorRef(name, file, dtype, tuple(int(d) for d in info["shape"]), base + begin, end - begin)
    return table


def read_json(path: Path, *, what: str, required: bool = True) -> dict[str, Any]:
    """Read a JSON file; a missing optional file gives ``{}``; a broken one is a clear error."""
    if not path.is_file():
        if required:
            raise ExportInputError(f"{what} {path} is missing. Is {path.parent} a Hugging Face model folder?")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportInputError(f"{what} {path} cannot be read: {exc}.") from exc
