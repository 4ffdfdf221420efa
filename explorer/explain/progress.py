"""Progress of the long methods, counted in forward passes.

IntegratedGradients, SmoothGrad and Occlusion run the network in a known
number of batches (internal batch, samples batch, perturbations per eval).
:class:`CountingForward` is the ``forward_func`` handed to Captum: it runs
the model, counts the call and reports ``calls / expected`` to a callback,
so a CLI bar or a Streamlit bar moves with no change to Captum's algorithm
and no extra work. A callback may raise to cancel the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

ProgressFn = Callable[[float], None]


class CountingForward(nn.Module):
    """``forward_func`` for Captum: the model's logits, with progress and the clean input's logits.

    A module holding the model as its child, so the methods that hook the
    model's ReLUs (GuidedBackprop, GuidedGradCam) reach them through it.

    ``first`` keeps the detached logits of the first call when that call is
    on the unperturbed input (Saliency, Grad-CAM, guided methods, Occlusion's
    initial evaluation), so the prediction needs no extra forward pass. With
    ``pick_predicted``, the first call's top class becomes the target: every
    call returns only that logit (one column, so Captum's target is 0) and
    ``picked`` says which class it was; the default target costs no extra pass.
    """

    def __init__(self, model: nn.Module, expected: int = 1, progress: ProgressFn | None = None, *,
                 pick_predicted: bool = False) -> None:
        super().__init__()
        self.model = model
        self.expected = max(1, int(expected))
        self.progress = progress
        self.pick_predicted = pick_predicted
        self.calls = 0
        self.first: torch.Tensor | None = None
        self.picked: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.calls == 0:
            self.first = out[:1].detach()
            if self.pick_predicted:
                self.picked = int(self.first[0].argmax())
        self.calls += 1
        if self.progress is not None:
            # the last call is followed by its backward pass and Captum's reduction: 1.0 comes from the caller
            self.progress(min(self.calls / self.expected, 0.99))
        if self.pick_predicted:
            return out[:, self.picked:self.picked + 1]
        return out


def batch_count(total: int, batch: int) -> int:
    """How many batches of at most ``batch`` items ``total`` items take."""
    return max(1, math.ceil(max(0, total) / max(1, batch)))


def tqdm_progress(desc: str, *, disable: bool = False) -> tuple[ProgressFn, Callable[[], None]]:
    """A progress callback drawing a tqdm bar on stderr (made at the first report, so errors found
    before the run print cleanly), and the function that closes it."""
    bars: list = []

    def update(fraction: float) -> None:
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=100, desc=desc, unit="%", disable=disable, leave=False,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"))
        bar = bars[0]
        bar.update(max(0, round(100 * fraction) - bar.n))

    def close() -> None:
        if bars:
            bars.pop().close()

    return update, close
