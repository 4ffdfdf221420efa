"""Benchmark: the scorecard (issue 14).

Part 1, deletion against Quantus's ``PixelFlipping`` (quantus 0.6.0) with everything made equal: the
images, the maps (Saliency, summed over channels, |.| as the scorecard reads it), the pixel order, the
steps and the baseline. It prints the largest difference between the two curves (target: within
1e-4 in probability), the areas, and the seconds of ours and of Quantus measured side by side (median of
interleaved repeats) with their ratio; the issue's target is ours at least 10x faster. Ours is the
scorecard's own path: the pixel order (:func:`ranking`), the jobs, and :func:`perturbation_curves` on
``loaded.runner("cpu")`` with 32 perturbed images per forward pass. Quantus is timed on the model as a user
would hand it (``loaded.model``), and, to tell the loop from the network, on the same runner.

How the two are made to remove the same pixels:

* Quantus's ``PixelFlipping`` flattens the attribution broadcast to the input's shape (C x H x W
  features, channel by channel) and asserts that ``features_in_step`` divides H x W. With C = 3 a
  step of whole pixels (a multiple of 3 features) cannot divide H x W unless 3 divides it, and it does
  not at 32 x 32 (the digits) nor at 299 x 299. So Quantus is given the same images in the H x W x C
  layout, as a 1 x H x (W C) array (a pixel's channels next to each other), with the attribution
  repeated over each pixel's channels, and the network behind a view that turns it back into
  N x C x H x W (channels_last: the layout these networks run in, so the view costs nothing).
  ``features_in_step = C x H x W / steps`` then removes whole pixels, ``H x W / steps`` per step.
* The order: ``normalise=False``, ``abs=False`` (the map is already |.|); Quantus sorts with
  ``np.argsort(-a)``. Where a map has tied pixels (ours breaks ties in a seeded random order) Quantus
  is given the rank of each pixel in our order instead of the map, so both orders are the same; the
  output says how many maps that took.
* The steps: H x W / steps must be whole for Quantus, while ours rounds (the scorecard's default 20
  steps at 32 x 32 are 51 or 52 pixels each), so steps that divide H x W: 16 and 32 for 32 x 32
  (1024 px), 13 and 23 for 299 x 299 (89401 = 13^2 x 23^2 px).
* The baseline: ours ``zero`` is the all-zero input tensor; Quantus ``perturb_baseline=0.0`` (a
  number is used as it is; its default "black" is each image's minimum, -1 here, not 0).
* The curve: Quantus's starts after the first step (``steps`` values), ours at the unperturbed image
  (``steps + 1``): compared on ours[1:]. Quantus's area is ``np.trapz(curve, dx=1)`` over its
  values; ours over the fraction of pixels 0..1 including the start. Both are printed.
* Probabilities: Quantus with ``softmax=True`` (it appends a ``Softmax`` to a model without one), ours
  a softmax of the logits.

Part 2, a whole scorecard (7 methods x 7 measures) for 8 shipped digits with the default settings:
seconds in all, per method (its maps plus its measures), per measure, the slowest cells, the table.

    python tests/bench/bench_score.py [--quick] [--repeats N] [--threads N] [--part 1|2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import interleaved

TOLERANCE = 1e-4  # largest difference between the two curves, in probability
TARGET_SPEEDUP = 10.0


def load() -> str:
    """The load average and a probe of this process's speed now: a fixed conv (8 x 64 x 32 x 32, 3 x 3) in ms.

    Other processes on the machine that spin their own threads can slow small torch ops tenfold for a while
    (seen here: the probe at 3 ms, then at 33 ms, and Saliency on a 32 px image 150x slower); the probe says
    when a number was measured in such a spell.
    """
    one, five, fifteen = os.getloadavg()
    w, a = torch.ones(64, 64, 3, 3), torch.ones(8, 64, 32, 32)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.conv2d(a, w, padding=1)
        times.append(time.perf_counter() - start)
    return (f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores, "
            f"probe {sorted(times)[2] * 1e3:.1f} ms (calm: ~3)")


class HWCView(nn.Module):
    """The network on N x 1 x H x (W C) arrays: each pixel's C values side by side, as Quantus gets them."""

    def __init__(self, net: nn.Module, channels: int) -> None:
        super().__init__()
        self.net, self.channels = net, channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, _, h, wc = z.shape
        return self.net(z.reshape(n, h, wc // self.channels, self.channels).permute(0, 3, 1, 2))


def to_hwc(x: torch.Tensor) -> np.ndarray:
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, 1, h, w * c).numpy().astype(np.float32)


class Case:
    """Images, their targets and maps on one network; the work of both sides for a number of steps."""

    def __init__(self, name: str, loaded, xs: torch.Tensor, seed: int = 0) -> None:
        from explorer.explain import explain_tensor
        from explorer.explain.base import get_method
        from explorer.explain.views import to_map

        self.name, self.loaded, self.xs = name, loaded, xs
        self.runner = loaded.runner("cpu")
        with torch.inference_mode():
            self.targets = [int(t) for t in self.runner(xs).argmax(dim=1)]
        sign = get_method("saliency").default_sign
        self.maps = [to_map(explain_tensor(loaded.model, x, "saliency", target=t).values, sign)
                     for x, t in zip(xs, self.targets)]
        self.seed = seed
        self.fmt = torch.channels_last if loaded.channels_last else torch.contiguous_format
        _, c, h, w = xs.shape
        self.channels, self.pixels = c, h * w
        self.x_hwc = to_hwc(xs)
        # Quantus's map: each pixel's value repeated over its channels (H x W C); where a map has ties, the
        # rank in our order instead (argsort(-a) would break the ties its own way)
        orders = self.orders()
        a = []
        self.ranked = 0
        for m, order in zip(self.maps, orders):
            flat = m.ravel()
            if np.unique(flat).size < flat.size:
                self.ranked += 1
                flat = np.empty(flat.size)
                flat[order] = np.arange(flat.size, 0, -1)
            a.append(np.repeat(flat, c).reshape(1, h, w * c))
        self.a_hwc = np.stack(a).astype(np.float64)
        self.quantus_model = HWCView(loaded.model, c).eval()
        self.quantus_runner = HWCView(self.runner, c).eval()

    def orders(self) -> list[np.ndarray]:
        from explorer.explain.metrics import ranking

        return [ranking(m, np.random.default_rng([self.seed, i])) for i, m in enumerate(self.maps)]

    def ours(self, steps: int) -> np.ndarray:
        from explorer.explain.metrics import CurveJob, baseline_image, perturbation_curves

        jobs = [CurveJob(x, order, baseline_image(x, "zero"), t, True)
                for x, order, t in zip(self.xs, self.orders(), self.targets)]
        return perturbation_curves(self.runner, jobs, steps, batch=32, device="cpu", memory_format=self.fmt)

    def quantus(self, steps: int, runner: bool = False) -> np.ndarray:
        import quantus

        metric = quantus.PixelFlipping(features_in_step=self.channels * self.pixels // steps, abs=False,
                                       normalise=False, perturb_baseline=0.0, disable_warnings=True,
                                       display_progressbar=False)
        curves = metric(model=self.quantus_runner if runner else self.quantus_model, x_batch=self.x_hwc,
                        y_batch=np.asarray(self.targets), a_batch=self.a_hwc, channel_first=True, softmax=True,
                        device="cpu", batch_size=64)
        return np.asarray(curves, dtype=np.float64)


def compare(case: Case, steps_list: list[int], repeats: int) -> list[bool]:
    from explorer.explain.metrics import area

    met = []
    n = len(case.xs)
    print(f"\n{case.name}: {n} image(s), {tuple(case.xs.shape[1:])}, targets {case.targets}; "
          f"maps given to Quantus as ranks (tied pixels): {case.ranked} of {n}")
    for steps in steps_list:
        if case.pixels % steps:
            raise SystemExit(f"{steps} steps do not divide {case.pixels} pixels: Quantus cannot take them")
        ours, theirs = case.ours(steps), case.quantus(steps)
        assert theirs.shape == (n, steps), theirs.shape
        diff = float(np.abs(ours[:, 1:] - theirs).max())
        scale = float(np.abs(ours).max())
        ours_auc = area(ours)
        ours_as_quantus = np.trapezoid(ours[:, 1:], dx=1, axis=1)
        quantus_auc = np.trapezoid(theirs, dx=1, axis=1)
        print(f"  {steps} steps ({case.pixels // steps} px each), baseline zero, {n * (steps + 1)} forward images "
              f"ours, {n * steps} Quantus")
        spread = float(np.ptp(ours, axis=1).max())
        print(f"    largest |ours - Quantus| over the curves: {diff:.2e} (largest probability {scale:.3g}, largest "
              f"fall or rise along a curve {spread:.2g}); within {TOLERANCE:g}: {'yes' if diff <= TOLERANCE else 'NO'}")
        print(f"    deletion AUC, ours (fraction 0..1, from the unperturbed image): mean {ours_auc.mean():.4f}  "
              f"per image {np.array2string(ours_auc, precision=4, max_line_width=200)}")
        print(f"    AUC as Quantus defines it (np.trapz(curve, dx=1), steps {1}..{steps}): Quantus "
              f"{quantus_auc.mean():.4f}, ours {ours_as_quantus.mean():.4f} "
              f"(largest difference {np.abs(quantus_auc - ours_as_quantus).max():.1e})")
        t = interleaved({"ours": lambda s=steps: case.ours(s), "quantus": lambda s=steps: case.quantus(s),
                         "quantus_runner": lambda s=steps: case.quantus(s, runner=True)}, repeats)
        ratio, ratio_runner = t["quantus"] / t["ours"], t["quantus_runner"] / t["ours"]
        ok = ratio >= TARGET_SPEEDUP
        met.append(ok)
        print(f"    seconds (median of {repeats} interleaved): ours {t['ours']:.3f}, Quantus on the model "
              f"{t['quantus']:.3f}, Quantus on our runner {t['quantus_runner']:.3f}")
        print(f"    speed-up, Quantus / ours: {ratio:.2f}x on the model, {ratio_runner:.2f}x on the same runner; "
              f"target >= {TARGET_SPEEDUP:g}x: {'met' if ok else 'NOT met'}  [{load()}]")
    return met


def part1(args) -> list[bool]:
    from explorer.infer import decode_image
    from explorer.lab.data import digits_samples
    from explorer.weights import get_weights, load_model

    print("== 1. deletion: ours (perturbation_curves) against quantus.PixelFlipping ==")
    digits = load_model(None, get_weights("mini_xception.digits").path, cache=False)
    xs = digits.inputs([image for image, _ in digits_samples(8)])
    met = compare(Case("mini_xception.digits", digits, xs), [16] if args.quick else [16, 32], args.repeats)
    xception = load_model("xception", "random")
    files = ["cat.jpg"] if args.quick else ["cat.jpg", "coffee.jpg"]
    decoded = [decode_image(ROOT / "assets" / "samples" / f) for f in files]
    xs = xception.inputs([d.image for d in decoded])
    met += compare(Case(f"xception (random weights) on {', '.join(files)}", xception, xs), [13],
                   max(1, args.repeats // 2))
    return met


def part2(args) -> None:
    from explorer.explain.base import get_method
    from explorer.explain.score_cli import format_scorecard
    from explorer.explain.scorecard import score
    from explorer.lab.data import digits_samples
    from explorer.weights import get_weights, load_model

    print("\n== 2. a whole scorecard: 8 digits, mini_xception.digits, default settings ==")
    loaded = load_model(None, get_weights("mini_xception.digits").path, cache=False)
    images = [image for image, _ in digits_samples(8)]
    print(f"[{load()}]")
    start, cpu = time.perf_counter(), time.process_time()
    card = score(images, loaded)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"seconds in all: {wall:.2f} (card.seconds {card.seconds:.2f}; CPU seconds of this process {cpu:.1f} on "
          f"{torch.get_num_threads()} threads); device {card.device}; "
          f"settings: steps {card.settings['steps']}, samples {card.settings['samples']}, batch "
          f"{card.settings['batch']}  [{load()}]")
    rows = {(r.method, r.metric): r.seconds for r in card.rows}
    accounted = sum(card.map_seconds.values()) + sum(rows.values())
    print(f"{'method':18s} {'in all':>8s} {'maps':>8s}" + "".join(f"{m[:12]:>13s}" for m in card.metrics))
    for method in card.methods:
        own = card.map_seconds.get(method, 0.0) + sum(rows.get((method, m), 0.0) for m in card.metrics)
        print(f"{get_method(method).title:18s} {own:8.2f} {card.map_seconds.get(method, 0.0):8.2f}"
              + "".join(f"{rows.get((method, m), 0.0):13.2f}" for m in card.metrics))
    print(f"{'all methods':18s} {accounted:8.2f} {sum(card.map_seconds.values()):8.2f}"
          + "".join(f"{sum(rows.get((x, m), 0.0) for x in card.methods):13.2f}" for m in card.metrics))
    print(f"outside the rows (targets, the random-order curves, setup): {card.seconds - accounted:.2f} s")
    slowest = sorted(rows.items(), key=lambda kv: -kv[1])[:5]
    print("slowest cells: " + ", ".join(f"{get_method(k[0]).title} x {k[1]} {v:.2f} s" for k, v in slowest))
    print()
    print(format_scorecard(card))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps settings, one Xception image")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5, quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--part", type=int, choices=(1, 2), default=None, help="only part 1 (deletion) or 2 (card)")
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    import quantus

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; quantus {quantus.__version__}; {load()}")
    if args.part in (None, 1):
        met = part1(args)
        print(f"\nours >= {TARGET_SPEEDUP:g}x faster than quantus.PixelFlipping on the model: "
              f"{'met' if all(met) else 'NOT met'} in {sum(met)} of {len(met)} settings")
    if args.part in (None, 2):
        part2(args)
    print(f"\n{load()}")


if __name__ == "__main__":
    main()
