"""Guided Backpropagation (Springenberg et al., 2015): gradients with negative signals stopped at every ReLU."""

from __future__ import annotations

import warnings

import torch
from captum.attr import GuidedBackprop

from explorer.explain.base import Job, Method, register

# Captum warns on every call that it hooks the ReLUs; ours removes them (and checks), so the warning is noise.
# A filter set once: warnings.catch_warnings() per call is not thread-safe.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)


@register
class GuidedBackpropMethod(Method):
    """Captum's ``GuidedBackprop``: it hooks every ``nn.ReLU`` module, so it runs on a private replica.

    The spec-built networks use one ``nn.ReLU`` module per activation (never
    functional), so every ReLU is guided, Inception's included. ELU
    activations (the ``mid_activation=elu`` ablation) are not guided: a note says so.
    """

    name = "guided-backprop"
    title = "Guided Backprop"
    captum = "GuidedBackprop"
    paper = "Springenberg et al., 2015, arXiv:1412.6806"
    aliases = ("guided-backpropagation", "guidedbackprop", "gbp")
    default_sign = "absolute"

    def attribute(self, job: Job) -> torch.Tensor:
        note_unguided(job)
        return GuidedBackprop(job.forward).attribute(job.inputs, target=job.target)


def note_unguided(job: Job) -> None:
    """Add a note when the network has activations that are not ``nn.ReLU`` (those are not guided)."""
    other = sorted({type(m).__name__ for m in job.model.modules()
                    if isinstance(m, (torch.nn.ELU, torch.nn.GELU, torch.nn.SiLU, torch.nn.LeakyReLU))})
    if other:
        job.notes.append(f"only nn.ReLU activations are guided; {', '.join(other)} pass gradients unchanged")
