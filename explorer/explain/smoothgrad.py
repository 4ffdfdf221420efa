"""SmoothGrad (Smilkov et al., 2017): saliency averaged over noisy copies of the input (Captum's NoiseTunnel)."""

from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency

from explorer.explain.base import Job, Method, register
from explorer.explain.options import Option
from explorer.explain.progress import batch_count
from explorer.spec.arguments import MAX_SEED

NOISE_FRACTION = 0.15  # the paper's noise level: 15 % of the input's value range


class SeededNoiseTunnel(NoiseTunnel):
    """NoiseTunnel drawing its noise from a private generator.

    Captum draws with ``torch.normal`` on the global RNG, so two sessions
    explaining at once would take each other's random numbers and neither
    result could be reproduced; a seeded generator per call fixes both.
    """

    def __init__(self, attribution_method, generator: torch.Generator) -> None:
        super().__init__(attribution_method)
        self.generator = generator

    def _add_noise_to_input(self, input: torch.Tensor, stdev: float, nt_samples_partition: int) -> torch.Tensor:
        shape = (input.shape[0] * nt_samples_partition,) + tuple(input.shape[1:])
        noise = torch.randn(shape, generator=self.generator, device=input.device, dtype=input.dtype) * stdev
        return input.repeat_interleave(nt_samples_partition, dim=0) + noise


@register
class SmoothGradMethod(Method):
    """NoiseTunnel(Saliency) with ``nt_type="smoothgrad"``: the mean gradient over ``nt_samples`` noisy inputs."""

    name = "smoothgrad"
    title = "SmoothGrad"
    captum = "NoiseTunnel(Saliency)"
    paper = "Smilkov et al., 2017, arXiv:1706.03825"
    aliases = ("smooth-grad", "noise-tunnel")
    options = (
        Option("nt_samples", int, 16, "noisy copies of the input", minimum=1, maximum=4096),
        Option("stdevs", float, None, "noise standard deviation in input units (auto: 0.15 x the input's "
                                      "value range, as in the paper)", minimum=0.0),
        Option("nt_samples_batch_size", int, 4, "noisy copies per forward/backward pass", minimum=1, maximum=4096),
        Option("abs", bool, False, "average the gradients' magnitudes instead of the gradients"),
        Option("seed", int, 0, "seed of the noise (same seed, same map)", minimum=0, maximum=MAX_SEED),
    )
    reports_progress = True
    clean_first_call = False
    default_sign = "absolute"
    hook_free = True

    def resolve(self, given: dict, inputs: torch.Tensor) -> dict:
        options = super().resolve(given, inputs)
        if options["stdevs"] is None:
            spread = float(inputs.max() - inputs.min())
            options["stdevs"] = NOISE_FRACTION * spread if spread > 0 else NOISE_FRACTION
        options["stdevs"] = float(options["stdevs"])  # NoiseTunnel asserts a float, not an int
        return options

    def expected_calls(self, options: dict, inputs: torch.Tensor) -> int:
        return batch_count(options["nt_samples"], min(options["nt_samples"], options["nt_samples_batch_size"]))

    def passes(self, options: dict, inputs: torch.Tensor) -> tuple[int, int]:
        return options["nt_samples"], options["nt_samples"]

    def attribute(self, job: Job) -> torch.Tensor:
        o = job.options
        generator = torch.Generator(device=job.inputs.device).manual_seed(o["seed"])
        tunnel = SeededNoiseTunnel(Saliency(job.forward), generator)
        return tunnel.attribute(job.inputs, nt_type="smoothgrad", nt_samples=o["nt_samples"],
                                nt_samples_batch_size=o["nt_samples_batch_size"], stdevs=o["stdevs"],
                                target=job.target, abs=o["abs"])
