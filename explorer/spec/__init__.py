"""Block specs: the schema, the presets, the knobs and shape propagation (no torch)."""

from explorer.errors import ExplorerError, SpecError
from explorer.spec.io import dump_yaml, list_presets, load_spec, parse_spec
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
from explorer.spec.schema import Spec

__all__ = [
    "ExplorerError", "INPUT", "KNOBS", "KNOB_HELP", "Layer", "Spec", "SpecError", "apply_knobs", "changed_knobs",
    "dump_yaml", "knob_values",
    "knob_applies", "list_presets", "load_spec", "param_count", "parse_assignments", "parse_spec",
    "spec_layers",
]
