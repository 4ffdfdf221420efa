"""What a spec needs of the machine, known before anything is allocated, and the check against the limits.

:func:`needs` reads a spec's layers (no torch) and returns a :class:`Needs`:
the weights' bytes, the activation memory of one pass at a batch and dtype,
and the layer count. :func:`check_budget` refuses a request over
:mod:`explorer.resources`'s limits with a :class:`~explorer.resources.BudgetError`
that names the limit and how to raise it. Every path that allocates for a spec
(building, classifying, explaining, profiling, training) calls it first.

Activation memory:

* **inference** (``gradients=False``): the peak of tensors alive at once in
  one eval forward, as :class:`explorer.build.SpecNet` frees each tensor after
  its last reader (:func:`peak_activation_bytes`);
* **gradients** (explanations, training): autograd keeps every layer's output
  for the backward pass, and the backward holds gradients of about the
  largest live set at once: the sum of all outputs plus the forward peak
  (:func:`gradient_activation_bytes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from explorer import resources
from explorer.spec.layers import INPUT, Layer, free_after, param_count, spec_layers
from explorer.spec.schema import Spec

WEIGHT_BYTES = 4  # the networks are built in fp32


def peak_activation_bytes(layers: Sequence[Layer], batch: int = 1, dtype_bytes: int = 4) -> int:
    """Peak bytes of tensors alive at once in one eval forward, input included.

    Walks the layers in execution order: each output is allocated while its
    inputs are still alive, and a tensor is freed after its last reader, as
    the built network's forward does. The input stays alive throughout: the
    caller holds it for the whole call.
    """
    if not layers:
        return 0
    live = {INPUT: math.prod(layers[0].in_shape) * batch * dtype_bytes}
    current = peak = live[INPUT]
    frees = free_after(layers, training=False)
    for layer, free in zip(layers, frees):
        if layer.train_only:
            continue
        live[layer.name] = math.prod(layer.out_shape) * batch * dtype_bytes
        current += live[layer.name]
        peak = max(peak, current)
        for name in free:
            if name != INPUT and name in live:
                current -= live.pop(name)
    return peak


def gradient_activation_bytes(layers: Sequence[Layer], batch: int = 1, dtype_bytes: int = 4,
                              training: bool = False) -> int:
    """Bytes of one forward and backward pass: every output kept for the backward (the input too),
    plus about the forward's peak for the gradients in flight. ``training`` counts the train-only
    layers (Inception's auxiliary head) too."""
    if not layers:
        return 0
    kept = math.prod(layers[0].in_shape) + sum(
        math.prod(layer.out_shape) for layer in layers if training or not layer.train_only)
    return kept * batch * dtype_bytes + peak_activation_bytes(layers, batch, dtype_bytes)


@dataclass(frozen=True)
class Needs:
    """What one pass of a spec needs: weight bytes (fp32), activation bytes at the batch and dtype
    (with gradients when asked), and the layer count."""

    weight_bytes: int
    activation_bytes: int
    layers: int
    batch: int = 1
    gradients: bool = False


def weight_bytes(spec: Spec, layers: Sequence[Layer] | None = None) -> int:
    """Bytes the spec's parameters take in fp32, from the spec alone (nothing allocated)."""
    layers = spec_layers(spec) if layers is None else layers
    return WEIGHT_BYTES * sum(param_count(layer) for layer in layers)


def needs(spec: Spec, *, batch: int = 1, dtype_bytes: int = 4, gradients: bool = False,
          training: bool = False, layers: Sequence[Layer] | None = None) -> Needs:
    """What ``spec`` needs for one pass at ``batch``; ``gradients`` for explanations and training."""
    layers = spec_layers(spec) if layers is None else layers
    if gradients or training:
        activations = gradient_activation_bytes(layers, batch, dtype_bytes, training=training)
    else:
        activations = peak_activation_bytes(layers, batch, dtype_bytes)
    return Needs(weight_bytes(spec, layers), activations, len(layers), batch, gradients or training)


def check_budget(spec: Spec, *, batch: int = 1, dtype_bytes: int = 4, gradients: bool = False,
                 training: bool = False, what: str | None = None, lower: str | None = None,
                 layers: Sequence[Layer] | None = None) -> Needs:
    """Refuse (:class:`~explorer.resources.BudgetError`) a pass of ``spec`` over the limits on layers,
    weights or activations; return its :class:`Needs` otherwise. ``what`` names the work in the
    message (default: the network and its batch); ``lower`` what to lower when the activations are too
    much (``the batch size (batch_size)``)."""
    layers = spec_layers(spec) if layers is None else layers
    need = needs(spec, batch=batch, dtype_bytes=dtype_bytes, gradients=gradients, training=training,
                 layers=layers)
    name = what or f"'{spec.name}'"
    resources.check("max_layers", name, need.layers)
    resources.check("max_weight_bytes", f"the weights of {name}", need.weight_bytes)
    at = f"at batch {batch}" + (", with gradients" if need.gradients else "")
    resources.check("max_activation_bytes", f"{name} {at}", need.activation_bytes, lower)
    return need
