"""The leaf modules of a spec network: the modules torch lacks, and :data:`FACTORIES`, one per layer kind.

A factory takes a layer and returns a fresh module for it. Everything else
about a kind is its entry in :data:`explorer.spec.kinds.KINDS`, keyed by the
same :class:`Kind`; this is the one fact that needs torch. Activations are
their own ``nn.ReLU`` modules, never inplace, so Captum's hooks see every one.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from explorer.spec import Kind, Layer


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


# -- the factories --------------------------------------------------------------------------------------


def _conv2d(layer: Layer) -> nn.Conv2d:
    """Any convolution: regular, depthwise, pointwise or grouped (the groups say which)."""
    cfg = layer.config
    return nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel"], cfg["stride"], cfg["padding"],
                     groups=cfg["groups"], bias=cfg["bias"])


def _batch_norm(layer: Layer) -> nn.BatchNorm2d:
    """A batch norm over the layer's channels."""
    return nn.BatchNorm2d(layer.config["channels"], eps=layer.config["eps"])


def _activation(layer: Layer) -> nn.Module:
    """An ``nn.ELU`` or ``nn.ReLU``, never inplace."""
    return nn.ELU() if layer.config["fn"] == "elu" else nn.ReLU()


def _pool(layer: Layer) -> nn.Module:
    """A max or average pool, or a global average pool that flattens."""
    cfg = layer.config
    if cfg["mode"] == "global_avg":
        return GlobalAvgPool()
    cls = nn.MaxPool2d if cfg["mode"] == "max" else nn.AvgPool2d
    return cls(cfg["kernel"], cfg["stride"], cfg["padding"])


def _add(layer: Layer) -> Add:
    """A residual join."""
    return Add()


def _concat(layer: Layer) -> Concat:
    """An Inception join."""
    return Concat()


def _linear(layer: Layer) -> nn.Linear:
    """A fully connected layer."""
    cfg = layer.config
    return nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg["bias"])


def _dropout(layer: Layer) -> nn.Dropout:
    """Dropout (the identity in eval)."""
    return nn.Dropout(layer.config["p"])


def _input_affine(layer: Layer) -> InputAffine:
    """The constant per-channel scale and shift of the input."""
    return InputAffine(layer.config["scale"], layer.config["shift"])


FACTORIES: Mapping[Kind, Callable[[Layer], nn.Module]] = MappingProxyType({
    Kind.CONV: _conv2d, Kind.DEPTHWISE: _conv2d, Kind.POINTWISE: _conv2d, Kind.GROUPED_CONV: _conv2d,
    Kind.BATCHNORM: _batch_norm, Kind.ACTIVATION: _activation, Kind.POOL: _pool, Kind.ADD: _add, Kind.CONCAT: _concat,
    Kind.LINEAR: _linear, Kind.DROPOUT: _dropout, Kind.AFFINE: _input_affine,
})
