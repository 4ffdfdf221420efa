"""Occlusion (Zeiler & Fergus, 2014): how much the class score drops when a patch is covered."""

from __future__ import annotations

import math

import torch
from captum.attr import Occlusion

from explorer.explain.base import Job, Method, register
from explorer.explain.errors import ExplainError
from explorer.explain.options import Option, parse_baseline
from explorer.explain.progress import batch_count

WINDOW_FRACTION = 0.1  # default patch: a tenth of the input's side


@register
class OcclusionMethod(Method):
    """Captum's ``Occlusion`` with a square patch over all channels, slid with a stride.

    Defaults: a patch a tenth of the input's side (30 px at 299), stride half
    the patch; ``perturbations_per_eval`` patches per forward pass. Progress
    moves once per forward pass.
    """

    name = "occlusion"
    title = "Occlusion"
    captum = "Occlusion"
    paper = "Zeiler & Fergus, 2014, arXiv:1311.2901"
    aliases = ("occlude",)
    options = (
        Option("window", int, None, "patch side in pixels (auto: a tenth of the input's side)", minimum=1),
        Option("stride", int, None, "step between patches in pixels (auto: half the window)", minimum=1),
        Option("baseline", parse_baseline, "zero", "what covers the patch: zero (the mean colour after "
                                                   "normalization), black, white, or a number"),
        Option("perturbations_per_eval", int, 16, "patches per forward pass", minimum=1, maximum=4096),
    )
    reports_progress = True
    default_sign = "signed"
    hook_free = True

    def resolve(self, given: dict, inputs: torch.Tensor) -> dict:
        options = super().resolve(given, inputs)
        side = min(inputs.shape[-2:])
        if options["window"] is None:
            options["window"] = max(1, round(WINDOW_FRACTION * side))
        if options["window"] > side:
            raise ExplainError(f"option 'window' of occlusion: {options['window']} px is larger than the "
                               f"input ({side} px)")
        if options["stride"] is None:
            options["stride"] = max(1, options["window"] // 2)
        if options["stride"] > options["window"]:
            raise ExplainError(f"option 'stride' of occlusion: {options['stride']} is larger than the window "
                               f"({options['window']}): some pixels would never be covered")
        return options

    def positions(self, options: dict, inputs: torch.Tensor) -> int:
        """How many patch positions Captum visits (its rule: ceil((size - window) / stride) + 1 per axis)."""
        w, s = options["window"], options["stride"]
        return math.prod(math.ceil((n - w) / s) + 1 for n in inputs.shape[-2:])

    def expected_calls(self, options: dict, inputs: torch.Tensor) -> int:
        return 1 + batch_count(self.positions(options, inputs), options["perturbations_per_eval"])

    def passes(self, options: dict, inputs: torch.Tensor) -> tuple[int, int]:
        return 1 + self.positions(options, inputs), 0  # the clean input, then one image per patch

    def attribute(self, job: Job) -> torch.Tensor:
        o = job.options
        channels = job.inputs.shape[1]
        return Occlusion(job.forward).attribute(
            job.inputs, sliding_window_shapes=(channels, o["window"], o["window"]),
            strides=(channels, o["stride"], o["stride"]), baselines=job.baseline(o["baseline"]),
            target=job.target, perturbations_per_eval=o["perturbations_per_eval"])
