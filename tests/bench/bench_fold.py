"""Benchmark: the hook-free methods on the folded inference copy (the default) against the model as built.

Part 1, seconds per call (median of ``--repeats``, the three configurations run in turn so that load from
other processes hits them alike), Saliency, Integrated Gradients (16 steps, internal batch 4) and SmoothGrad
(16 samples, batch 4), all for one given class:

  (a) plain Captum on the model as built, as a Captum user runs it: eval, parameters requiring grad, NCHW
      (SmoothGrad: Captum's NoiseTunnel);
  (b) the model as built at its best: ``explain_tensor(..., fold=False)`` (a replica with frozen
      parameters, channels_last, as ``load_model`` makes the model);
  (c) ours: ``explain_tensor`` with its default, the folded replica (batch norms folded into the convs).

It prints a/c and b/c, whether a/c reaches the issue's target (1.4), and max |c - a| / max |a| (SmoothGrad:
against Captum's NoiseTunnel with our seeded noise, so that the maps are comparable) beside max |b - a| /
max |a|: how far float32 alone moves the map when only the memory layout changes (a gradient through
thousands of ReLUs and max pools takes another branch wherever rounding moves an input across a kink or
a near-tie; in float64 the folded map equals the as-built one, see tests/test_explain_fold.py).

Part 2, each configuration of Integrated Gradients in a fresh process: the peak resident memory during
the call (Linux: VmHWM, reset just before it), after a warm-up that made the replica.

    python tests/bench/bench_fold.py [--quick] [--repeats 3] [--threads 2] [--preset xception]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from timing import interleaved, peak_growth

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing
sys.path.insert(0, str(ROOT / "tests"))  # the reference networks' randomize_

warnings.filterwarnings("ignore", category=UserWarning)

TARGET = 281
TARGET_RATIO = 1.4  # the target: ours at least 1.4x faster than plain Captum on the model as built
METHODS = ("saliency", "ig", "smoothgrad")
OPTIONS = {"saliency": {}, "ig": {"steps": 16, "internal_batch_size": 4},
           "smoothgrad": {"nt_samples": 16, "nt_samples_batch_size": 4, "stdevs": 0.3}}


def models(preset: str, size: int | None) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    """The network as a Captum user has it (NCHW, parameters requiring grad) and as load_model makes it
    (channels_last): the same random weights, BN statistics away from the defaults."""
    from reference import randomize_

    from explorer.build import build_model
    from explorer.spec import load_spec

    knobs = {"input_size": size} if size else {}
    if preset == "inception_v3":
        knobs["aux_logits"] = False
    spec = load_spec(preset).with_overrides(**knobs)
    user = randomize_(build_model(spec), seed=0).eval()
    user.requires_grad_(True)
    ours = randomize_(build_model(spec), seed=0).eval().to(memory_format=torch.channels_last)
    return user, ours, spec.input_size


def plain_captum(method: str, model: torch.nn.Module, x: torch.Tensor, seeded: bool = False) -> torch.Tensor:
    """Captum alone, as its user writes it (``seeded``: SmoothGrad's noise from our seeded generator)."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    from explorer.explain.smoothgrad import SeededNoiseTunnel

    o = OPTIONS[method]
    x = x.clone()
    if method == "saliency":
        return Saliency(model).attribute(x, target=TARGET, abs=True)
    if method == "ig":
        return IntegratedGradients(model).attribute(x, baselines=0.0, target=TARGET, n_steps=o["steps"],
                                                    method="gausslegendre",
                                                    internal_batch_size=o["internal_batch_size"])
    tunnel = SeededNoiseTunnel(Saliency(model), torch.Generator().manual_seed(0)) if seeded \
        else NoiseTunnel(Saliency(model))
    return tunnel.attribute(x, nt_type="smoothgrad", nt_samples=o["nt_samples"],
                            nt_samples_batch_size=o["nt_samples_batch_size"], stdevs=o["stdevs"], target=TARGET,
                            abs=False)


def speed(args: argparse.Namespace) -> None:
    from explorer.explain import explain_tensor

    user, ours, size = models(args.preset, args.size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    print(f"Part 1: {args.preset} at {size} px, seconds per call, median of {args.repeats} (interleaved)")
    print(f"{'method':11s} {'(a) Captum':>11s} {'(b) as built':>13s} {'(c) folded':>11s} {'a/c':>6s} {'b/c':>6s} "
          f"{'a/c >= ' + str(TARGET_RATIO):>10s} {'max|c-a|/max|a|':>16s} {'max|b-a|/max|a|':>16s}")
    for method in args.methods:
        o = OPTIONS[method]
        t = interleaved({
            "a": lambda: plain_captum(method, user, x),
            "b": lambda: explain_tensor(ours, x, method, target=TARGET, fold=False, **o),
            "c": lambda: explain_tensor(ours, x, method, target=TARGET, **o),
        }, args.repeats)
        folded = explain_tensor(ours, x, method, target=TARGET, **o)
        built = explain_tensor(ours, x, method, target=TARGET, fold=False, **o)
        assert folded.folded and not built.folded
        plain = plain_captum(method, user, x, seeded=True)[0].detach().double().numpy()
        gaps = [float(np.abs(r.values - plain).max() / np.abs(plain).max()) for r in (folded, built)]
        met = "yes" if t["a"] / t["c"] >= TARGET_RATIO else "no"
        print(f"{method:11s} {t['a']:11.3f} {t['b']:13.3f} {t['c']:11.3f} {t['a'] / t['c']:6.2f} "
              f"{t['b'] / t['c']:6.2f} {met:>10s} {gaps[0]:16.1e} {gaps[1]:16.1e}", flush=True)


def _peak_child(config: str, preset: str, size: int | None, threads: int) -> None:
    """In a fresh process: the peak RSS growth (MiB) during one IntegratedGradients call of ``config``."""
    torch.set_num_threads(threads)
    from explorer.explain import explain_tensor

    user, ours, side = models(preset, size)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    o = OPTIONS["ig"]
    calls = {"a": lambda: plain_captum("ig", user, x),
             "b": lambda: explain_tensor(ours, x, "ig", target=TARGET, fold=False, **o),
             "c": lambda: explain_tensor(ours, x, "ig", target=TARGET, **o)}
    # warm up (and make our replica) with a two-point run, so the measured call allocates only activations
    if config == "a":
        from captum.attr import IntegratedGradients

        IntegratedGradients(user).attribute(x, target=TARGET, n_steps=2, internal_batch_size=1)
    else:
        explain_tensor(ours, x, "ig", target=TARGET, steps=2, internal_batch_size=1, fold=config == "c")

    peak, seconds = peak_growth(calls[config])
    print(json.dumps({"peak_mib": peak, "seconds": seconds}))


def memory(args: argparse.Namespace) -> None:
    if not Path("/proc/self/clear_refs").exists():
        print("Part 2 needs Linux's /proc/self/clear_refs: skipped")
        return
    print(f"\nPart 2: IntegratedGradients ({OPTIONS['ig']}) peak memory, RSS growth during the call, fresh process "
          f"each")
    print(f"{'configuration':46s} {'peak MiB':>9s} {'seconds':>8s}")
    names = {"a": "(a) plain Captum, model as built (NCHW, grad)", "b": "(b) as built, frozen, channels_last",
             "c": "(c) folded (the default)"}
    peaks = {}
    for config in ("a", "b", "c"):
        cmd = [sys.executable, __file__, "--peak-child", config, args.preset, str(args.size or 0), str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT, check=False)
        if out.returncode != 0:
            print(f"child failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        data = json.loads(out.stdout.strip().splitlines()[-1])
        peaks[config] = data["peak_mib"]
        print(f"{names[config]:46s} {data['peak_mib']:9.0f} {data['seconds']:8.2f}", flush=True)
    if {"a", "c"} <= peaks.keys() and peaks["c"] > 0:
        print(f"peak memory a/c {peaks['a'] / peaks['c']:.2f}, b/c {peaks.get('b', float('nan')) / peaks['c']:.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peak-child":
        config, preset, size, threads = sys.argv[2:6]
        _peak_child(config, preset, int(size) or None, int(threads))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="160 px inputs")
    parser.add_argument("--preset", default="xception", choices=("xception", "inception_v3"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    args.size = 160 if args.quick else None
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, options: {json.dumps(OPTIONS)}")
    speed(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
