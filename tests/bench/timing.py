"""Side-by-side timing for the benchmarks: interleaved runs, medians."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, *, warmup: bool = True) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times (after one warm-up each).

    Taking turns makes load from other processes hit every side alike, so the
    ratios of the medians hold on a busy machine better than the times do.
    """
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def cuda_median_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median seconds of ``fn`` on a CUDA device (synchronized around each run, after one warm-up)."""
    import torch

    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_bytes(field: str) -> int:
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_growth(fn: Callable[[], object]) -> tuple[float, float]:
    """Run ``fn`` once; return (peak resident memory growth during it in MiB, seconds). Linux only: the peak
    (VmHWM) is reset to the current resident size just before (run it in a fresh process for a clean figure)."""
    from pathlib import Path

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return (_status_bytes("VmHWM") - before) / 2**20, seconds
