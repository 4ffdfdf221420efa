"""The GPU path of explorer.infer: same top-5 as the CPU, autocast agreement, latency, throughput, OOM fallback.

Run: ``python tests/gpu/check_gpu.py`` (exits 0 with a message where there is no
CUDA). Prints, for Xception and Inception V3, batch-1 latency and batch-64
throughput in fp32, bf16 and fp16 autocast. Uses the official weights when they
are in torch hub's cache, else seeded random weights (labelled). Needs what
``explorer.spec`` imports (pydantic, pyyaml) besides torch/torchvision/pillow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from timing import cuda_median_seconds  # noqa: E402


def check(name: str, failures: list[str]) -> None:
    from PIL import Image

    from explorer.infer import WeightsError, classify, list_samples, load_model, run_model

    try:
        loaded = load_model(name, "imagenet", download=False)
    except WeightsError:
        loaded = load_model(name, "random")
    paths = [s.path for s in list_samples()]
    cpu = classify(paths, loaded, device="cpu")
    gpu = classify(paths, loaded, device="cuda")
    def top(r):
        return [[p.index for p in x.top] for x in r.results]

    def probs(r):
        return torch.tensor([[p.probability for p in x.top] for x in r.results])

    same = top(cpu) == top(gpu) and torch.allclose(probs(cpu), probs(gpu), atol=1e-3)
    print(f"{name} ({loaded.weights}): GPU fp32 top-5 equals CPU: {same}")
    if not same:
        failures.append(f"{name}: GPU fp32 differs from CPU")
    for precision in ("bf16", "fp16"):
        amp = classify(paths, loaded, device="cuda", precision=precision)
        agree = sum(a[0] == b[0] for a, b in zip(top(cpu), top(amp)))
        print(f"  {precision} autocast ({amp.precision}): top-1 agrees on {agree}/{len(paths)}; notes {amp.notes}")

    device = torch.device("cuda")
    x1 = loaded.preprocess.batch([Image.open(paths[0]).convert("RGB")])
    x64 = x1.repeat(64, 1, 1, 1)
    print(f"  {'precision':9s} {'batch-1 ms':>11s} {'batch-64 img/s':>15s}")
    for precision in ("fp32", "bf16", "fp16"):
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            continue
        model = loaded.runner(device, precision)  # what classify() runs
        one = cuda_median_seconds(lambda m=model, p=precision: run_model(m, x1, device, precision=p), 20)
        many = cuda_median_seconds(lambda m=model, p=precision: run_model(m, x64, device, precision=p, batch_size=64), 5)
        print(f"  {precision:9s} {one * 1000:11.2f} {64 / many:15.1f}")


def check_oom_fallback(failures: list[str]) -> None:
    """Squeeze this process's share of GPU memory so a big batch runs out, and expect the CPU fallback."""
    from explorer.infer import classify, list_samples, load_model

    loaded = load_model("xception", "random", cache=False)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 150 * 2**20 / total))
    try:
        paths = [s.path for s in list_samples()][:1] * 48
        result = classify(paths, loaded, device="cuda", batch_size=48)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    fell_back = result.device == "cpu" and any("out of memory" in n for n in result.notes)
    print(f"OOM fallback: ran on {result.device}; notes {result.notes}")
    if not fell_back:
        failures.append("no CPU fallback after a GPU out-of-memory error")


def main() -> int:
    if not torch.cuda.is_available():
        print("check_gpu: skipped (no CUDA device)")
        return 0
    try:
        import explorer.infer  # noqa: F401 - only: can it be imported here
    except ImportError as exc:
        print(f"check_gpu: cannot import explorer.infer ({exc}); install or carry what it needs")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    failures: list[str] = []
    for name in ("xception", "inception_v3"):
        check(name, failures)
    check_oom_fallback(failures)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
