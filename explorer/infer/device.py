"""Where and how a network runs: device choice, autocast precision, channels_last, batches, OOM fallback."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

from explorer.devices import DEVICES, PRECISION_NAMES
from explorer.errors import ExplorerError

# The autocast dtype of each precision named in explorer.devices (fp32: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = dict(zip(PRECISION_NAMES, (None, torch.bfloat16, torch.float16)))

T = TypeVar("T")


class DeviceError(ExplorerError, ValueError):
    """A device or precision that cannot be used here."""


def available_devices() -> list[str]:
    """The devices this machine has, best first (for a selector): e.g. ``["cuda", "cpu"]``."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is missing is a :class:`DeviceError`."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise DeviceError(f"unknown device '{name}' (choose from {', '.join(DEVICES)})")
    if kind != "cpu" and kind not in available_devices():
        raise DeviceError(f"device '{name}' is not available here (available: {', '.join(available_devices())})")
    if kind == "cuda" and ":" in name:
        index = int(name.split(":")[1])
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device '{name}' does not exist ({torch.cuda.device_count()} CUDA devices)")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision to use on ``device`` and a note when the request was changed.

    Autocast is a GPU option; bf16 also runs on the CPU (fast where it has AMX or AVX-512 BF16),
    fp16 there falls back to fp32 (noted).
    """
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type == "cpu":
        return "fp32", "fp16 autocast is a GPU option: ran in fp32 on the CPU"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp16", "this GPU has no bf16: used fp16 autocast"
    return precision, None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """An autocast context for ``precision`` (a no-op for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def batch_slices(n: int, size: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``size`` items."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass
class ForwardResult:
    """Logits (fp32, on the CPU) and the time the forward passes took."""

    logits: torch.Tensor
    seconds: float
    device: torch.device
    precision: str


def run_model(model: nn.Module, x: torch.Tensor, device: torch.device, *, precision: str = "fp32",
              batch_size: int = 32, channels_last: bool = True) -> ForwardResult:
    """Run ``model`` (already on ``device``) on ``x`` in batches under ``no_grad``.

    ``no_grad`` rather than ``inference_mode``: the explain feature may reuse
    input tensors for gradients, which inference-mode tensors forbid.
    """
    memory_format = torch.channels_last if channels_last and x.dim() == 4 else torch.contiguous_format
    outputs = []
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad(), autocast(device, precision):
        for part in batch_slices(len(x), batch_size):
            chunk = x[part].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            outputs.append(model(chunk).float())
    synchronize(device)
    seconds = time.perf_counter() - start
    logits = torch.cat(outputs).cpu() if outputs else torch.empty(0)
    return ForwardResult(logits, seconds, device, precision)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator out-of-memory error."""
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_accelerator_memory(device: torch.device) -> None:
    """Return cached blocks to the driver after a failed run."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def with_cpu_fallback(run: Callable[[torch.device], T], device: torch.device) -> tuple[T, str | None]:
    """``run(device)``; if an accelerator runs out of memory, ``run(cpu)`` and a note saying so."""
    try:
        return run(device), None
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
        if device.type == "cpu" or not is_out_of_memory(exc):
            raise
    free_accelerator_memory(device)
    return run(torch.device("cpu")), f"the {device.type.upper()} ran out of memory: ran on the CPU instead"
