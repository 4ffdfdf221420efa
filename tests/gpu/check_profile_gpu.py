"""The profiler on a CUDA GPU: the ceilings against the datasheet, and both presets' layers timed by CUDA events.

Run: ``python tests/gpu/check_profile_gpu.py [--repeats N]`` (exits 0 with a message where there is no
CUDA). For fp32 and bf16 it measures the ceilings afresh (in a temporary cache folder) and prints them
beside the datasheet's numbers; then profiles Xception and Inception V3 at batch 1 and 32 and prints the
forward time, the sum of the layers against it, the instrumentation's overhead, the share of time and
of MACs of the depthwise and pointwise convs, and the slowest layers. It fails (exit 1) when the rows
are not the cost model's inference layers or the layers do not add up to the forward within 15 %.
Needs what ``explorer.spec`` imports (pydantic, pyyaml) besides torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:  # explorer.spec needs pydantic, which the GPU machine may lack
    from explorer.cost import count_costs
    from explorer.measure import ceilings, profile
    from explorer.spec import load_spec
    MISSING = None
except ImportError as exc:
    MISSING = str(exc)

TOP = 5


def show_ceilings(c) -> None:
    sheet_flops = "-" if c.datasheet_flops is None else f"{c.datasheet_flops / 1e12:.1f}"
    sheet_bw = "-" if c.datasheet_bandwidth is None else f"{c.datasheet_bandwidth / 1e12:.2f}"
    print(f"ceilings {c.dtype}: {c.peak_flops / 1e12:.1f} TFLOP/s (datasheet {sheet_flops}), "
          f"{c.bandwidth / 1e12:.2f} TB/s (datasheet {sheet_bw}), ridge {c.ridge:.1f} FLOP/byte")


def check(name: str, batch: int, dtype: str, roof, repeats: int, failures: list[str]) -> None:
    spec = load_spec(name)
    result = profile(spec, batch=batch, device="cuda", dtype=dtype, repeats=repeats, ceilings=roof)
    label = f"{name} batch {batch} {dtype}"
    rows = [c.name for c in count_costs(spec, batch).layers if not c.train_only]
    if [r.name for r in result.layers] != rows:
        failures.append(f"{label}: the rows are not the cost model's inference layers")
    ratio = result.layer_seconds / result.forward_seconds
    if not 0.85 <= ratio <= 1.15:
        failures.append(f"{label}: the layers add up to {ratio:.3f} x the forward")
    kinds = {r["kind"]: r for r in result.by("kind")}
    split = ", ".join(f"{k} {100 * kinds[k]['share']:.1f} % of the time / {100 * kinds[k]['macs_share']:.1f} % "
                      f"of the MACs" for k in ("conv", "depthwise", "pointwise") if k in kinds)
    print(f"{label}: forward {result.forward_seconds * 1e3:.3f} ms ({batch / result.forward_seconds:,.0f} img/s), "
          f"layers {ratio:.3f} x the forward, overhead {100 * result.overhead:+.1f} %; {split}")
    for row in sorted(result.layers, key=lambda r: -r.seconds)[:TOP]:
        print(f"    {row.name:34s} {row.kind:10s} {row.seconds * 1e6:9.1f} us {100 * row.share:5.1f} % "
              f"{row.flops_per_s / 1e12:7.2f} TFLOP/s {row.bytes_per_s / 1e9:8.1f} GB/s "
              f"{row.intensity:8.1f} FLOP/B {row.bound(roof)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("check_profile_gpu: skipped (no CUDA device)")
        return 0
    if MISSING:
        print(f"check_profile_gpu: cannot import explorer.measure ({MISSING}); install or carry what it needs")
        return 1
    failures: list[str] = []
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["EXPLORER_CACHE_DIR"] = cache
        for dtype in ("float32", "bfloat16"):
            if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
                print("bfloat16: not supported on this GPU, skipped")
                continue
            roof = ceilings("cuda", dtype, remeasure=True)
            show_ceilings(roof)
            for name in ("xception", "inception_v3"):
                for batch in (1, 32):
                    check(name, batch, dtype, roof, args.repeats, failures)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
