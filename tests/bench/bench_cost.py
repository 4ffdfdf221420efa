"""Benchmark: the analytic cost count against counting by running the model.

Run as ``python tests/bench/bench_cost.py`` (not collected by pytest). Prints,
for the Xception preset at 299×299 on this machine, side by side in one run:

- our ``count_costs(spec)`` against a ``FlopCounterMode`` forward of the built
  model and against fvcore's ``FlopCountAnalysis`` (target: ≥ 20× faster than
  either; the model is built once beforehand, so the counters are timed on
  their best terms);
- the wall time of ``python -m explorer costs xception --json`` against
  ``python -c pass`` (target: under 1.5 s, Python's start included).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wall(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    import torch
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    from explorer.build import build_model
    from explorer.cost import count_costs
    from explorer.spec import load_spec

    torch.set_num_threads(2)
    spec = load_spec("xception")
    ours = count_costs(spec)
    t_ours = timed(lambda: count_costs(spec), 50)
    t_ours_load = timed(lambda: count_costs(load_spec("xception")), 50)

    start = time.perf_counter()
    model = build_model(spec)
    t_build = time.perf_counter() - start
    x = torch.randn(1, 3, 299, 299)

    def flop_counter() -> int:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
        return counter.get_total_flops()

    def fvcore() -> int:
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total()

    t_fc = timed(flop_counter, 5)
    t_fv = timed(fvcore, 3)
    fc_macs, fv_macs = flop_counter() // 2, fvcore()

    print(f"Xception preset, 3×299×299, batch 1, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  counts: ours {ours.totals['macs']:,} MACs; FlopCounterMode {fc_macs:,} MACs (FLOPs / 2); "
          f"fvcore {fv_macs:,} (its 'flops' are MACs and include batch norm)")
    print(f"  ours, count_costs(spec)            {t_ours * 1e3:9.2f} ms")
    print(f"  ours, load_spec + count_costs      {t_ours_load * 1e3:9.2f} ms")
    print(f"  FlopCounterMode forward            {t_fc * 1e3:9.2f} ms   (model built once before: {t_build:.2f} s)")
    print(f"  fvcore FlopCountAnalysis.total()   {t_fv * 1e3:9.2f} ms")
    for label, t in (("FlopCounterMode", t_fc), ("fvcore", t_fv)):
        ratio, with_load = t / t_ours, t / t_ours_load
        print(f"  speed-up vs {label + ':':16s} {ratio:,.0f}×  (with load_spec: {with_load:,.0f}×)   "
              f"target ≥ 20×: {'met' if min(ratio, with_load) >= 20 else 'MISSED'}")

    cli = [sys.executable, "-m", "explorer", "costs", "xception", "--json"]
    bare = [sys.executable, "-c", "pass"]
    wall(cli, 1)  # warm the file cache and bytecode
    t_cli, t_bare = [], []
    for _ in range(7):  # interleaved, so load on the machine hits both alike
        t_cli += wall(cli, 1)
        t_bare += wall(bare, 1)
    cli_med, bare_med = statistics.median(t_cli), statistics.median(t_bare)
    print(f"`python -m explorer costs xception --json`: median {cli_med:.3f} s (max {max(t_cli):.3f} s); "
          f"`python -c pass`: median {bare_med:.3f} s; ratio {cli_med / bare_med:.1f}×; "
          f"target < 1.5 s: {'met' if max(t_cli) < 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
