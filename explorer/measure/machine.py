"""The machine's ceilings: the compute rate and the memory bandwidth a device reaches, measured once and cached.

A roofline needs two numbers per device and element type: the peak rate of
arithmetic (FLOP/s) and of memory traffic (bytes/s). Both are *measured* here,
because what a datasheet promises is not what this build of torch reaches on
this machine (two shared cores, a clock that varies, TF32 on a GPU):

* compute: the fastest of repeated large matrix products and large 3×3
  convolutions (channels_last) at the dtype on the device, whichever is faster;
  each grows until one run takes long enough to time;
* bandwidth: the fastest of repeated copies of a buffer far larger than the
  caches, counting the bytes read and the bytes written (as STREAM's copy does).

The result is cached as JSON per (device name, dtype) in the user's cache folder
(``$EXPLORER_CACHE_DIR``, else ``$XDG_CACHE_HOME/xception-explorer``, else
``~/.cache/xception-explorer``); ``remeasure=True`` measures again. Known
datasheet numbers (a few NVIDIA GPUs) are kept beside the measured ones, never
instead of them.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import torch

from explorer.devices import DTYPE_ALIASES, DTYPE_NAMES
from explorer.errors import UsageError
from explorer.infer.device import DeviceError, resolve_device

ProgressFn = Callable[[float], None]

# The element types a network can be profiled in (their names and short names: explorer.devices).
DTYPES: Mapping[str, torch.dtype] = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))

CACHE_ENV = "EXPLORER_CACHE_DIR"
CACHE_FILE = "ceilings.json"
# Seconds of repeated timing per ceiling (compute: matmul and conv; bandwidth: copy), after sizing.
BUDGET_S = 0.5
# A single run must take at least this long before its size is kept (CPU; a GPU runs several per timing).
MIN_RUN_S = 0.04


@dataclass(frozen=True)
class Ceilings:
    """The peak compute rate and memory bandwidth measured on one device at one dtype.

    ``peak_flops`` (FLOP/s) and ``bandwidth`` (bytes/s) are measured; the
    ``datasheet_*`` numbers, where known, are the vendor's, shown beside them.
    """

    device: str                 # "cpu", "cuda:0"
    device_name: str            # "AMD EPYC (2 threads, torch 2.14.1)", "NVIDIA H200"
    dtype: str                  # "float32" | "bfloat16" | "float16"
    peak_flops: float           # FLOP/s
    bandwidth: float            # bytes/s (read + write)
    measured_at: str            # ISO 8601, UTC
    datasheet_flops: float | None = None
    datasheet_bandwidth: float | None = None
    datasheet_source: str = ""

    @property
    def ridge(self) -> float:
        """FLOP per byte where the roofs meet: below it a layer is memory-bound, above it compute-bound."""
        return self.peak_flops / self.bandwidth if self.bandwidth else math.inf

    def bound(self, intensity: float) -> str:
        """What limits work of ``intensity`` FLOP/byte here: ``"memory"`` below the ridge, else ``"compute"``."""
        return "memory" if intensity < self.ridge else "compute"

    def to_dict(self) -> dict:
        """Plain data for JSON (with the ridge, which :meth:`from_dict` ignores)."""
        return {**asdict(self), "ridge": self.ridge}

    @classmethod
    def from_dict(cls, data: Mapping) -> Ceilings:
        """The ceilings :meth:`to_dict` wrote (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# ---------------------------------------------------------------- names


def dtype_name(dtype: str) -> str:
    """``dtype`` as the cost model names it (``float32``, ``bfloat16``, ``float16``; ``fp32``... accepted),
    else a one-line :class:`UsageError`."""
    name = DTYPE_ALIASES.get(str(dtype).strip().lower(), str(dtype).strip().lower())
    if name not in DTYPES:
        raise UsageError("dtype", f"unknown dtype '{dtype}' (choose from {', '.join(DTYPES)})")
    return name


def check_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype of ``dtype`` once ``device`` is known to run convolutions in it, else a
    :class:`DeviceError` (e.g. bfloat16 on a GPU without it)."""
    name = dtype_name(dtype)
    torch_dtype = DTYPES[name]
    if device.type == "cuda" and torch_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"{device_label(device)} cannot run bfloat16: use float16 or float32")
    try:
        x = torch.ones(1, 2, 4, 4, device=device, dtype=torch_dtype)
        torch.nn.functional.conv2d(x, torch.ones(2, 1, 3, 3, device=device, dtype=torch_dtype), groups=2)
    except (RuntimeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DeviceError(f"{device_label(device)} cannot run {name} convolutions ({first})") from None
    return torch_dtype


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"


def device_label(device: torch.device) -> str:
    """The device's name for people and for the cache: the GPU's name, or the CPU's model with the
    threads torch uses and torch's version (a ceiling holds for those)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    version = torch.__version__.split("+")[0]
    return f"{_cpu_model()} ({torch.get_num_threads()} threads, torch {version})"


def device_id(device: torch.device) -> str:
    """``cpu`` or ``cuda:0`` (the index made explicit)."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


# ---------------------------------------------------------------- datasheets

# (substrings of the device name that must all appear, lower case), FP32, BF16, FP16 (dense tensor-core
# FLOP/s; None where the GPU has no such mode), memory bandwidth (bytes/s), source. The FP32 figure is the
# plain FP32 one: torch's convolutions on these GPUs use TF32 by default, so a measured fp32 peak may exceed it.
_DATASHEETS: tuple[tuple[tuple[str, ...], float, float | None, float | None, float, str], ...] = (
    (("h200", "nvl"), 60e12, 835e12, 835e12, 4.8e12,
     "NVIDIA H200 datasheet (NVL): FP32 60 TFLOPS, BF16/FP16 835 TFLOPS dense (1,671 with sparsity), 4.8 TB/s"),
    (("h200",), 67e12, 989e12, 989e12, 4.8e12,
     "NVIDIA H200 datasheet (SXM): FP32 67 TFLOPS, BF16/FP16 989 TFLOPS dense (1,979 with sparsity), 4.8 TB/s"),
    (("h100", "pcie"), 51e12, 756e12, 756e12, 2.0e12,
     "NVIDIA H100 datasheet (PCIe): FP32 51 TFLOPS, BF16/FP16 756 TFLOPS dense, 2.0 TB/s"),
    (("h100", "nvl"), 60e12, 835e12, 835e12, 3.9e12,
     "NVIDIA H100 datasheet (NVL): FP32 60 TFLOPS, BF16/FP16 835 TFLOPS dense (1,671 with sparsity), 3.9 TB/s"),
    (("h100",), 67e12, 989e12, 989e12, 3.35e12,
     "NVIDIA H100 datasheet (SXM): FP32 67 TFLOPS, BF16/FP16 989 TFLOPS dense (1,979 with sparsity), 3.35 TB/s"),
    (("a100", "80gb", "pcie"), 19.5e12, 312e12, 312e12, 1.935e12,
     "NVIDIA A100 datasheet (80GB PCIe): FP32 19.5 TFLOPS, BF16/FP16 312 TFLOPS dense, 1,935 GB/s"),
    (("a100", "80gb"), 19.5e12, 312e12, 312e12, 2.039e12,
     "NVIDIA A100 datasheet (80GB SXM): FP32 19.5 TFLOPS, BF16/FP16 312 TFLOPS dense, 2,039 GB/s"),
    (("a100",), 19.5e12, 312e12, 312e12, 1.555e12,
     "NVIDIA A100 datasheet (40GB): FP32 19.5 TFLOPS, BF16/FP16 312 TFLOPS dense, 1,555 GB/s"),
    (("l4",), 30.3e12, 121e12, 121e12, 300e9,
     "NVIDIA L4 datasheet: FP32 30.3 TFLOPS, BF16/FP16 121 TFLOPS dense (242 with sparsity), 300 GB/s"),
    (("t4",), 8.1e12, None, 65e12, 320e9,
     "NVIDIA T4 datasheet: FP32 8.1 TFLOPS, FP16 65 TFLOPS (mixed precision), 320 GB/s; no BF16"),
)


def datasheet(device_name: str, dtype: str) -> tuple[float | None, float | None, str]:
    """The vendor's (FLOP/s, bytes/s, source) for a device name at ``dtype``; (None, None, "") when unknown."""
    words = device_name.lower().replace("-", " ").split()
    for keys, fp32, bf16, fp16, bandwidth, source in _DATASHEETS:
        if all(k in words for k in keys):
            flops = {"float32": fp32, "bfloat16": bf16, "float16": fp16}[dtype_name(dtype)]
            return flops, bandwidth, source
    return None, None, ""


# ---------------------------------------------------------------- measuring


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def _seconds(run: Callable[[], object], sync: Callable[[], None], inner: int) -> float:
    """Seconds per run, ``inner`` runs between two synchronizations."""
    sync()
    start = time.perf_counter()
    for _ in range(inner):
        run()
    sync()
    return (time.perf_counter() - start) / inner


def _rate(make: Callable[[int], tuple[Callable[[], object], float]], sizes: list[int], device: torch.device,
          budget: float) -> float:
    """Work per second of the fastest run: the first size whose run is long enough to time (or the
    last), then timed again until ``budget`` seconds are spent (at least three times)."""
    sync = _synchronizer(device)
    inner = 1 if device.type == "cpu" else 10
    for size in sizes:
        run, work = make(size)
        run()  # warm-up: kernels chosen, pages touched
        if _seconds(run, sync, inner) * inner >= MIN_RUN_S:
            break
    best, spent, count = math.inf, 0.0, 0
    while count < 3 or spent < budget:
        seconds = _seconds(run, sync, inner)
        best, spent, count = min(best, seconds), spent + seconds * inner, count + 1
        if count >= 50:
            break
    return work / best


def free_bytes(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (CUDA: the driver's count; CPU: the memory the OS has available), or
    None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _scratch(device: torch.device) -> int:
    """Bytes the scratch buffers of a measurement may take: a quarter of what is free (of 4 GiB where that is unknown)."""
    return (free_bytes(device) or 4 * 2**30) // 4


def _matmul(device: torch.device, dtype: torch.dtype, budget: float) -> float:
    nbytes = torch.empty((), dtype=dtype).element_size()
    top = 16384 if device.type == "cuda" else 4096
    sizes = [n for n in (256, 512, 1024, 2048, 4096, 8192, 16384)
             if n <= top and 3 * n * n * nbytes <= _scratch(device)] or [256]

    def make(n: int) -> tuple[Callable[[], object], float]:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        return (lambda: torch.mm(a, b, out=out)), 2.0 * n ** 3

    return _rate(make, sizes, device, budget)


def _conv(device: torch.device, dtype: torch.dtype, budget: float) -> float:
    channels, side = 256, 28
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, dtype)
    conv = conv.to(memory_format=torch.channels_last).eval()
    top = 1024 if device.type == "cuda" else 64
    nbytes = torch.empty((), dtype=dtype).element_size()
    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
             if b <= top and 2 * b * channels * side * side * nbytes <= _scratch(device)] or [1]

    def make(batch: int) -> tuple[Callable[[], object], float]:
        x = torch.randn(batch, channels, side, side, device=device).to(dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        return (lambda: conv(x)), 2.0 * batch * channels * channels * 9 * side * side

    with torch.no_grad():
        return _rate(make, sizes, device, budget)


def _copy(device: torch.device, dtype: torch.dtype, budget: float) -> float:
    nbytes = torch.empty((), dtype=dtype).element_size()
    largest = 2 * 2**30 if device.type == "cuda" else 256 * 2**20  # far beyond the L2 / L3
    size = max(16 * 2**20, min(largest, _scratch(device)))

    def make(total: int) -> tuple[Callable[[], object], float]:
        src = torch.ones(total // nbytes, device=device, dtype=dtype)
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), 2.0 * src.numel() * nbytes

    return _rate(make, [size], device, budget)


def measure(device: torch.device, dtype: str, progress: ProgressFn | None = None) -> Ceilings:
    """Measure the ceilings of ``device`` at ``dtype`` now (about 3 s on a 2-core CPU); no cache."""
    torch_dtype = check_dtype(dtype, device)
    name = dtype_name(dtype)
    report = progress or (lambda fraction: None)
    report(0.0)
    matmul = _matmul(device, torch_dtype, BUDGET_S)
    report(0.35)
    conv = _conv(device, torch_dtype, BUDGET_S)
    report(0.7)
    bandwidth = _copy(device, torch_dtype, BUDGET_S)
    report(1.0)
    label = device_label(device)
    sheet_flops, sheet_bandwidth, source = datasheet(label, name)
    return Ceilings(device=device_id(device), device_name=label, dtype=name, peak_flops=max(matmul, conv),
                    bandwidth=bandwidth, measured_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    datasheet_flops=sheet_flops, datasheet_bandwidth=sheet_bandwidth, datasheet_source=source)


# ---------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """Where measured ceilings are kept: ``$EXPLORER_CACHE_DIR``, else ``$XDG_CACHE_HOME/xception-explorer``,
    else ``~/.cache/xception-explorer``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xception-explorer"


def _key(device_name: str, dtype: str) -> str:
    return f"{device_name} | {dtype}"


def _read_cache() -> dict:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(entry: Ceilings) -> None:
    """Add ``entry`` to the cache file (replaced atomically); a folder that cannot be written is let be."""
    folder = cache_dir()
    data = _read_cache()
    data[_key(entry.device_name, entry.dtype)] = entry.to_dict()
    from explorer.files import atomic_write_text

    try:
        atomic_write_text(folder / CACHE_FILE, json.dumps(data, indent=2, sort_keys=True))
    except OSError:
        pass


def cached(device: torch.device, dtype: str) -> Ceilings | None:
    """The cached ceilings of ``device`` at ``dtype``, or None when they were never measured."""
    entry = _read_cache().get(_key(device_label(device), dtype_name(dtype)))
    if not isinstance(entry, dict):
        return None
    try:
        found = Ceilings.from_dict(entry)
    except TypeError:  # an entry written by another version
        return None
    # the same GPU model at another index reads the same entry
    here = device_id(device)
    return found if found.device == here else Ceilings.from_dict({**found.to_dict(), "device": here})


def ceilings(device: str = "auto", dtype: str = "float32", *, remeasure: bool = False,
             progress: ProgressFn | None = None) -> Ceilings:
    """The peak FLOP/s and bandwidth of ``device`` at ``dtype``: measured once per (device name, dtype)
    and cached (see the module doc); ``remeasure=True`` measures again. ``progress(fraction)`` is called
    while measuring and may raise to cancel."""
    target = resolve_device(device)
    name = dtype_name(dtype)
    if not remeasure:
        found = cached(target, name)
        if found is not None:
            return found
    entry = measure(target, name, progress)
    _write_cache(entry)
    return entry
