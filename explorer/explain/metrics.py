"""The measures behind the scorecard, each a small function on maps, tensors and a network.

* :func:`perturbation_curves`: the deletion / insertion curves (Petsiuk et al., 2018, "RISE"): the
  target class's probability as the most-attributed pixels are replaced by a baseline (deletion) or
  put back into the baseline (insertion), ``steps`` equal steps; all the perturbed images of a call
  go through the network in batches (no Python loop over steps per image).
* :func:`gini`: the Gini index of |attribution| (Chalasani et al., 2020), the sparseness measure
  Quantus uses.
* :func:`rank_correlation`: Spearman's rank correlation of two maps' magnitudes (Adebayo et al., 2018).
* :func:`cascade_stages` and :func:`randomize`: the flows of a spec network from the top down, and
  their re-initialization with each layer's own initialization from a private generator (the global
  random state is never touched, so two sessions scoring at once get their own numbers).

Captum's own ``infidelity`` and ``sensitivity_max`` are used as they are (see
:mod:`explorer.explain.scorecard`); only their noise comes from here (:func:`gaussian_perturb`,
:func:`uniform_perturb`), seeded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from explorer.explain.errors import ExplainError

BASELINES: tuple[str, ...] = ("blur", "mean", "zero")
# The default for both curves: the all-zero input tensor (the training set's mean colour after
# normalization), which every network here reads as "nothing" (the shipped digits network gives the
# true class 0.2 % on it). RISE starts insertion from a blurred copy instead; a blur mild enough to keep
# colours keeps small objects readable: the digits network still gives 96 % at sigma = side / 15 and
# 48 % at side / 10, so insertion would start near its end. ``blur`` and ``mean`` are options.
DEFAULT_BASELINE = "zero"
BLUR_SIGMA_FRACTION = 1 / 10  # a tenth of the side: shapes go, colours stay (RISE: 5 px at 224 px)


def check_baseline(name: str) -> str:
    """``blur``, ``mean`` or ``zero`` (an :class:`ExplainError` otherwise)."""
    key = str(name).strip().lower()
    if key not in BASELINES:
        raise ExplainError(f"unknown baseline '{name}': choose from {', '.join(BASELINES)}")
    return key


def baseline_image(x: torch.Tensor, kind: str) -> torch.Tensor:
    """What replaces the pixels of ``x`` (C x H x W, preprocessed): ``zero`` (the all-zero tensor),
    ``mean`` (the image's own mean colour) or ``blur`` (a Gaussian blur, sigma = side / 10)."""
    kind = check_baseline(kind)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
    from torchvision.transforms.functional import gaussian_blur

    side = max(x.shape[-2:])
    sigma = max(0.5, side * BLUR_SIGMA_FRACTION)
    size = 2 * math.ceil(3 * sigma) + 1
    limit = 2 * (min(x.shape[-2:]) - 1) + 1  # reflect padding needs the kernel's half under the side
    size = max(1, min(size, limit if limit % 2 else limit - 1))
    return gaussian_blur(x.unsqueeze(0), [size, size], [sigma, sigma])[0]


def ranking(relevance: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, most relevant first; ties (a flat map, Grad-CAM's zeros) in a seeded random order."""
    flat = np.asarray(relevance, dtype=np.float64).ravel()
    if not np.isfinite(flat).all():
        raise ExplainError("the map is not finite (NaN or infinity): it gives no order")
    return np.lexsort((generator.random(flat.size), -flat))


def random_ranking(pixels: int, generator: np.random.Generator) -> np.ndarray:
    """A random order of ``pixels`` pixels: the chance level of deletion and insertion."""
    return generator.permutation(pixels)


@dataclass(frozen=True)
class CurveJob:
    """One curve to compute: the image, its pixel order, the baseline image, the class, deletion or not."""

    x: torch.Tensor          # C x H x W, preprocessed
    order: np.ndarray        # flat pixel indices, most relevant first
    baseline: torch.Tensor   # C x H x W
    target: int
    deletion: bool


def _step_image(job: CurveJob, counts: np.ndarray, k: int) -> torch.Tensor:
    c, h, w = job.x.shape
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[torch.from_numpy(job.order[:counts[k]].astype(np.int64))] = True
    mask = mask.view(1, h, w)
    # deletion: the image with its top pixels replaced; insertion: the baseline with them put back
    return torch.where(mask, job.baseline, job.x) if job.deletion else torch.where(mask, job.x, job.baseline)


def perturbation_curves(forward: Callable[[torch.Tensor], torch.Tensor], jobs: Sequence[CurveJob], steps: int, *,
                        batch: int = 32, device: torch.device | str = "cpu",
                        memory_format: torch.memory_format = torch.contiguous_format,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The target probability after 0, 1/steps, ..., all of the pixels were removed (deletion) or inserted
    (insertion): one row of ``steps + 1`` values per job. ``forward`` maps a batch to logits; the
    perturbed images of all jobs go through it ``batch`` at a time; ``progress(images)`` after each batch.
    """
    if steps < 1:
        raise ExplainError(f"steps must be at least 1, got {steps}")
    if not jobs:
        return np.zeros((0, steps + 1))
    pixels = jobs[0].x.shape[-2] * jobs[0].x.shape[-1]
    counts = step_counts(pixels, steps)
    items = [(j, k) for j in range(len(jobs)) for k in range(steps + 1)]
    out = np.zeros((len(jobs), steps + 1))
    for start in range(0, len(items), max(1, batch)):
        chunk = items[start:start + batch]
        images = torch.stack([_step_image(jobs[j], counts, k) for j, k in chunk])
        images = images.to(device=device, memory_format=memory_format)
        with torch.inference_mode():
            probabilities = torch.softmax(forward(images).float(), dim=1).cpu().numpy()
        for row, (j, k) in enumerate(chunk):
            out[j, k] = probabilities[row, jobs[j].target]
        if progress is not None:
            progress(len(chunk))
    return out


def step_counts(pixels: int, steps: int) -> np.ndarray:
    """How many pixels are removed (or inserted) after each of the ``steps`` steps: 0 first, all last, the
    steps as even as whole pixels allow (51 or 52 of the 1,024 pixels per step at 32 px and 20 steps)."""
    return np.round(np.linspace(0, pixels, steps + 1)).astype(np.int64)


def area(curve: np.ndarray, pixels: int | None = None) -> np.ndarray:
    """The area under each curve (the last axis) over the fraction of pixels 0..1, by trapezoids at the
    fractions the steps really reached (``pixels``: the image's pixel count; None: even steps)."""
    curve = np.asarray(curve, dtype=np.float64)
    steps = curve.shape[-1] - 1
    if pixels is None:
        return np.trapezoid(curve, dx=1.0 / steps, axis=-1)
    return np.trapezoid(curve, x=step_counts(pixels, steps) / pixels, axis=-1)


def gini(values: np.ndarray) -> float:
    """The Gini index of |values|: 0 when every value is equal, (n - 1) / n when one holds everything.
    NaN for an all-zero map."""
    a = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())
    n, total = a.size, a.sum()
    if n == 0 or total == 0 or not np.isfinite(total):
        return float("nan")
    return float(((2 * np.arange(1, n + 1) - n - 1) @ a) / (n * total))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of |a| and |b| (maps of one image). A constant map shares no ranking
    with a varying one: 0. NaN when both are constant."""
    from scipy.stats import spearmanr

    x = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    y = np.abs(np.asarray(b, dtype=np.float64)).ravel()
    flat_x, flat_y = np.ptp(x) == 0, np.ptp(y) == 0
    if flat_x and flat_y:
        return float("nan")
    if flat_x or flat_y:
        return 0.0
    return float(spearmanr(x, y).statistic)


@dataclass(frozen=True)
class Stage:
    """One step of the cascade: the flow re-initialized at this step, and every layer re-initialized so far."""

    flow: str
    label: str                  # "exit flow", "+ middle flow", ...
    layers: tuple[str, ...]     # cumulative: this flow's layers and those of the flows above it


def cascade_stages(model: nn.Module) -> list[Stage]:
    """A spec network's flows from the top down (exit, middle, entry for Xception; head, mixed_7, mixed_6,
    mixed_5, stem for Inception V3), each with the layers that hold parameters; train-only flows (the
    auxiliary head) are left out."""
    layers = getattr(model, "layers", None)
    if not layers:
        raise ExplainError("model randomization by flow needs a network built from a spec (its layers and flows)")
    flows: dict[str, list[str]] = {}
    for layer in layers:
        if layer.train_only:
            continue
        module = model.get_submodule(layer.name)
        if any(True for _ in module.parameters(recurse=False)) or _has_stats(module):
            flows.setdefault(layer.flow or "network", []).append(layer.name)
    stages: list[Stage] = []
    done: list[str] = []
    for i, flow in enumerate(reversed(list(flows))):
        done += flows[flow]
        label = f"{flow} flow" if flow in ("entry", "middle", "exit") else flow
        stages.append(Stage(flow, label if i == 0 else f"+ {label}", tuple(done)))
    return stages


def _has_stats(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def randomize(model: nn.Module, layer_names: Sequence[str], generator: torch.Generator) -> None:
    """Re-initialize the named layers of ``model`` in place, as their modules' ``reset_parameters`` would
    (convs and linears: Kaiming-uniform weights and uniform biases; batch norms: identity with fresh
    statistics), drawing from ``generator``. Only for a private copy."""
    for name in layer_names:
        module = model.get_submodule(name)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif _has_stats(module):
            module.reset_parameters()  # weight 1, bias 0, running mean 0, running variance 1: no randomness
        else:
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, 0.0, float(p.detach().std()) if p.numel() > 1 else 1.0, generator=generator)


def gaussian_perturb(generator: torch.Generator, sigma: float) -> Callable:
    """Captum ``infidelity``'s ``perturb_func``: Gaussian noise I (std ``sigma``), returning (I, x - I)."""

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device) * sigma
        return noise, inputs - noise

    return perturb


def uniform_perturb(generator: torch.Generator) -> Callable:
    """Captum ``sensitivity_max``'s ``perturb_func``: uniform noise in [-radius, radius], seeded."""

    def perturb(inputs: torch.Tensor, perturb_radius: float) -> torch.Tensor:
        noise = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
        return inputs + (2 * noise - 1) * perturb_radius

    return perturb
