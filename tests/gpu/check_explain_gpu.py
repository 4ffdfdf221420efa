"""The explain feature on a GPU: every method on both presets, ours against a plain Captum call, and the
same map as on the CPU.

Run: ``python tests/gpu/check_explain_gpu.py`` (exits 0 with a message where there is no CUDA, or where
Captum is not installed: the GPU machines lack it unless its wheel is carried). Prints per preset and
method the median seconds of ``explain_tensor`` and of the plain Captum call on the same GPU model, their
ratio (ours / plain; target <= 1.0), the relative difference of the GPU map from the CPU one (Saliency,
Grad-CAM: must be small; TF32 is off), and that no hook is left on the model. Exit 1 on a failed check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from timing import cuda_median_seconds  # noqa: E402

SETTINGS = {
    "saliency": {},
    "ig": {"steps": 32, "internal_batch_size": 16},
    "smoothgrad": {"nt_samples": 16, "nt_samples_batch_size": 8, "stdevs": 0.3},
    "guided-backprop": {},
    "gradcam": {},
    "guided-gradcam": {},
    "occlusion": {"window": 30, "stride": 15},
}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    try:
        import captum  # noqa: F401
        import pydantic  # noqa: F401
    except ImportError as exc:
        print(f"skipped: {exc.name} is not installed here (carry its wheel to run this check)")
        return 0
    import numpy as np
    from bench_explain import LAYERS, TARGET, calls_to_time

    from explorer.build import build_model
    from explorer.explain import explain_tensor, installed_hooks
    from explorer.spec import load_spec

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    failures: list[str] = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'preset':13s} {'method':16s} {'ours s':>8s} {'plain s':>8s} {'ratio':>6s} {'GPU vs CPU':>11s}")
    for preset in ("xception", "inception_v3"):
        cpu_model = build_model(load_spec(preset))
        model = build_model(load_spec(preset)).cuda().to(memory_format=torch.channels_last)
        x = torch.randn(1, 3, 299, 299, generator=torch.Generator().manual_seed(0))
        xg = x.cuda()
        for method, options in SETTINGS.items():
            calls = calls_to_time(model, xg, method, LAYERS[preset], options)
            ours, plain = cuda_median_seconds(calls["ours"]), cuda_median_seconds(calls["plain"])
            agree = "-"
            if method in ("saliency", "gradcam"):
                gpu_map = explain_tensor(model, xg, method, target=TARGET, **options).values
                cpu_map = explain_tensor(cpu_model, x, method, target=TARGET, **options).values
                rel = float(np.abs(gpu_map - cpu_map).max() / np.abs(cpu_map).max())
                agree = f"{rel:.1e}"
                if rel > 1e-2:
                    failures.append(f"{preset} {method}: GPU map differs from the CPU map by {rel:.2e}")
            if installed_hooks(model):
                failures.append(f"{preset} {method}: hooks left on the model")
            print(f"{preset:13s} {method:16s} {ours:8.3f} {plain:8.3f} {ours / plain:6.2f} {agree:>11s}", flush=True)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
