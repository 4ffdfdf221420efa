"""Leaf modules that torch lacks: the named join points and small ops of a spec network."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Add(nn.Module):
    """Sum of two tensors (a residual join); never inplace, so hooks see both inputs."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class Concat(nn.Module):
    """Concatenation along channels (an Inception join)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, 1)


class GlobalAvgPool(nn.Module):
    """Average each channel over space and flatten to (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class InputAffine(nn.Module):
    """Per-channel ``x * scale + shift``; constants, not learnable, not in the state dict."""

    def __init__(self, scale: Sequence[float], shift: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class Container(nn.Module):
    """A node of the module tree (``entry``, ``entry.block2``) that only holds children.

    The network's forward runs the leaves in the spec's order, so a container
    is never called itself.
    """

    def forward(self, *args: object) -> None:  # pragma: no cover - never called
        raise RuntimeError("a spec container module is not callable: run the network instead")
