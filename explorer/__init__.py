"""Xception Explorer: depthwise separable networks built from editable specs.

The public API is imported lazily, so ``import explorer`` (and the
spec and cost layers) stays free of torch until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "Spec": "explorer.spec",
    "SpecError": "explorer.errors",
    "ExplorerError": "explorer.errors",
    "UsageError": "explorer.errors",
    "load_spec": "explorer.spec",
    "parse_spec": "explorer.spec",
    "list_presets": "explorer.spec",
    "build_model": "explorer.build",
    "count_costs": "explorer.cost",
    "build_graph": "explorer.graph",
    "list_weights": "explorer.weights",
    "get_weights": "explorer.weights",
    "load_model": "explorer.weights",
    "convert_state_dict": "explorer.weights",
    "load_weights": "explorer.weights",
    "read_checkpoint": "explorer.weights",
    "classify": "explorer.infer",
    "explain_image": "explorer.explain",
    "profile": "explorer.measure",
    "ceilings": "explorer.measure",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'explorer' has no attribute '{name}'")
