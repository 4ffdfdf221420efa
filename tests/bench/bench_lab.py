"""Benchmark: training throughput of the lab (images per second) for mini_xception on the digits.

Measures, interleaved so that load from other processes hits every case alike
(median of the repeats): training steps (forward, backward, AdamW step; batch
64, 32 px) with 1 and 2 CPU threads, the eval forward pass, the ablation's
variants (no residual, a ReLU between depthwise and pointwise), and CUDA when
there is a GPU. Prints images per second and ratios measured side by side.

    python tests/bench/bench_lab.py [--repeats 5] [--steps 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere without installing

from explorer.build import build_model
from explorer.lab.data import load_data, to_model_input
from explorer.spec import Spec, load_spec
from timing import interleaved


def train_steps(spec: Spec, x: torch.Tensor, y: torch.Tensor, device: str, steps: int) -> Callable[[], None]:
    model = build_model(spec, seed=0).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = x.to(device), y.to(device)

    def run() -> None:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(to_model_input(x, spec.in_channels)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
    return run


def eval_steps(spec: Spec, x: torch.Tensor, device: str, steps: int) -> Callable[[], None]:
    model = build_model(spec, seed=0).to(device).eval()
    x = x.to(device)

    def run() -> None:
        with torch.no_grad():
            for _ in range(steps):
                model(to_model_input(x, spec.in_channels))
        if device == "cuda":
            torch.cuda.synchronize()
    return run


def with_threads(n: int, fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        saved = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(saved)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="batches per timed call")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    spec = load_spec("mini_xception")
    data = load_data("digits", input_size=spec.input_size, in_channels=spec.in_channels)
    x, y = data.train_x[:args.batch], data.train_y[:args.batch]
    images = args.batch * args.steps
    cases: dict[str, Callable[[], None]] = {
        "train cpu 1 thread": with_threads(1, train_steps(spec, x, y, "cpu", args.steps)),
        "train cpu 2 threads": with_threads(2, train_steps(spec, x, y, "cpu", args.steps)),
        "eval cpu 1 thread": with_threads(1, eval_steps(spec, x, "cpu", args.steps)),
        "train cpu 1 thread, residual=false": with_threads(
            1, train_steps(spec.with_overrides(residual=False), x, y, "cpu", args.steps)),
        "train cpu 1 thread, mid_activation=relu": with_threads(
            1, train_steps(spec.with_overrides(mid_activation="relu"), x, y, "cpu", args.steps)),
    }
    if torch.cuda.is_available():
        cases["train cuda"] = train_steps(spec, x, y, "cuda", args.steps)
        cases["eval cuda"] = eval_steps(spec, x, "cuda", args.steps)
    seconds = interleaved(cases, args.repeats)
    rate = {k: images / s for k, s in seconds.items()}
    print(f"mini_xception ({spec.input_size} px, batch {args.batch}), {args.repeats} repeats of {args.steps} "
          f"batches, median; torch {torch.__version__}")
    for key, r in rate.items():
        print(f"  {key:42s} {r:8.0f} images/s")
    base = rate["train cpu 1 thread"]
    epoch = len(data.train_y) / base
    print(f"  one digits epoch ({len(data.train_y)} images) at 1 thread: {epoch:.1f} s of training steps")
    print("ratios (side by side in this run):")
    print(f"  train 2 threads / 1 thread:        {rate['train cpu 2 threads'] / base:.2f}x")
    print(f"  eval / train (1 thread):           {rate['eval cpu 1 thread'] / base:.2f}x")
    print(f"  residual=false / residual=true:    {rate['train cpu 1 thread, residual=false'] / base:.2f}x")
    print(f"  mid relu / no mid activation:      {rate['train cpu 1 thread, mid_activation=relu'] / base:.2f}x")
    if "train cuda" in rate:
        print(f"  cuda / cpu 1 thread (train):       {rate['train cuda'] / base:.2f}x")


if __name__ == "__main__":
    main()
