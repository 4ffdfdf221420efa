"""Preset specs shipped as YAML files; see :func:`explorer.spec.list_presets`."""
