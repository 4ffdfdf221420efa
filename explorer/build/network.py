"""Spec → ``nn.Module``: one leaf module per layer, run in the spec's order.

The module tree mirrors the layer names (``entry.block2.sep1.depthwise`` is
``model.entry.block2.sep1.depthwise``), so a layer's name is its module path
everywhere: in the cost table, the graph, the state dict and Captum's layer
picker. The forward pass is a straight walk over the layers that frees each
intermediate tensor after its last reader, as an eager forward would.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from explorer.build.modules import FACTORIES, Container
from explorer.resources import keep_freed_memory
from explorer.spec import INPUT, Kind, Layer, Spec, SpecError, param_count, spec_layers
from explorer.spec.layers import free_after

DEFAULT_MAX_WEIGHT_BYTES = 4 * 2**30
MAX_WEIGHT_BYTES_ENV = "EXPLORER_MAX_WEIGHT_BYTES"


def make_module(layer: Layer) -> nn.Module:
    """The torch module for one layer, made by its kind's factory (:data:`explorer.build.modules.FACTORIES`)."""
    return FACTORIES[Kind(layer.kind)](layer)


class SpecNet(nn.Module):
    """A network built from a :class:`Spec`. In eval it returns logits; in training,
    ``(logits, aux_logits)`` when the spec has an auxiliary head."""

    def __init__(self, spec: Spec, layers: Sequence[Layer] | None = None) -> None:
        """``layers`` are ``spec_layers(spec)`` when the caller has them already."""
        super().__init__()
        self.spec = spec
        self.layers: tuple[Layer, ...] = tuple(spec_layers(spec) if layers is None else layers)
        # a plain list: the modules are registered through the tree that _place builds
        self._run = []
        for layer in self.layers:
            module = make_module(layer)
            self._place(layer.name, module)
            self._run.append((module, layer.name, layer.inputs, layer.train_only))
        self._frees = {mode: free_after(self.layers, training=mode) for mode in (False, True)}
        main = [layer for layer in self.layers if not layer.train_only]
        aux = [layer for layer in self.layers if layer.train_only]
        self._output = main[-1].name
        self._aux_output = aux[-1].name if aux else None

    def _place(self, path: str, module: nn.Module) -> None:
        parent: nn.Module = self
        *heads, leaf = path.split(".")
        for head in heads:
            child = parent._modules.get(head)
            if child is None:
                child = Container()
                parent.add_module(head, child)
            parent = child
        parent.add_module(leaf, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        training = self.training
        env: dict[str, torch.Tensor] = {INPUT: x}
        del x
        frees = self._frees[training]
        for (module, name, inputs, train_only), free in zip(self._run, frees):
            if train_only and not training:
                continue
            env[name] = module(*[env[i] for i in inputs])
            for dead in free:
                if dead != self._output and dead != self._aux_output:
                    del env[dead]
        if training and self._aux_output is not None:
            return env[self._output], env[self._aux_output]
        return env[self._output]


def weight_bytes(spec: Spec, bytes_per_param: int = 4, layers: Sequence[Layer] | None = None) -> int:
    """Bytes the spec's parameters take, from the spec alone (nothing allocated)."""
    layers = spec_layers(spec) if layers is None else layers
    return bytes_per_param * sum(param_count(layer) for layer in layers)


def check_memory(spec: Spec, max_weight_bytes: int | None = None, layers: Sequence[Layer] | None = None) -> None:
    """Refuse a spec whose fp32 weights would exceed the limit (default 4 GiB or $EXPLORER_MAX_WEIGHT_BYTES)."""
    limit = max_weight_bytes
    if limit is None:
        limit = int(os.environ.get(MAX_WEIGHT_BYTES_ENV, DEFAULT_MAX_WEIGHT_BYTES))
    need = weight_bytes(spec, layers=layers)
    if need > limit:
        raise SpecError("blocks", f"the weights would take {need / 2**30:.2f} GiB, over the limit of "
                                  f"{limit / 2**30:.2f} GiB (raise it with {MAX_WEIGHT_BYTES_ENV})")


def build_model(spec: Spec, *, max_weight_bytes: int | None = None, seed: int | None = 0) -> SpecNet:
    """Build ``spec`` as a :class:`SpecNet` in ``eval()`` mode.

    Initialization is seeded (``seed=None`` leaves the global RNG alone), so the
    same spec gives the same random network every time. The memory check runs
    before anything is allocated. The first build also tunes the CPU allocator
    for the process (:func:`keep_freed_memory`).
    """
    layers = spec_layers(spec)  # once: the memory check and the network read the same list
    check_memory(spec, max_weight_bytes, layers)
    keep_freed_memory()
    if seed is None:
        model = SpecNet(spec, layers)
    else:
        with torch.random.fork_rng(devices=[]):
            # Initialization runs on the CPU generator only; torch.manual_seed would also queue
            # a CUDA seeding call, which records a stack trace (~6 ms, a tenth of a build).
            torch.default_generator.manual_seed(seed)
            model = SpecNet(spec, layers)
    return model.eval()
