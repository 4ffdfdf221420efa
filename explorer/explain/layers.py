"""Which layer Grad-CAM looks at: the default (the last spatial map before the global pool),
the choices for a picker, and a module path checked with close matches on a typo."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from explorer.explain.errors import ExplainError
from explorer.spec import Layer

COARSE_SIDE = 4  # a Grad-CAM map smaller than this (per side) cannot say where much


@dataclass(frozen=True)
class LayerChoice:
    """A layer Grad-CAM can use: module path, kind, block and its output shape (C, H, W)."""

    name: str
    kind: str
    block: str
    out_shape: tuple[int, ...]


def spec_layers_of(model: nn.Module) -> Sequence[Layer] | None:
    """The spec layers of a :class:`~explorer.build.SpecNet` (None for another module)."""
    layers = getattr(model, "layers", None)
    if isinstance(layers, (list, tuple)) and layers and isinstance(layers[0], Layer):
        return layers
    return None


def _runs_in_eval(layer: Layer) -> bool:
    return not layer.train_only and layer.kind != "dropout"


def layer_choices(layers: Sequence[Layer]) -> list[LayerChoice]:
    """The layers with a spatial output (C×H×W) that run in eval, in execution order."""
    return [LayerChoice(layer.name, layer.kind, layer.block, tuple(layer.out_shape))
            for layer in layers if _runs_in_eval(layer) and len(layer.out_shape) == 3]


def last_spatial_layer(layers: Sequence[Layer]) -> Layer:
    """The last spatial feature map: the input of the first global pool, else the last C×H×W output."""
    by_name = {layer.name: layer for layer in layers}
    for layer in layers:
        if _runs_in_eval(layer) and layer.kind == "pool" and layer.config.get("mode") == "global_avg":
            source = by_name.get(layer.inputs[0]) if layer.inputs else None
            if source is not None and len(source.out_shape) == 3:
                return source
    spatial = [layer for layer in layers if _runs_in_eval(layer) and len(layer.out_shape) == 3]
    if not spatial:
        raise ExplainError("this network has no layer with a spatial output for Grad-CAM")
    return spatial[-1]


def default_layer(layers: Sequence[Layer]) -> str:
    """Grad-CAM's default layer: the last spatial feature map (the input of the global pool), unless that
    map is too coarse to localize anything (under ``COARSE_SIDE`` pixels a side, e.g. 2 x 2 in the
    32-px digits model), then the last finer block output, the layer :func:`resolve_layer`'s note names.

    Xception: ``exit.sep2.act`` (10 x 10); Inception V3: ``Mixed_7c.concat`` (8 x 8); the digits
    model: ``middle.block3.add`` (4 x 4); the same rule gives a sensible default for any spec.
    """
    last = last_spatial_layer(layers)
    if min(last.out_shape[1:]) >= COARSE_SIDE:
        return last.name
    finer = finer_layer(layers)
    return finer.name if finer is not None else last.name


def finer_layer(layers: Sequence[Layer]) -> LayerChoice | None:
    """The last layer whose map is at least ``COARSE_SIDE`` a side, a block output (add, concat) when
    there is one; None when every map is smaller."""
    finer = [c for c in layer_choices(layers) if min(c.out_shape[1:]) >= COARSE_SIDE]
    joins = [c for c in finer if c.kind in ("add", "concat")]  # block outputs read best
    finer = joins or finer
    return finer[-1] if finer else None


def _block_output(layers: Sequence[Layer], prefix: str) -> Layer | None:
    """The last layer run inside the block (or group of layers) at ``prefix``: its output."""
    inside = [layer for layer in layers if layer.name.startswith(prefix + ".") and _runs_in_eval(layer)]
    return inside[-1] if inside else None


def resolve_layer(model: nn.Module, name: str | None) -> tuple[str, str | None]:
    """Check a Grad-CAM layer (module path) on ``model``; returns ``(layer name, note or None)``.

    ``None`` picks :func:`default_layer`. A block path (``middle.block8``,
    ``Mixed_6b``) means the block's output layer. A typo is an
    :class:`ExplainError` listing the closest module paths.
    """
    layers = spec_layers_of(model)
    if name is None or not str(name).strip():
        if layers is None:
            raise ExplainError("this model has no spec to pick a default layer from: name one (--layer PATH)")
        name = default_layer(layers)
    name = str(name).strip()
    if layers is None:
        modules = dict(model.named_modules())
        if name not in modules or not name:
            raise ExplainError(_unknown(name, [n for n in modules if n]))
        return name, None
    by_name = {layer.name: layer for layer in layers}
    note = None
    layer = by_name.get(name)
    if layer is None:
        if not any(n == name for n, _ in model.named_modules()):
            raise ExplainError(_unknown(name, list(by_name) + sorted({l.block for l in layers if l.block})))
        layer = _block_output(layers, name)
        if layer is None:
            raise ExplainError(f"'{name}' holds no layer that runs in eval mode: pick one of its layers")
        note = f"'{name}' is a block: Grad-CAM uses its output layer '{layer.name}'"
    if layer.train_only:
        raise ExplainError(f"layer '{layer.name}' belongs to the auxiliary head, which runs only in training: "
                           f"pick a layer of the main path (default '{default_layer(layers)}')")
    if layer.kind == "dropout":
        raise ExplainError(f"layer '{layer.name}' is a dropout, which does nothing in eval mode: pick another")
    if len(layer.out_shape) != 3:
        raise ExplainError(f"layer '{layer.name}' outputs {tuple(layer.out_shape)}, not a spatial map (C×H×W): "
                           f"Grad-CAM needs a convolutional layer (default '{default_layer(layers)}')")
    coarse = _coarse_note(layers, layer)
    if coarse:
        note = f"{note}; {coarse}" if note else coarse
    return layer.name, note


def _coarse_note(layers: Sequence[Layer], layer: Layer) -> str | None:
    """A hint when the layer's map is too small to localize anything (e.g. 2 x 2 on a 32-px input)."""
    h, w = layer.out_shape[1:]
    if min(h, w) >= COARSE_SIDE:
        return None
    finer = finer_layer(layers)
    hint = f"; a finer one: '{finer.name}' ({finer.out_shape[1]}x{finer.out_shape[2]})" if finer else ""
    return f"Grad-CAM's map at '{layer.name}' is only {h}x{w}: too coarse to localize much{hint}"


def _unknown(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    if not close:  # a tail match: "sep2.act" for "exit.sep2.act"
        close = [c for c in candidates if c.endswith(name)][:5]
    hint = f"; close matches: {', '.join(close)}" if close else "; list the layers with `python -m explorer costs`"
    return f"no layer '{name}' in this network{hint}"
