"""Benchmark: each attribution method on both presets, ours against a plain Captum call with the same
settings, and Integrated Gradients' peak memory against its internal batch and its steps.

Part 1 prints, per preset and method, the median seconds of ``explain_tensor`` and of the plain Captum
call on the same model (random weights, channels_last as ``load_model`` makes it), measured side by side
(interleaved, so load from other processes hits both alike), their ratio (ours / plain; target <= 1.0)
and the largest difference between the two maps (they must agree: same settings). Both are given the
target class; "default target" adds ours with ``target=None``, which costs one more (no-grad) forward
pass to find the prediction that a plain call would need too. "copy" is the one-time cost of the
private replica a model gets on its first explanation (see explorer/explain/safety.py).

Part 2 runs Integrated Gradients in fresh processes and reads the peak resident memory during the call
(Linux: VmHWM, reset just before it): with ``internal_batch_size`` the peak follows the internal batch
and stays flat as the steps grow; plain Captum without an internal batch grows with the steps.

    python tests/bench/bench_explain.py [--quick] [--repeats 3] [--threads 2] [--methods ig gradcam]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from timing import interleaved, peak_growth

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

warnings.filterwarnings("ignore", category=UserWarning)

PRESETS = ("xception", "inception_v3")
LAYERS = {"xception": "exit.sep2.act", "inception_v3": "Mixed_7c.concat"}
TARGET = 281
# lighter than the defaults where a method repeats the network many times, so a run takes minutes
SETTINGS = {
    "saliency": {},
    "ig": {"steps": 16, "internal_batch_size": 8},
    "smoothgrad": {"nt_samples": 8, "nt_samples_batch_size": 4, "stdevs": 0.3},
    "guided-backprop": {},
    "gradcam": {},
    "guided-gradcam": {},
    "occlusion": {"window": 50, "stride": 50},
}


def plain_captum(method: str, model: torch.nn.Module, x: torch.Tensor, layer: str, o: dict) -> torch.Tensor:
    """The same attribution with Captum alone, as a user of Captum would write it."""
    from captum.attr import (
        GuidedBackprop,
        GuidedGradCam,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    x = x.clone()
    if method == "saliency":
        return Saliency(model).attribute(x, target=TARGET, abs=True)
    if method == "ig":
        return IntegratedGradients(model).attribute(x, baselines=0.0, target=TARGET, n_steps=o["steps"],
                                                    method="gausslegendre",
                                                    internal_batch_size=o["internal_batch_size"])
    if method == "smoothgrad":
        return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=o["nt_samples"],
                                                      nt_samples_batch_size=o["nt_samples_batch_size"],
                                                      stdevs=o["stdevs"], target=TARGET, abs=False)
    if method == "guided-backprop":
        return GuidedBackprop(model).attribute(x, target=TARGET)
    module = model.get_submodule(layer)
    if method == "gradcam":
        cam = LayerGradCam(model, module).attribute(x, target=TARGET)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    if method == "guided-gradcam":
        return GuidedGradCam(model, module).attribute(x, target=TARGET, interpolate_mode="bilinear")
    if method == "occlusion":
        c = x.shape[1]
        return Occlusion(model).attribute(x, sliding_window_shapes=(c, o["window"], o["window"]),
                                          strides=(c, o["stride"], o["stride"]), baselines=0.0, target=TARGET,
                                          perturbations_per_eval=16)
    raise ValueError(method)


def calls_to_time(model: torch.nn.Module, x: torch.Tensor, method: str, layer: str, options: dict
           ) -> dict[str, Callable[[], object]]:
    """The calls timed side by side: ours, plain Captum and (short methods) ours with the default target."""
    from explorer.explain import explain_tensor

    calls = {"ours": lambda: explain_tensor(model, x, method, target=TARGET, **options),
             "plain": lambda: plain_captum(method, model, x, layer, options)}
    if method in ("saliency", "gradcam", "guided-backprop"):
        calls["default"] = lambda: explain_tensor(model, x, method, **options)
    return calls


def speed(args: argparse.Namespace) -> None:
    from explorer.explain import POOL, explain_tensor
    from explorer.explain.safety import make_replica
    from explorer.infer import load_model

    print(f"Part 1: seconds per call, median of {args.repeats} (interleaved); ratio = ours / plain Captum")
    print(f"{'preset':13s} {'method':16s} {'ours':>8s} {'plain':>8s} {'ratio':>6s} {'default target':>15s} "
          f"{'max |diff| / max |map|':>23s}")
    for preset in PRESETS:
        knobs = {"width": 0.5, "input_size": 160} if args.quick else {}
        if preset == "inception_v3" and args.quick:
            knobs["aux_logits"] = False
        loaded = load_model(preset, "random", knobs=knobs or None, cache=False)
        model = loaded.model
        size = loaded.spec.input_size
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        make_replica(model)
        copy_s = time.perf_counter() - start
        for method in args.methods:
            options = dict(SETTINGS[method])
            layer = LAYERS[preset]
            t = interleaved(calls_to_time(model, x, method, layer, options), args.repeats)
            ours = explain_tensor(model, x, method, target=TARGET, **options).values
            plain = plain_captum(method, model, x, layer, options)[0].detach().numpy()
            diff = float(np.abs(ours - plain).max() / max(np.abs(plain).max(), 1e-30))
            default = f"{t['default']:.3f} s" if "default" in t else "-"
            print(f"{preset:13s} {method:16s} {t['ours']:8.3f} {t['plain']:8.3f} {t['ours'] / t['plain']:6.2f} "
                  f"{default:>15s} {diff:23.1e}", flush=True)
        print(f"{preset:13s} one-time replica copy: {copy_s:.3f} s (input {size} px, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")
        POOL.clear()


def _peak_child(preset: str, steps: int, batch: int | None, plain: bool, size: int) -> None:
    """In a fresh process: the peak RSS growth (MiB) during one IntegratedGradients call."""
    torch.set_num_threads(2)
    from captum.attr import IntegratedGradients

    from explorer.explain import explain_tensor
    from explorer.infer import load_model

    knobs = None if size == 299 else {"input_size": size, "aux_logits": False}
    model = load_model(preset, "random", knobs=knobs, cache=False).model
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    # warm up (and make our replica) with a tiny run, so the measured call allocates only activations
    explain_tensor(model, x, "ig", target=TARGET, steps=2, internal_batch_size=1)
    if plain:
        IntegratedGradients(model).attribute(x, target=TARGET, n_steps=2, internal_batch_size=1)

    if plain:
        call = lambda: IntegratedGradients(model).attribute(  # noqa: E731
            x, target=TARGET, n_steps=steps, internal_batch_size=batch)
    else:
        call = lambda: explain_tensor(model, x, "ig", target=TARGET, steps=steps, internal_batch_size=batch)  # noqa: E731
    peak, seconds = peak_growth(call)
    print(json.dumps({"peak_mib": peak, "seconds": seconds}))


def memory(args: argparse.Namespace) -> None:
    if not Path("/proc/self/clear_refs").exists():
        print("Part 2 needs Linux's /proc/self/clear_refs: skipped")
        return
    preset, size = "inception_v3", (160 if args.quick else 299)
    print(f"\nPart 2: IntegratedGradients peak memory (RSS growth during the call), {preset} at {size} px")
    print(f"{'run':34s} {'steps':>6s} {'internal batch':>15s} {'peak MiB':>9s} {'seconds':>8s}")
    runs = [(False, 16, 4), (False, 64, 4), (False, 16, 16), (False, 64, 16), (True, 8, None), (True, 32, None)]
    for plain, steps, batch in runs:
        cmd = [sys.executable, __file__, "--peak-child", preset, str(steps), str(batch or 0), str(int(plain)),
               str(size)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT, check=False)
        if out.returncode != 0:
            print(f"child failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        data = json.loads(out.stdout.strip().splitlines()[-1])
        who = "plain Captum, no internal batch" if plain else "ours (Captum IG, internal batch)"
        print(f"{who:34s} {steps:6d} {batch or 'all steps'!s:>15s} {data['peak_mib']:9.0f} "
              f"{data['seconds']:8.2f}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peak-child":
        preset, steps, batch, plain, size = sys.argv[2:7]
        _peak_child(preset, int(steps), int(batch) or None, plain == "1", int(size))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="half-width presets at 160 px")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, settings: {json.dumps(SETTINGS)}")
    speed(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
