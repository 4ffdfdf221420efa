"""Costs from the spec: per layer, block, flow and kind; no torch imported."""

from explorer.cost.counts import (
    LEVELS,
    CostReport,
    LayerCost,
    count_costs,
    layer_elementwise,
    layer_macs,
    peak_activation_bytes,
)
from explorer.cost.diff import CostDiff, LayerDelta, diff_reports, diff_specs
from explorer.cost.whatif import SegmentsPoint, SeparableCost, WhatIf, segment_choices, separable_groups, what_if

__all__ = ["LEVELS", "CostDiff", "CostReport", "LayerCost", "LayerDelta", "SegmentsPoint", "SeparableCost",
           "WhatIf", "count_costs", "diff_reports", "diff_specs", "layer_elementwise", "layer_macs",
           "peak_activation_bytes", "segment_choices", "separable_groups", "what_if"]
