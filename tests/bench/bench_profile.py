"""Benchmark: the profiler's cost, what a profile says about the presets, and separable against regular convs.

Prints, in one run on this machine (fp32, batch 1, seeded random weights):

* the machine's ceilings, measured afresh (and how long that took);
* for Xception and Inception V3: the plain forward (median), the sum of the layers' medians against it,
  the instrumentation's overhead (instrumented / plain forward, the two taken in turns), the time one
  full profile takes (default warm-up and repeats), and the share of time against the share of counted
  MACs per kind (depthwise against pointwise);
* Xception against itself with every separable conv replaced by a regular conv (the ``separable=false``
  knob): the measured speed-up of the whole forward (interleaved runs, ratio of the medians) and of the
  convs that differ (from the two profiles), beside the counted MAC ratios.

    python tests/bench/bench_profile.py [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import interleaved  # noqa: E402

from explorer.build import build_model  # noqa: E402
from explorer.cost import count_costs  # noqa: E402
from explorer.measure import ceilings, profile  # noqa: E402
from explorer.measure.timing import prepare  # noqa: E402
from explorer.spec import load_spec  # noqa: E402

CONVS = ("conv", "depthwise", "pointwise", "grouped_conv")


def shares(result) -> str:
    """``depthwise 7.8 % / 1.6 %; ...``: each kind's share of the time against its share of the MACs."""
    return "; ".join(f"{r['kind']} {100 * r['share']:.1f} / {100 * r['macs_share']:.1f}" for r in result.by("kind"))


def separable_parts(result) -> dict[str, float]:
    """Seconds of each separable conv (its depthwise + pointwise layers) by module path."""
    parts: dict[str, float] = {}
    for row in result.layers:
        if row.kind in ("depthwise", "pointwise"):
            key = row.name.rsplit(".", 1)[0]
            parts[key] = parts.get(key, 0.0) + row.seconds
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per profile (default 10)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch 1, CPU; "
          f"profiles: 2 warm-up + {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["EXPLORER_CACHE_DIR"] = cache
        start = time.perf_counter()
        roof = ceilings("cpu", remeasure=True)
        took = time.perf_counter() - start
    print(f"ceilings: {roof.peak_flops / 1e9:.1f} GFLOP/s, {roof.bandwidth / 1e9:.1f} GB/s, ridge "
          f"{roof.ridge:.2f} FLOP/byte ({roof.device_name}; measured in {took:.2f} s)")

    results = {}
    print(f"\n{'network':14s} {'forward ms':>10s} {'layers/fwd':>10s} {'overhead':>9s} {'profile s':>9s} rows")
    for name in ("xception", "inception_v3"):
        start = time.perf_counter()
        result = profile(name, device="cpu", repeats=args.repeats, ceilings=roof)
        took = time.perf_counter() - start
        results[name] = result
        print(f"{name:14s} {result.forward_seconds * 1e3:10.1f} {result.layer_seconds / result.forward_seconds:10.3f} "
              f"{100 * result.overhead:+8.1f}% {took:9.1f} {len(result.layers)}")
    print("share of the time / share of the MACs per kind (%):")
    for name, result in results.items():
        print(f"  {name}: {shares(result)}")

    spec = load_spec("xception")
    try:
        regular = spec.with_overrides(separable=False)
    except Exception as exc:  # noqa: BLE001 - the knob may be missing from an older tree
        print(f"\nseparable against regular: skipped ({exc})")
        return 0
    macs = count_costs(spec).totals["macs"], count_costs(regular).totals["macs"]
    cpu = torch.device("cpu")
    nets = [prepare(build_model(s, seed=0), cpu, torch.float32, fast=False) for s in (spec, regular)]
    x = torch.randn(1, 3, spec.input_size, spec.input_size).contiguous(memory_format=torch.channels_last)

    def forward(net):
        def run():
            with torch.no_grad():
                return net(x)
        return run

    whole = interleaved({"separable": forward(nets[0]), "regular": forward(nets[1])}, max(3, args.repeats // 2))
    other = profile(regular, device="cpu", repeats=max(3, args.repeats // 2), ceilings=roof)
    mine = separable_parts(results["xception"])
    theirs = {row.name.rsplit(".", 1)[0]: row.seconds for row in other.layers if row.name.rsplit(".", 1)[0] in mine}
    part_macs = [sum(c.macs for c in report.layers if c.name.rsplit(".", 1)[0] in mine and c.kind in CONVS)
                 for report in (count_costs(spec), count_costs(regular))]
    print("\nxception: separable convs against regular convs in their place (separable=false)")
    print(f"{'':38s} {'separable':>10s} {'regular':>10s} {'regular / separable':>20s}")
    print(f"{'whole forward, measured (ms)':38s} {whole['separable'] * 1e3:10.1f} {whole['regular'] * 1e3:10.1f} "
          f"{whole['regular'] / whole['separable']:19.2f}x")
    print(f"{'whole network, counted (GMACs)':38s} {macs[0] / 1e9:10.3f} {macs[1] / 1e9:10.3f} "
          f"{macs[1] / macs[0]:19.2f}x")
    print(f"{'the convs that differ, measured (ms)':38s} {sum(mine.values()) * 1e3:10.1f} "
          f"{sum(theirs.values()) * 1e3:10.1f} {sum(theirs.values()) / sum(mine.values()):19.2f}x")
    print(f"{'the convs that differ, counted (GMACs)':38s} {part_macs[0] / 1e9:10.3f} {part_macs[1] / 1e9:10.3f} "
          f"{part_macs[1] / part_macs[0]:19.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
