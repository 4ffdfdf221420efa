"""The seed's comparison: what each separable conv saves over a regular conv.

For a separable conv with input D_F×D_F×M, output D_G×D_G×N and kernel D_K,
the regular conv with the same input, output, kernel, stride and padding costs
M·D_K²·D_G²·N MACs and M·D_K²·N parameters. The separable conv costs
M·D_K²·D_G² (depthwise) + M·D_G²·N (pointwise), so separable / regular =
1/N + 1/D_K². With ``segments`` = g groups in the spatial conv it costs
(M/g)·M·D_K²·D_G² + M·D_G²·N, ratio M/(g·N) + 1/D_K²: g = M is depthwise,
g = 1 a full spatial conv before the pointwise one.

Only MACs and parameters are compared: the convs here have no bias, and a
mid activation is left where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import reduce
from math import gcd

from explorer.cost.counts import count_costs, layer_macs
from explorer.spec import Layer, Spec, param_count, spec_layers

DEPTHWISE = "depthwise"


@dataclass(frozen=True)
class SeparableCost:
    """One separable conv (spatial conv + pointwise) against the regular conv it stands for."""

    name: str  # module path of the separable conv, e.g. ``entry.block2.sep1``
    flow: str
    block: str
    in_channels: int  # M
    out_channels: int  # N
    kernel: tuple[int, int]  # D_K × D_K
    groups: int  # groups of the spatial conv (M: depthwise)
    out_size: tuple[int, int]  # D_G × D_G
    macs: int  # spatial + pointwise, at the batch of the report
    params: int
    regular_macs: int
    regular_params: int

    @property
    def depthwise(self) -> bool:
        return self.groups == self.in_channels

    @property
    def ratio(self) -> float:
        """Separable MACs / regular MACs, as counted."""
        return self.macs / self.regular_macs

    @property
    def formula_ratio(self) -> Fraction:
        """M/(g·N) + 1/D_K², exactly; with g = M (depthwise) the paper's 1/N + 1/D_K²."""
        kh, kw = self.kernel
        return Fraction(self.in_channels, self.groups * self.out_channels) + Fraction(1, kh * kw)

    @property
    def saved_macs(self) -> int:
        return self.regular_macs - self.macs

    def to_dict(self) -> dict:
        """Plain JSON-able data, with the ratio as counted and from the formula."""
        return {
            "name": self.name, "flow": self.flow, "block": self.block,
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel": list(self.kernel), "groups": self.groups, "depthwise": self.depthwise,
            "out_size": list(self.out_size), "macs": self.macs, "params": self.params,
            "regular_macs": self.regular_macs, "regular_params": self.regular_params,
            "ratio": self.ratio, "formula_ratio": float(self.formula_ratio),
        }


@dataclass(frozen=True)
class SegmentsPoint:
    """Whole-model totals with every separable conv's spatial conv split into ``segments`` groups."""

    segments: int | str  # an int, or "depthwise"
    params: int
    macs: int
    current: bool  # the spec's own setting

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class WhatIf:
    """The separable convs of a spec against regular convs, and the ``segments`` spectrum."""

    spec_name: str
    batch: int
    separables: tuple[SeparableCost, ...]
    totals: dict[str, int]  # params, macs, flops of the spec as it is
    regular_totals: dict[str, int]  # the same with every separable conv replaced by a regular conv
    spectrum: tuple[SegmentsPoint, ...]

    def to_dict(self) -> dict:
        """``{"spec", "batch", "totals", "regular_totals", "ratio", "separables", "segments"}``."""
        return {
            "spec": self.spec_name, "batch": self.batch, "totals": dict(self.totals),
            "regular_totals": dict(self.regular_totals),
            "ratio": self.totals["macs"] / self.regular_totals["macs"] if self.regular_totals["macs"] else None,
            "separables": [s.to_dict() for s in self.separables],
            "segments": [{"segments": p.segments, "params": p.params, "macs": p.macs, "flops": p.flops,
                          "current": p.current} for p in self.spectrum],
        }


def separable_groups(layers: list[Layer]) -> dict[str, tuple[Layer, Layer]]:
    """The separable convs of a network: module path → (spatial conv, pointwise conv)."""
    parts: dict[str, dict[str, Layer]] = {}
    for layer in layers:
        if layer.separable is not None:
            role = "pointwise" if layer.kind == "pointwise" else "spatial"
            parts.setdefault(layer.separable, {})[role] = layer
    return {name: (p["spatial"], p["pointwise"]) for name, p in parts.items()}


def separable_cost(name: str, spatial: Layer, pointwise: Layer, batch: int = 1) -> SeparableCost:
    """Price one separable conv and the regular conv with its input, output and kernel."""
    m = spatial.config["in_channels"]
    n = pointwise.config["out_channels"]
    kh, kw = spatial.config["kernel"]
    _, gh, gw = pointwise.out_shape
    return SeparableCost(
        name=name, flow=spatial.flow, block=spatial.block, in_channels=m, out_channels=n,
        kernel=(kh, kw), groups=spatial.config["groups"], out_size=(gh, gw),
        macs=(layer_macs(spatial) + layer_macs(pointwise)) * batch,
        params=param_count(spatial) + param_count(pointwise),
        regular_macs=m * kh * kw * gh * gw * n * batch,
        regular_params=m * kh * kw * n,
    )


def segment_choices(layers: list[Layer]) -> list[int | str]:
    """Valid ``segments`` values: divisors common to every separable conv's channels, then "depthwise".

    Empty when the network has no separable conv.
    """
    groups = separable_groups(layers)
    if not groups:
        return []
    common = reduce(gcd, (spatial.config["in_channels"] for spatial, _ in groups.values()))
    return [d for d in range(1, common + 1) if common % d == 0] + [DEPTHWISE]


def what_if(spec: Spec, batch: int = 1) -> WhatIf:
    """Every separable conv of ``spec`` against a regular conv, whole-model totals, and the
    totals across every valid ``segments`` value (from a full conv to depthwise)."""
    report = count_costs(spec, batch)
    layers = spec_layers(spec)
    separables = tuple(separable_cost(name, s, p, batch) for name, (s, p) in separable_groups(layers).items())
    macs = report.totals["macs"]
    params = report.totals["params"]
    reg_macs = macs + sum(s.regular_macs - s.macs for s in separables)
    reg_params = params + sum(s.regular_params - s.params for s in separables)
    current = _current_segments(separables)
    spectrum = []
    for choice in segment_choices(layers):
        variant = spec.with_overrides(segments=choice)
        totals = count_costs(variant, batch).totals
        spectrum.append(SegmentsPoint(choice, totals["params"], totals["macs"], choice == current))
    return WhatIf(
        spec_name=spec.name, batch=batch, separables=separables,
        totals={"params": params, "macs": macs, "flops": 2 * macs},
        regular_totals={"params": reg_params, "macs": reg_macs, "flops": 2 * reg_macs},
        spectrum=tuple(spectrum),
    )


def _current_segments(separables: tuple[SeparableCost, ...]) -> int | str | None:
    """The spec's own ``segments`` when all its separable convs share one, else None."""
    if separables and all(s.depthwise for s in separables):
        return DEPTHWISE
    values = {s.groups for s in separables}
    return values.pop() if len(values) == 1 else None

