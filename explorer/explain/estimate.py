"""How long an explanation will take, said before it starts: passes counted x a measured time per pass.

The count is exact (each method knows how many images it sends through the
network, see :meth:`~explorer.explain.base.Method.passes`); the time per
forward pass is measured on the device, e.g. the classify latency the page
has just shown, and refined from the explanations that finished
(:func:`seconds_per_unit`). No seconds are written into the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from explorer.explain.base import Method, get_method

# The backward pass of an attribution costs about twice its forward pass (the activations' gradients
# plus the bookkeeping that keeps them), so one image through forward and backward counts 3 forward
# passes. Measured here against the classify latency: 2.0-2.7x at batches of 4-8, 3.8x at batch 1,
# for both Xception and Inception V3 (frozen weights: no weight gradients). A refinement from a
# finished run replaces the ratio with the real time (seconds_per_unit).
BACKWARD_COST = 2.0


@dataclass(frozen=True)
class Passes:
    """Images through the network: ``forward`` in all, ``backward`` of them also back."""

    forward: int
    backward: int

    @property
    def units(self) -> float:
        """Cost in forward passes of one image."""
        return self.forward + BACKWARD_COST * self.backward

    def __add__(self, other: Passes) -> Passes:
        return Passes(self.forward + other.forward, self.backward + other.backward)


def count_passes(method: str | Method, x: torch.Tensor, *, target: int | str | None = None,
                 **options: Any) -> Passes:
    """The images ``method`` will send through the network for input ``x`` (C x H x W or 1 x C x H x W)
    with ``options`` (validated, an :class:`~explorer.explain.errors.ExplainError` if wrong).

    Methods that never run the clean input (IntegratedGradients, SmoothGrad) add one forward pass to
    find the predicted class when ``target`` is None, as :func:`~explorer.explain.core.explain_tensor` does.
    """
    m = get_method(method)
    inputs = x if x.dim() == 4 else x.unsqueeze(0)
    opts = m.resolve(dict(options), inputs)
    forward, backward = m.passes(opts, inputs)
    extra = 1 if target is None and not m.clean_first_call else 0
    return Passes(forward + extra, backward)


def estimate_seconds(passes: Passes, seconds_per_forward: float) -> float:
    """Seconds for ``passes`` at ``seconds_per_forward`` (one image, forward only, measured on the device)."""
    return passes.units * max(0.0, seconds_per_forward)


def seconds_per_unit(seconds: float, passes: Passes) -> float | None:
    """From a finished explanation: the measured seconds per forward-pass unit (None if it counted none)."""
    return seconds / passes.units if passes.units > 0 and seconds > 0 else None
