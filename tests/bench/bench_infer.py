"""Inference throughput: our path against timm's and torchvision's modules run the plain way.

Run: ``python tests/bench/bench_infer.py [--reps N]``. Both sides get the same
preprocessed inputs (the sample photos) and the same weights (the reference
module's state dict, written under the official file name into a temporary
torch hub folder and loaded by ``load_model(name, "imagenet")``). The reference
runs contiguous fp32 under ``no_grad``; ours is ``explorer.infer.run_model``
(channels_last, fp32, ``no_grad``). Timings are interleaved (ours, reference,
ours, ...); the speed-up is the ratio of the medians (and, as "best-of", of the fastest runs),
so a busy machine affects both alike. Images/s are from the medians.
Target on the 2-core CPU: >= 1.5x for Xception.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the reference networks

from explorer.infer import OFFICIAL, list_samples, load_model, run_model  # noqa: E402
from reference import randomize_, reference_model  # noqa: E402

TARGET = {"xception": 1.5}


def reference(name: str) -> torch.nn.Module:
    """The reference module with weights far from the defaults (so that top-5 is meaningful)."""
    return randomize_(reference_model(name), {"xception": 1, "inception_v3": 2}[name])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, reps: int, batch: int) -> dict:
    ref = reference(name)
    torch.save(ref.state_dict(), Path(torch.hub.get_dir()) / "checkpoints" / OFFICIAL[name].file_name)
    loaded = load_model(name, "imagenet", download=False)
    assert loaded.report.complete, loaded.report.summary()
    images = [s.path for s in list_samples()]
    from PIL import Image

    x1 = loaded.preprocess.batch([Image.open(p).convert("RGB") for p in images])
    xb = x1.repeat((batch + len(x1) - 1) // len(x1), 1, 1, 1)[:batch].contiguous()
    cpu = torch.device("cpu")
    runner = loaded.runner(cpu)  # what classify() runs: the inference copy (BN folded, in-place ReLU/add)

    def ours(x: torch.Tensor) -> torch.Tensor:
        return run_model(runner, x, cpu, batch_size=len(x)).logits

    def theirs(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ref(x.contiguous())

    same = ours(x1).topk(5).indices.tolist() == theirs(x1).topk(5).indices.tolist()
    out = {"name": name, "same_top5": same}
    for label, x, n in (("batch 1", x1[:1], reps), (f"batch {batch}", xb, max(3, reps // 3))):
        ours(x), theirs(x)  # warm-up: oneDNN primitives, allocator
        t_ours, t_ref = [], []
        for _ in range(n):
            t_ours.append(timed(lambda x=x: ours(x)))
            t_ref.append(timed(lambda x=x: theirs(x)))
        mo, mr = statistics.median(t_ours), statistics.median(t_ref)
        out[label] = (len(x) / mo, len(x) / mr, mr / mo, min(t_ref) / min(t_ours))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=tuple(OFFICIAL), default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ok = True
    with tempfile.TemporaryDirectory() as home:
        torch.hub.set_dir(os.path.join(home, "hub"))
        (Path(torch.hub.get_dir()) / "checkpoints").mkdir(parents=True)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, CPU")
        print(f"{'network':14s} {'inputs':9s} {'ours img/s':>11s} {'ref img/s':>10s} {'speed-up':>9s} "
              f"{'best-of':>8s}  same top-5")
        for name in [args.only] if args.only else list(OFFICIAL):
            result = bench(name, args.reps, args.batch)
            for label in ("batch 1", f"batch {args.batch}"):
                ours, theirs, ratio, best = result[label]
                print(f"{name:14s} {label:9s} {ours:11.2f} {theirs:10.2f} {ratio:8.2f}x {best:7.2f}x  "
                      f"{result['same_top5']}")
            ok &= result["same_top5"]
            target = TARGET.get(name)
            if target:
                ratio = result["batch 1"][2]
                print(f"  target >= {target}x at batch 1: {'met' if ratio >= target else 'NOT met'} ({ratio:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
