"""Spec → torch module."""

from explorer.build.network import SpecNet, build_model, keep_freed_memory, make_module
from explorer.spec.budget import weight_bytes

__all__ = ["SpecNet", "build_model", "keep_freed_memory", "make_module", "weight_bytes"]
