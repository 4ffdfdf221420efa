"""Saliency (Simonyan et al., 2014): the gradient of the class score with respect to the input pixels."""

from __future__ import annotations

import torch
from captum.attr import Saliency

from explorer.explain.base import Job, Method, register
from explorer.explain.options import Option


@register
class SaliencyMethod(Method):
    """Captum's ``Saliency``; ``abs`` (default, as in the paper and Captum) takes the gradient's magnitude."""

    name = "saliency"
    title = "Saliency"
    captum = "Saliency"
    paper = "Simonyan, Vedaldi & Zisserman, 2014, arXiv:1312.6034"
    aliases = ("gradient", "gradients", "vanilla-gradient")
    options = (Option("abs", bool, True, "absolute value of the gradient (Captum's default)"),)
    default_sign = "absolute"
    hook_free = True

    def attribute(self, job: Job) -> torch.Tensor:
        return Saliency(job.forward).attribute(job.inputs, target=job.target, abs=job.options["abs"])
