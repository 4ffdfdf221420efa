"""Diff of two specs' costs: which layers were added, removed or changed, and what it costs.

Layers are matched by module path. A layer is *changed* when its kind, shapes,
arguments or any of its costs differ; ``changes`` names what differs. Deltas
are always B − A.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from explorer.cost.counts import CostReport, LayerCost, count_costs
from explorer.spec import Layer, Spec, spec_layers

Status = Literal["added", "removed", "changed"]
COST_FIELDS: tuple[str, ...] = ("params", "macs", "elementwise_ops", "activation_bytes", "weight_bytes")
_COMPARED: tuple[str, ...] = ("kind", "in_shape", "out_shape", "train_only") + COST_FIELDS


@dataclass(frozen=True)
class LayerDelta:
    """One layer that differs between A and B (``before`` is A's row, ``after`` B's)."""

    name: str
    status: Status
    before: LayerCost | None
    after: LayerCost | None
    changes: tuple[str, ...] = ()  # fields that differ, for a changed layer ("macs", "config.groups")

    @property
    def row(self) -> LayerCost:
        """B's row, or A's for a removed layer."""
        return self.after if self.after is not None else self.before  # type: ignore[return-value]

    def delta(self, field: str) -> int:
        """B − A of a cost field (``flops`` too); a missing side counts as zero."""
        def get(c: LayerCost | None) -> int:
            return 0 if c is None else getattr(c, field)
        return get(self.after) - get(self.before)

    def to_dict(self) -> dict:
        """Plain JSON-able data: the layer, its status, what changed and the deltas."""
        row = self.row
        return {"name": self.name, "status": self.status, "kind": row.kind, "flow": row.flow,
                "block": row.block, "changes": list(self.changes),
                "out_shape_before": None if self.before is None else list(self.before.out_shape),
                "out_shape_after": None if self.after is None else list(self.after.out_shape),
                **{f"delta_{f}": self.delta(f) for f in COST_FIELDS + ("flops",)}}


@dataclass(frozen=True)
class CostDiff:
    """Costs of spec B against spec A: the layers that differ and the total deltas."""

    a: CostReport
    b: CostReport
    layers: tuple[LayerDelta, ...]

    @property
    def totals(self) -> dict[str, int]:
        """B − A of every total."""
        return {k: self.b.totals[k] - self.a.totals.get(k, 0) for k in self.b.totals}

    def of(self, status: Status) -> list[LayerDelta]:
        """The layers with ``status`` (added, removed or changed), in execution order."""
        return [d for d in self.layers if d.status == status]

    def to_dict(self) -> dict:
        """``{"a", "b", "batch", "totals_a", "totals_b", "totals_delta", "counts", "layers"}``."""
        return {
            "a": self.a.spec_name, "b": self.b.spec_name, "batch": self.b.batch, "dtype": self.b.dtype,
            "totals_a": dict(self.a.totals), "totals_b": dict(self.b.totals), "totals_delta": self.totals,
            "counts": {s: len(self.of(s)) for s in ("added", "removed", "changed")},
            "layers": [d.to_dict() for d in self.layers],
        }


def diff_reports(a: CostReport, b: CostReport, layers_a: list[Layer] | None = None,
                 layers_b: list[Layer] | None = None) -> CostDiff:
    """Match two cost reports by module path; with the spec layers, changed arguments show too."""
    rows_a = {c.name: c for c in a.layers}
    rows_b = {c.name: c for c in b.layers}
    cfg_a = {layer.name: layer.config for layer in layers_a or ()}
    cfg_b = {layer.name: layer.config for layer in layers_b or ()}
    names_a, names_b = [c.name for c in a.layers], [c.name for c in b.layers]
    deltas: list[LayerDelta] = []
    # Merge both execution orders so removed layers appear where they were.
    for op, i1, i2, j1, j2 in SequenceMatcher(None, names_a, names_b, autojunk=False).get_opcodes():
        if op == "equal":
            for name in names_a[i1:i2]:
                changes = _changes(rows_a[name], rows_b[name], cfg_a.get(name, {}), cfg_b.get(name, {}))
                if changes:
                    deltas.append(LayerDelta(name, "changed", rows_a[name], rows_b[name], changes))
            continue
        for name in names_a[i1:i2]:
            if name in rows_b:  # moved: reported once, from B's side
                continue
            deltas.append(LayerDelta(name, "removed", rows_a[name], None))
        for name in names_b[j1:j2]:
            if name in rows_a:
                changes = _changes(rows_a[name], rows_b[name], cfg_a.get(name, {}), cfg_b.get(name, {}))
                if changes:
                    deltas.append(LayerDelta(name, "changed", rows_a[name], rows_b[name], changes))
            else:
                deltas.append(LayerDelta(name, "added", None, rows_b[name]))
    return CostDiff(a, b, tuple(deltas))


def diff_specs(a: Spec, b: Spec, batch: int = 1, dtype: str = "float32") -> CostDiff:
    """Costs of ``b`` against ``a`` at ``batch`` and ``dtype``, layer by layer and in total."""
    return diff_reports(count_costs(a, batch, dtype), count_costs(b, batch, dtype), spec_layers(a), spec_layers(b))


def _changes(x: LayerCost, y: LayerCost, cfg_x: dict, cfg_y: dict) -> tuple[str, ...]:
    fields = [f for f in _COMPARED if getattr(x, f) != getattr(y, f)]
    fields += [f"config.{k}" for k in sorted(set(cfg_x) | set(cfg_y), key=str)
               if cfg_x.get(k) != cfg_y.get(k)]
    return tuple(fields)
