"""Benchmark: building the architecture graph and its plotly figure from a spec.

Target: the Xception preset at layer level, graph + figure, under 0.3 s here.
Prints the median of the repeats (warm: modules imported, a first figure made)
and the first, cold call, each with its ratio to the target (≤ 1 passes).
Inception V3 and the block level are printed alongside for reference.

    python tests/bench/bench_graph.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere without installing

TARGET_S = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    start = time.perf_counter()
    from explorer.graph import build_graph, graph_figure
    from explorer.spec import load_spec

    specs = {name: load_spec(name) for name in ("xception", "inception_v3")}
    imported = time.perf_counter() - start

    def once(name: str, level: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        graph = build_graph(specs[name], level=level)
        t1 = time.perf_counter()
        graph_figure(graph)
        return t1 - t0, time.perf_counter() - t1

    cold_graph, cold_figure = once("xception", "layer")
    print(f"import explorer.graph + specs: {imported:.3f} s (not counted)")
    print(f"{'case':26s} {'graph s':>8s} {'figure s':>9s} {'total s':>8s} {'/ target':>9s}")
    print(f"{'xception layer (cold)':26s} {cold_graph:8.3f} {cold_figure:9.3f} {cold_graph + cold_figure:8.3f} "
          f"{(cold_graph + cold_figure) / TARGET_S:9.2f}")
    verdict = True
    for name, level in (("xception", "layer"), ("xception", "block"), ("inception_v3", "layer")):
        runs = [once(name, level) for _ in range(args.repeats)]
        g = statistics.median(r[0] for r in runs)
        f = statistics.median(r[1] for r in runs)
        total = statistics.median(r[0] + r[1] for r in runs)
        print(f"{name + ' ' + level:26s} {g:8.3f} {f:9.3f} {total:8.3f} {total / TARGET_S:9.2f}")
        if (name, level) == ("xception", "layer"):
            verdict = total <= TARGET_S
    print(f"target: xception layer graph + figure ≤ {TARGET_S} s (warm median): {'PASS' if verdict else 'FAIL'}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
