"""Benchmark: what the allocator tuning buys, what giving memory back costs, and whether the server stays bounded.

Three parts, each in fresh processes (glibc's ``mallopt`` is process-wide, and a process's resident
memory only tells the truth about the work it did itself). Prints figures and ratios, asserts nothing.

* ``forward``: Xception at batch 8 on the CPU, no_grad, on the main thread and on a worker thread (the
  app's jobs), under each allocator setting: glibc's defaults, :func:`explorer.resources.keep_freed_memory`
  as it is, and lower trim thresholds. Children alternate settings round after round; the medians are
  compared (setting / glibc's default: lower is faster).
* ``ig``: Integrated Gradients at 299 px on a random Xception, on a job thread as the app runs it: resident
  memory before, at the peak, after the job, and after :func:`explorer.resources.release_memory` (what the
  line for heavy work calls when the last heavy job ends), for the same settings.
* ``classes``: the Classify page's "Classes" knob stepped 100000, 99999, ... with random weights on
  Xception ×2 wide, through the function the page calls (:func:`explorer.ui.models.load`), each model
  classifying one image as the page does (which makes its inference copy): resident memory after each step.

    python tests/bench/bench_memory.py [--part forward|ig|classes|all] [--rounds 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# name -> (mmap threshold, trim threshold); None: glibc's default (dynamic thresholds)
SETTINGS: dict[str, tuple[int, int] | None] = {
    "glibc": None,
    "kept (mmap 1 GiB, trim 2 GiB)": (1 << 30, (1 << 31) - 1),
    "mmap 1 GiB, trim 256 MiB": (1 << 30, 256 << 20),
    "mmap 1 GiB, trim 64 MiB": (1 << 30, 64 << 20),
}
KEPT = "kept (mmap 1 GiB, trim 2 GiB)"
GiB = 2**30


def _apply(setting: str) -> None:
    """Set the allocator as ``setting`` says, and keep explorer's own tuning from overriding it."""
    import explorer.build.network as network

    network.keep_freed_memory = lambda: False  # what this child measures is set here, not by build_model
    values = SETTINGS[setting]
    if values is not None:
        libc = ctypes.CDLL("libc.so.6")
        assert libc.mallopt(M_MMAP_THRESHOLD, values[0]) and libc.mallopt(M_TRIM_THRESHOLD, values[1])


def _rss() -> int:
    from explorer.resources import rss_bytes

    return rss_bytes()


def _peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current resident size


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _on_thread(fn):
    out: list = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


# -- children --------------------------------------------------------------------------------------

def child_forward(setting: str, repeats: int, threads: int) -> dict:
    _apply(setting)
    import torch

    from explorer.build import build_model
    from explorer.spec import load_spec

    torch.set_num_threads(threads)
    model = build_model(load_spec("xception")).eval().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 299, 299).contiguous(memory_format=torch.channels_last)

    def timed() -> float:
        with torch.no_grad():
            model(x)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {"main": timed(), "thread": _on_thread(timed), "rss": _rss()}


def child_ig(setting: str, steps: int, threads: int) -> dict:
    _apply(setting)
    import torch

    from explorer import resources
    from explorer.explain import explain_tensor
    from explorer.jobs import Job, Task
    from explorer.weights import load_model

    torch.set_num_threads(threads)
    loaded = load_model("xception", "random")
    x = torch.rand(3, 299, 299)
    explain_tensor(loaded.model, x, "saliency")  # the replicas and one-off set-up, before the baseline
    resources.release_memory()
    before = _rss()
    _peak_reset()
    job = Job([Task("ig", lambda report: explain_tensor(loaded.model, x, "ig", steps=steps, progress=report))])
    start = time.perf_counter()
    job.start().wait()  # not heavy: nothing gives the memory back by itself
    seconds = time.perf_counter() - start
    assert job.snapshot()[0].status == "done", job.snapshot()[0].error
    peak, after = _peak(), _rss()
    start = time.perf_counter()
    resources.release_memory()
    trim_s = time.perf_counter() - start
    return {"before": before, "peak": peak, "after": after, "released": _rss(), "seconds": seconds,
            "trim_s": trim_s}


def child_classes(steps: int, start: int) -> dict:
    from explorer.resources import keep_freed_memory, limit

    keep_freed_memory()  # as the server has it
    import io

    from PIL import Image

    from explorer.infer import classify
    from explorer.spec import load_spec
    from explorer.ui import models
    from explorer.weights.load import cache_bytes, cached_models, loaded_bytes

    image = io.BytesIO()
    Image.new("RGB", (320, 320), (120, 80, 40)).save(image, format="PNG")
    rows = []
    base = load_spec("xception")
    for classes in range(start, start - steps, -1):
        spec = base.with_overrides(width=2.0, num_classes=classes)
        began = time.perf_counter()
        loaded, _ = models.load(models.Choice("Sidebar network", spec.to_yaml(), "random"))
        classify([image.getvalue()], loaded, top=5)  # as the page does: makes the inference copy
        rows.append({"classes": classes, "rss": _rss(), "model": loaded_bytes(loaded), "cache": cache_bytes(),
                     "cached": len(cached_models()), "seconds": time.perf_counter() - began})
        del loaded
    return {"rows": rows, "budget": int(limit("model_cache_bytes")), "peak": _peak()}


# -- the parent ------------------------------------------------------------------------------------

def run_child(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gib(n: float) -> str:
    return f"{n / GiB:6.2f} GiB"


def part_forward(rounds: int, repeats: int, threads: int) -> None:
    print(f"\n== Xception batch-8 CPU forward (no_grad, channels_last, {threads} threads): median of {repeats} "
          f"runs per child, {rounds} rounds of children alternating the settings")
    got: dict[str, dict[str, list[float]]] = {s: {"main": [], "thread": []} for s in SETTINGS}
    for _ in range(rounds):
        for setting in SETTINGS:
            r = run_child("forward", setting, str(repeats), str(threads))
            got[setting]["main"].append(r["main"])
            got[setting]["thread"].append(r["thread"])
    base = {k: statistics.median(v) for k, v in got["glibc"].items()}
    print(f"{'allocator':32s} {'main ms':>9s} {'/glibc':>7s} {'thread ms':>10s} {'/glibc':>7s}")
    for setting, times in got.items():
        main, thread = statistics.median(times["main"]), statistics.median(times["thread"])
        print(f"{setting:32s} {main * 1e3:9.0f} {main / base['main']:7.2f} {thread * 1e3:10.0f} "
              f"{thread / base['thread']:7.2f}")


def part_ig(steps: int, threads: int) -> None:
    print(f"\n== Integrated Gradients at 299 px, {steps} steps, random Xception, on a job thread: resident memory")
    print(f"{'allocator':32s} {'before':>10s} {'peak':>10s} {'after job':>10s} {'released':>10s} "
          f"{'kept/freed':>10s} {'IG s':>6s} {'trim ms':>8s}")
    for setting in SETTINGS:
        r = run_child("ig", setting, str(steps), str(threads))
        grown = r["peak"] - r["before"]
        kept = (r["after"] - r["before"]) / grown if grown > 0 else 0.0
        print(f"{setting:32s} {gib(r['before'])} {gib(r['peak'])} {gib(r['after'])} {gib(r['released'])} "
              f"{kept:10.2f} {r['seconds']:6.1f} {r['trim_s'] * 1e3:8.1f}")
    print("kept/freed: the share of the work's memory still resident after it, before release_memory")


def part_classes(steps: int, start: int) -> None:
    r = run_child("classes", str(steps), str(start))
    print(f"\n== Classes stepped {start} → {start - steps + 1} on Xception ×2 (random weights) through "
          f"explorer.ui.models.load and classify; model_cache_bytes = {gib(r['budget']).strip()}")
    print(f"{'classes':>8s} {'RSS':>10s} {'this model':>11s} {'cache':>10s} {'cached':>7s} {'s':>6s}")
    for row in r["rows"]:
        print(f"{row['classes']:8d} {gib(row['rss'])} {gib(row['model']):>11s} {gib(row['cache'])} "
              f"{row['cached']:7d} {row['seconds']:6.1f}")
    print(f"peak resident: {gib(r['peak']).strip()}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "forward":
            result = child_forward(rest[0], int(rest[1]), int(rest[2]))
        elif kind == "ig":
            result = child_ig(rest[0], int(rest[1]), int(rest[2]))
        else:
            result = child_classes(int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("forward", "ig", "classes", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=2, help="forward: rounds of children per setting")
    parser.add_argument("--repeats", type=int, default=3, help="forward: timed runs per child")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--ig-steps", type=int, default=16, help="ig: path points (the app's default)")
    parser.add_argument("--steps", type=int, default=6, help="classes: how many values to step through")
    parser.add_argument("--start", type=int, default=100_000, help="classes: the first value")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {args.threads} threads, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB:.0f} GiB memory")
    if args.part in ("forward", "all"):
        part_forward(args.rounds, args.repeats, args.threads)
    if args.part in ("ig", "all"):
        part_ig(args.ig_steps, args.threads)
    if args.part in ("classes", "all"):
        part_classes(args.steps, args.start)


if __name__ == "__main__":
    main()
