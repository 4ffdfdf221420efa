"""Benchmark: spec-built presets against timm's and torchvision's modules.

Prints, as ratios measured side by side in one run (ours / reference, lower is
better; target ≤ 1.05): build time, and CPU forward time at batch 1 and 8,
contiguous and channels_last. Timings are interleaved (ours, reference, ours,
...) and the median of the repeats is taken, so that load from other processes
hits both sides alike.

    python tests/bench/bench_build.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the reference networks

from explorer.build import build_model
from explorer.spec import load_spec
from reference import reference_model as reference
from timing import interleaved


def forward_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return model(x)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} interleaved runs")
    print(f"{'network':14s} {'what':28s} {'ours ms':>9s} {'ref ms':>9s} {'ours/ref':>9s}")
    worst = 0.0
    for name in ("xception", "inception_v3"):
        spec = load_spec(name)
        build = interleaved({"ours": lambda: build_model(spec), "ref": lambda: reference(name)},
                            max(3, args.repeats // 2))
        rows = [("build", build)]
        ours, ref = build_model(spec), reference(name)
        for batch in (1, 8):
            for layout in ("contiguous", "channels_last"):
                x = torch.randn(batch, 3, 299, 299)
                if layout == "channels_last":
                    x = x.contiguous(memory_format=torch.channels_last)
                    ours, ref = ours.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
                else:
                    ours, ref = ours.to(memory_format=torch.contiguous_format), ref.to(
                        memory_format=torch.contiguous_format)
                fns = {"ours": forward_fn(ours, x), "ref": forward_fn(ref, x)}
                rows.append((f"forward batch {batch} {layout}", interleaved(fns, args.repeats)))
        for what, t in rows:
            ratio = t["ours"] / t["ref"]
            worst = max(worst, ratio)
            print(f"{name:14s} {what:28s} {t['ours'] * 1e3:9.1f} {t['ref'] * 1e3:9.1f} {ratio:9.3f}")
    print(f"worst ratio ours/reference, build and forward: {worst:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
