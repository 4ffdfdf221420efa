"""Spec → ``nn.Module``: one leaf module per layer, run in the spec's order.

The module tree mirrors the layer names (``entry.block2.sep1.depthwise`` is
``model.entry.block2.sep1.depthwise``), so a layer's name is its module path
everywhere: in the cost table, the graph, the state dict and Captum's layer
picker. The forward pass is a straight walk over the layers that frees each
intermediate tensor after its last reader, as an eager forward would.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from explorer.build.modules import FACTORIES, Container
from explorer.resources import LIMITS, BudgetError, keep_freed_memory
from explorer.spec import INPUT, Kind, Layer, Spec, spec_layers
from explorer.spec.arguments import check_seed
from explorer.spec.budget import check_budget
from explorer.spec.layers import free_after


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


def build_model(spec: Spec, *, max_weight_bytes: int | None = None, seed: int | None = 0) -> SpecNet:
    """Build ``spec`` as a :class:`SpecNet` in ``eval()`` mode.

    Initialization is seeded (``seed=None`` leaves the global RNG alone), so the
    same spec gives the same random network every time; a seed out of range is a
    :class:`~explorer.errors.UsageError`. Before anything is allocated the spec is
    held to the limits (:func:`~explorer.spec.budget.check_budget`: layers, fp32
    weights, and one image's activations): a :class:`~explorer.resources.BudgetError`
    names the limit and how to raise it. ``max_weight_bytes`` lowers the weight limit
    for this call. The first build also tunes the CPU allocator for the process
    (:func:`keep_freed_memory`).
    """
    if seed is not None:
        seed = check_seed(seed)
    layers = spec_layers(spec)  # once: the budget check and the network read the same list
    need = check_budget(spec, layers=layers)
    if max_weight_bytes is not None and need.weight_bytes > max_weight_bytes:
        entry = LIMITS["max_weight_bytes"]
        raise BudgetError("max_weight_bytes", f"the weights of '{spec.name}' would need "
                                              f"{entry.format(need.weight_bytes)}, over the "
                                              f"{entry.format(max_weight_bytes)} this build allows")
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
