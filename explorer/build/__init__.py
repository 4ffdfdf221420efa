"""Spec → torch module."""

from explorer.build.network import SpecNet, build_model, check_memory, keep_freed_memory, make_module, weight_bytes

__all__ = ["SpecNet", "build_model", "check_memory", "keep_freed_memory", "make_module", "weight_bytes"]
