"""Layer kinds, one table: what a kind of layer holds, costs and looks like is its :class:`KindInfo`.

A :class:`Kind` is what a :class:`explorer.spec.layers.Layer` is (a conv, a
batch norm, a residual add ...). Its entry in :data:`KINDS` says what people
call it, which learnable tensors its module holds, what it costs, how the
inference copy may treat it and how the graph draws it. The cost model, the
fast copy and the figure read this table. The torch module a kind is built as
is the one fact kept in the layer above, where torch is: ``FACTORIES`` in
``explorer/build/modules.py``, keyed by the same :class:`Kind`. So a new kind
is an entry here and a factory there; ``tests/test_kinds.py`` checks that
every kind has both and that they agree with each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

if TYPE_CHECKING:
    from explorer.spec.layers import Layer, Shape


class Kind(StrEnum):
    """What a layer is. The values are the names the cost table, the graph and their exports show."""

    CONV = "conv"
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"
    GROUPED_CONV = "grouped_conv"
    BATCHNORM = "batchnorm"
    ACTIVATION = "activation"
    POOL = "pool"
    ADD = "add"
    CONCAT = "concat"
    LINEAR = "linear"
    DROPOUT = "dropout"
    AFFINE = "affine"


@dataclass(frozen=True)
class Style:
    """How the graph draws a node: plotly marker colour and symbol, and its size in px when size shows no cost."""

    color: str
    symbol: str
    size: int = 10


# -- the facts, as functions of a layer ----------------------------------------------------------------
# Units as in explorer/cost/counts.py: MACs and element-wise ops per sample.


def _no_params(layer: Layer) -> Iterator[tuple[str, Shape]]:
    return iter(())


def _zero(layer: Layer) -> int:
    return 0


def _conv_params(layer: Layer) -> Iterator[tuple[str, Shape]]:
    cfg = layer.config
    kh, kw = cfg["kernel"]
    yield "weight", (cfg["out_channels"], cfg["in_channels"] // cfg["groups"], kh, kw)
    if cfg["bias"]:
        yield "bias", (cfg["out_channels"],)


def _conv_macs(layer: Layer) -> int:
    """Cin/groups · kh·kw MACs for every output element."""
    cfg = layer.config
    kh, kw = cfg["kernel"]
    return math.prod(layer.out_shape) * (cfg["in_channels"] // cfg["groups"]) * kh * kw


def _bias_ops(layer: Layer) -> int:
    """A conv's or linear layer's bias: one add per output element."""
    return math.prod(layer.out_shape) if layer.config["bias"] else 0


def _batchnorm_params(layer: Layer) -> Iterator[tuple[str, Shape]]:
    yield "weight", (layer.config["channels"],)
    yield "bias", (layer.config["channels"],)


def _linear_params(layer: Layer) -> Iterator[tuple[str, Shape]]:
    cfg = layer.config
    yield "weight", (cfg["out_features"], cfg["in_features"])
    if cfg["bias"]:
        yield "bias", (cfg["out_features"],)


def _linear_macs(layer: Layer) -> int:
    return layer.config["in_features"] * layer.config["out_features"]


def _per_output(ops: int) -> Callable[[Layer], int]:
    """``ops`` element-wise operations for every output element."""
    def count(layer: Layer) -> int:
        return ops * math.prod(layer.out_shape)
    return count


def _pool_ops(layer: Layer) -> int:
    """One op per window element for every output; a global average, one per input element."""
    if layer.config["mode"] == "global_avg":
        return math.prod(layer.in_shape)
    kh, kw = layer.config["kernel"]
    return math.prod(layer.out_shape) * kh * kw


# -- the table -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindInfo:
    """Everything about one kind of layer.

    ``label``: the kind in words. ``params(layer)``: the module's learnable
    tensors as (suffix, shape), in registration order. ``macs(layer)`` and
    ``elementwise(layer)``: its multiply-accumulates and element-wise ops per
    sample. ``conv``: a convolution (the inference copy folds a batch norm
    that alone reads it into it). ``join``: it merges several tensors. ``inplace_ok``:
    the inference copy may overwrite its input when nothing else reads it.
    ``eval_identity``: it passes its input through in eval (the inference copy
    leaves it out). ``style``: how the graph draws it.
    """

    label: str
    style: Style
    params: Callable[[Layer], Iterator[tuple[str, Shape]]] = _no_params
    macs: Callable[[Layer], int] = _zero
    elementwise: Callable[[Layer], int] = _zero
    conv: bool = False
    join: bool = False
    inplace_ok: bool = False
    eval_identity: bool = False


def _conv(label: str, color: str) -> KindInfo:
    return KindInfo(label, Style(color, "square"), params=_conv_params, macs=_conv_macs, elementwise=_bias_ops,
                    conv=True)


KINDS: Mapping[Kind, KindInfo] = MappingProxyType({
    Kind.CONV: _conv("convolution", "#1f77b4"),
    Kind.DEPTHWISE: _conv("depthwise convolution", "#2ca02c"),
    Kind.POINTWISE: _conv("pointwise (1×1) convolution", "#17becf"),
    Kind.GROUPED_CONV: _conv("grouped convolution", "#bcbd22"),
    Kind.BATCHNORM: KindInfo("batch norm", Style("#b0b0b0", "circle", 7), params=_batchnorm_params,
                             elementwise=_per_output(2)),
    Kind.ACTIVATION: KindInfo("activation", Style("#ff7f0e", "triangle-right", 8), elementwise=_per_output(1),
                              inplace_ok=True),
    Kind.POOL: KindInfo("pooling", Style("#9467bd", "diamond"), elementwise=_pool_ops),
    Kind.ADD: KindInfo("residual add", Style("#d62728", "cross", 12), elementwise=_per_output(1), join=True,
                       inplace_ok=True),
    Kind.CONCAT: KindInfo("concatenation", Style("#8c564b", "hexagon", 12), join=True),
    Kind.LINEAR: KindInfo("fully connected", Style("#e377c2", "star"), params=_linear_params, macs=_linear_macs,
                          elementwise=_bias_ops),
    Kind.DROPOUT: KindInfo("dropout", Style("#c5b0d5", "circle", 7), eval_identity=True),
    Kind.AFFINE: KindInfo("input scaling", Style("#8c6d31", "hexagon2", 8), elementwise=_per_output(2)),
})


def kind_info(kind: Kind | str) -> KindInfo:
    """The table entry of ``kind`` (a :class:`Kind` or its name); ``ValueError`` for an unknown kind."""
    return KINDS[Kind(kind)]
