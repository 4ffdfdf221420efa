"""Per-layer costs from the spec alone: parameters, MACs, element-wise ops, memory.

Units are explicit. A MAC is one multiply-accumulate; FLOPs = 2 · MACs, as
``torch.utils.flop_counter`` counts convolutions and matrix products. Only
convolutions and linear layers have MACs (conv: Cin/groups · kh·kw · Hout·Wout ·
Cout per sample; linear: in · out); a conv or linear bias is one element-wise
op per output. Everything else is counted apart, as element-wise ops per
output element: batch norm 2 (scale, shift), an activation 1, an add 1, the
input affine 2, a max/avg pool one per window element (global average: one per
input element), concat and dropout (eval) 0. Each kind's formulas are its
entry in the kinds table (:data:`explorer.spec.kinds.KINDS`).

Auxiliary layers (Inception's aux head) run in training only: their parameters
count, their MACs and memory are reported on their rows but left out of the
inference totals.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from explorer.errors import UsageError, unknown
from explorer.spec import Layer, Spec, kind_info, param_count, spec_layers
from explorer.spec.budget import peak_activation_bytes

Level = Literal["layer", "block", "flow", "kind"]
LEVELS: tuple[str, ...] = ("layer", "block", "flow", "kind")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def layer_macs(layer: Layer) -> int:
    """Multiply-accumulates of one layer for one sample."""
    return kind_info(layer.kind).macs(layer)


def layer_elementwise(layer: Layer) -> int:
    """Element-wise operations of one layer for one sample (see the module docstring)."""
    return kind_info(layer.kind).elementwise(layer)


@dataclass(frozen=True)
class LayerCost:
    """One row of the cost table: a layer (module path) and what it costs at the report's batch."""

    name: str
    kind: str  # the kind's name: a report is plain data, written out as JSON and CSV
    flow: str
    block: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    elementwise_ops: int
    activation_bytes: int
    weight_bytes: int
    train_only: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class CostReport:
    """Costs of a spec at a batch size and dtype: per layer, aggregates and totals."""

    spec_name: str
    batch: int
    dtype: str
    layers: tuple[LayerCost, ...]
    peak_activation_bytes: int
    totals: dict[str, int] = field(default_factory=dict)

    def by(self, level: Level) -> list[dict]:
        """Rows aggregated by ``layer``, ``block``, ``flow`` or ``kind``, in first-seen order.

        Training-only layers are left out of every aggregate but ``layer``.
        """
        if level not in LEVELS:
            raise UsageError("by", f"unknown level '{level}' (choose from {', '.join(LEVELS)})")
        if level == "layer":
            return [_row(c) for c in self.layers]
        groups: dict[str, dict] = {}
        for c in self.layers:
            if c.train_only:
                continue
            key = getattr(c, level)
            row = groups.setdefault(key, {level: key, "layers": 0, "params": 0, "macs": 0, "flops": 0,
                                          "elementwise_ops": 0, "activation_bytes": 0, "weight_bytes": 0})
            if level == "block":
                row.setdefault("flow", c.flow)
            row["layers"] += 1
            for k in ("params", "macs", "elementwise_ops", "activation_bytes", "weight_bytes"):
                row[k] += getattr(c, k)
            row["flops"] = 2 * row["macs"]
        return list(groups.values())

    def layer(self, name: str) -> LayerCost:
        """The row of the layer with module path ``name`` (a :class:`UsageError` with close names if none)."""
        for c in self.layers:
            if c.name == name:
                return c
        raise unknown("name", "layer", name, [c.name for c in self.layers])

    def to_dict(self) -> dict:
        """``{"spec", "batch", "dtype", "totals", "layers"}`` as plain JSON-able data."""
        return {"spec": self.spec_name, "batch": self.batch, "dtype": self.dtype,
                "totals": dict(self.totals), "layers": [_row(c) for c in self.layers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _row(c: LayerCost) -> dict:
    row = asdict(c)
    row["in_shape"], row["out_shape"] = list(c.in_shape), list(c.out_shape)
    row["flops"] = c.flops
    return row


def count_costs(spec: Spec, batch: int = 1, dtype: str = "float32") -> CostReport:
    """Shape-propagate ``spec`` and price every layer; no model is built, no torch imported."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError("batch", f"must be a whole number of at least 1, got {batch!r}")
    if dtype not in DTYPE_BYTES:
        raise UsageError("dtype", f"unknown dtype '{dtype}' (choose from {', '.join(DTYPE_BYTES)})")
    nbytes = DTYPE_BYTES[dtype]
    layers = spec_layers(spec)
    rows = tuple(
        LayerCost(
            name=layer.name, kind=layer.kind.value, flow=layer.flow, block=layer.block,
            in_shape=layer.in_shape, out_shape=layer.out_shape,
            params=param_count(layer), macs=layer_macs(layer) * batch,
            elementwise_ops=layer_elementwise(layer) * batch,
            activation_bytes=math.prod(layer.out_shape) * batch * nbytes,
            weight_bytes=param_count(layer) * nbytes, train_only=layer.train_only,
        )
        for layer in layers
    )
    running = [c for c in rows if not c.train_only]
    peak = peak_activation_bytes(layers, batch, nbytes)
    macs = sum(c.macs for c in running)
    totals = {
        "params": sum(c.params for c in rows),
        "macs": macs,
        "flops": 2 * macs,
        "elementwise_ops": sum(c.elementwise_ops for c in running),
        "activation_bytes": sum(c.activation_bytes for c in running),
        "peak_activation_bytes": peak,
        "weight_bytes": sum(c.weight_bytes for c in rows),
    }
    return CostReport(spec.name, batch, dtype, rows, peak, totals)
