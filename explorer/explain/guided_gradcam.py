"""Guided Grad-CAM (Selvaraju et al., 2017): Guided Backprop times the upsampled Grad-CAM map."""

from __future__ import annotations

import torch
from captum.attr import GuidedGradCam

from explorer.explain.base import Job, Method, register
from explorer.explain.guided_backprop import note_unguided
from explorer.explain.options import INTERPOLATIONS, Option


@register
class GuidedGradCamMethod(Method):
    """Captum's ``GuidedGradCam`` at a layer picked by module path; hooks ReLUs, so it runs on a replica."""

    name = "guided-gradcam"
    title = "Guided Grad-CAM"
    captum = "GuidedGradCam"
    paper = "Selvaraju et al., 2017, arXiv:1610.02391"
    aliases = ("guided-grad-cam", "guidedgradcam")
    options = (
        Option("interpolate", str, "bilinear", "upsampling of the Grad-CAM map", choices=INTERPOLATIONS),
    )
    uses_layer = True
    default_sign = "absolute"

    def attribute(self, job: Job) -> torch.Tensor:
        note_unguided(job)
        return GuidedGradCam(job.forward, job.layer).attribute(
            job.inputs, target=job.target, interpolate_mode=job.options["interpolate"])
