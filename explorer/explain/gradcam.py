"""Grad-CAM (Selvaraju et al., 2017): a layer's activations weighted by their average gradient,
upsampled to the input's size."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam

from explorer.explain.base import Job, Method, register
from explorer.explain.options import INTERPOLATIONS, Option


@register
class GradCamMethod(Method):
    """Captum's ``LayerGradCam`` at a layer picked by module path (default: the last spatial map),
    upsampled with ``LayerAttribution.interpolate`` (the layer's map is e.g. 10 x 10 at Xception's exit).

    ``relu`` (off by default, so the signed view shows what speaks against
    the class too) applies the paper's final ReLU.
    """

    name = "gradcam"
    title = "Grad-CAM"
    captum = "LayerGradCam"
    paper = "Selvaraju et al., 2017, arXiv:1610.02391"
    aliases = ("grad-cam", "layer-gradcam", "layergradcam")
    options = (
        Option("relu", bool, False, "keep only the positive part (the paper's ReLU)"),
        Option("interpolate", str, "bilinear", "upsampling to the input size", choices=INTERPOLATIONS),
    )
    uses_layer = True
    default_sign = "positive"

    def attribute(self, job: Job) -> torch.Tensor:
        cam = LayerGradCam(job.forward, job.layer).attribute(
            job.inputs, target=job.target, relu_attributions=job.options["relu"])
        return upsample(cam, job.inputs, job.options["interpolate"])


def upsample(cam: torch.Tensor, inputs: torch.Tensor, mode: str) -> torch.Tensor:
    """A layer-resolution map (1 x 1 x h x w) at the input's height and width."""
    size = tuple(inputs.shape[-2:])
    if tuple(cam.shape[-2:]) == size:
        return cam
    return LayerAttribution.interpolate(cam, size, interpolate_mode=mode)
