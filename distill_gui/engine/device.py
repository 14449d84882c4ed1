"""Device, precision and memory: which accelerator to use, in which dtype, and how much memory there is.

Rules:

- ``train.device = "auto"`` picks CUDA, then Apple MPS, then the CPU.
- ``train.precision = "auto"``: bf16 autocast on CUDA GPUs that support it, else fp16 autocast with a
  gradient scaler on CUDA; fp32 on MPS and the CPU.
- Model dtype ``"auto"``: the teacher (inference only) in bf16 / fp16 on GPUs, fp32 on the CPU; the
  student's trainable weights stay fp32 (master weights) and autocast does the low-precision math.
- bitsandbytes (8-bit / 4-bit teacher, 8-bit AdamW) needs CUDA and the package; elsewhere a clear error.

Everything here imports torch lazily so that ``engine.planner`` can be imported cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from distill_gui.errors import ConfigError
from distill_gui.formatting import human_bytes

PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class DeviceChoice:
    """The resolved device and precision of a run.

    Attributes:
        device: A torch device string: ``"cpu"``, ``"cuda:0"``, ``"mps"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast dtype; fp32 = no autocast).
        teacher_dtype: dtype name the teacher is loaded in.
        student_dtype: dtype name of the student's weights.
    """

    device: str
    precision: str
    teacher_dtype: str
    student_dtype: str

    @property
    def kind(self) -> str:
        """``"cuda"``, ``"mps"`` or ``"cpu"``."""
        return self.device.split(":")[0]

    @property
    def autocast_dtype(self):
        """The torch dtype for autocast, or None for plain fp32."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)


def resolve_device(requested: str = "auto") -> str:
    """Turn ``train.device`` into a torch device string, checking that it exists.

    Raises:
        ConfigError: a CUDA or MPS device was asked for but PyTorch cannot see it.
    """
    import torch

    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if _mps_available():
            return "mps"
        return "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ConfigError(f"[train] device = '{requested}', but PyTorch sees no CUDA GPU (torch "
                              f"{torch.__version__}, {build}). Use device = 'auto' or 'cpu', or install the "
                              f"CUDA build of PyTorch.")
        index = requested.partition(":")[2] or "0"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"[train] device = '{requested}': there are {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0.")
        return f"cuda:{int(index)}"
    if requested == "mps":
        if not _mps_available():
            raise ConfigError("[train] device = 'mps', but Apple's Metal backend is not available here. "
                              "Use device = 'auto' or 'cpu'.")
        return "mps"
    raise ConfigError(f"[train] device = '{requested}' is not a device; use auto, cpu, cuda, cuda:N or mps.")


def choose(device: str, precision: str = "auto", teacher_dtype: str = "auto",
           student_dtype: str = "auto") -> DeviceChoice:
    """Resolve precision and model dtypes for a device (see the module docstring for the rules).

    Raises:
        ConfigError: fp16 or bf16 asked for where it cannot work (fp16 on the CPU).
    """
    kind = device.split(":")[0]
    bf16_ok = kind == "cuda" and _cuda_bf16_supported()
    if precision == "auto":
        precision = ("bf16" if bf16_ok else "fp16") if kind == "cuda" else "fp32"
    if precision == "fp16" and kind == "cpu":
        raise ConfigError("[train] precision = 'fp16' needs a GPU; on the CPU use 'fp32' (or 'bf16').")
    if precision == "bf16" and kind == "cuda" and not bf16_ok:
        raise ConfigError("[train] precision = 'bf16', but this GPU does not support bfloat16; use 'fp16'.")
    if teacher_dtype == "auto":
        teacher_dtype = {"cuda": "bfloat16" if bf16_ok else "float16", "mps": "float16"}.get(kind, "float32")
    if student_dtype == "auto":
        student_dtype = "float32"  # trainable master weights; autocast does the low-precision math
    return DeviceChoice(device=device, precision=precision, teacher_dtype=teacher_dtype,
                        student_dtype=student_dtype)


def torch_dtype(name: str):
    """``"bfloat16"`` -> ``torch.bfloat16``."""
    import torch

    return getattr(torch, name)


def require_bitsandbytes(what: str, device: str) -> None:
    """Check that bitsandbytes can be used for ``what`` on ``device``.

    Raises:
        ConfigError: not on CUDA, or the package is missing.
    """
    if not device.startswith("cuda"):
        raise ConfigError(f"{what} needs an NVIDIA GPU with bitsandbytes; this run uses '{device}'. "
                          f"Use the full-precision setting on this machine.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what} needs the bitsandbytes package: pip install 'distill-gui[cuda]' "
                          f"(or pip install bitsandbytes).") from None


def memory_in_use(device: str) -> int:
    """Bytes in use: allocated accelerator memory on CUDA/MPS, the process's resident set on the CPU."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.memory_allocated(torch.device(device)))
    if device == "mps":
        return int(torch.mps.current_allocated_memory())
    return process_rss()


def available_memory(device: str) -> tuple[int, int]:
    """(free, total) bytes of the device's memory; for the CPU, available and total RAM."""
    import torch

    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), int(total)
    if device == "mps":
        total = int(torch.mps.recommended_max_memory())
        return total - int(torch.mps.driver_allocated_memory()), total
    return system_ram()


def release_cached_memory(device: str) -> None:
    """Return cached allocator blocks to the driver (used while paused)."""
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()


def device_description(device: str) -> str:
    """A short human name: ``"cuda:0 (NVIDIA H100, 79.2 GiB)"``, ``"cpu (2 threads)"``."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{device} ({props.name}, {human_bytes(props.total_memory)})"
    if device == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device


def process_rss() -> int:
    """Resident set size of this process in bytes (0 when it cannot be read)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:  # Linux without psutil
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def system_ram() -> tuple[int, int]:
    """(available, total) RAM in bytes; (0, 0) when unknown."""
    try:
        import psutil

        mem = psutil.virtual_memory()
        return int(mem.available), int(mem.total)
    except ImportError:
        pass
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return info.get("MemAvailable", info.get("MemFree", 0)), info.get("MemTotal", 0)
    except (OSError, ValueError, IndexError):
        return 0, 0


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _cuda_bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except (RuntimeError, AssertionError):
        return False
