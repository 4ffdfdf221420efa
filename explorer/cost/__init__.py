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

__all__ = ["LEVELS", "CostReport", "LayerCost", "count_costs", "layer_elementwise", "layer_macs",
           "peak_activation_bytes"]
