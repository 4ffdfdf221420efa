"""Block specs: the schema, the presets, the knobs, shape propagation and the layer kinds (no torch)."""

from explorer.errors import ExplorerError, SpecError
from explorer.spec.io import dump_yaml, list_presets, load_spec, parse_spec
from explorer.spec.kinds import KINDS, Kind, KindInfo, kind_info
from explorer.spec.knobs import (
    KNOB_HELP,
    KNOBS,
    apply_knobs,
    changed_knobs,
    knob_applies,
    knob_values,
    parse_assignments,
)
from explorer.spec.layers import INPUT, Layer, param_count, spec_layers
from explorer.spec.schema import Spec, SpecBudgetError

__all__ = [
    "INPUT", "KINDS", "KNOBS", "KNOB_HELP", "ExplorerError", "Kind", "KindInfo", "Layer", "Spec", "SpecBudgetError",
    "SpecError",
    "apply_knobs", "changed_knobs", "dump_yaml", "kind_info", "knob_applies", "knob_values", "list_presets",
    "load_spec", "param_count", "parse_assignments", "parse_spec", "spec_layers",
]
