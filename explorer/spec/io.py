"""Reading and writing specs: YAML text, files and the shipped presets."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from explorer.errors import SpecError
from explorer.spec.layers import spec_layers
from explorer.spec.schema import BLOCK_TYPES, Spec

PRESET_PACKAGE = "explorer.spec.presets"


def list_presets() -> list[str]:
    """Names of the presets shipped in the package."""
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def parse_spec(source: str | dict[str, Any]) -> Spec:
    """Validate YAML text or plain data into a :class:`Spec`, shapes included.

    Raises :class:`SpecError` naming the first bad field.
    """
    if isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(where, f"YAML syntax error: {problem}") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise SpecError("spec", f"expected a mapping of fields, got {type(data).__name__}")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, data) from None
    spec_layers(spec)  # shape propagation: raises SpecError if the network cannot run
    return spec


@lru_cache(maxsize=16)
def _preset_text(name: str) -> str:
    return resources.files(PRESET_PACKAGE).joinpath(f"{name}.yaml").read_text()


def load_spec(name_or_path: str | Path) -> Spec:
    """Load a preset by name (``xception``) or a spec from a YAML file path."""
    text = str(name_or_path)
    if text in list_presets():
        return parse_spec(_preset_text(text))
    path = Path(text)
    if not path.is_file():
        raise SpecError("spec", f"'{text}' is neither a preset ({', '.join(list_presets())}) nor a file")
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("spec", f"cannot read '{text}': {exc}") from None
    return parse_spec(content)


def dump_yaml(spec: Spec) -> str:
    """The spec as YAML (:meth:`Spec.to_yaml`): every top-level field, block fields where they differ
    from the default."""
    return spec.to_yaml()


_TAGS = frozenset(BLOCK_TYPES) | {"conv", "pool", "split"}


def _spec_error(exc: ValidationError, data: dict[str, Any]) -> SpecError:
    err = exc.errors()[0]
    parts: list[str] = []
    previous: object = None
    for key in err["loc"]:
        if isinstance(key, int):
            parts[-1] += f"[{key}]"
            if parts == [f"blocks[{key}]"] and (name := _block_name(data, key)):
                parts[-1] += f" ({name})"
        elif not (isinstance(previous, int) and key in _TAGS):  # union tags are not fields
            parts.append(str(key))
        previous = key
    path = ".".join(parts) or "spec"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    if err["type"] == "union_tag_invalid":
        msg = f"unknown block type '{err['input'].get('type') if isinstance(err['input'], dict) else err['input']}'" \
              f" (known: {', '.join(BLOCK_TYPES)})"
    return SpecError(path, msg)


def _block_name(data: dict[str, Any], index: int) -> str | None:
    blocks = data.get("blocks")
    if isinstance(blocks, list) and 0 <= index < len(blocks) and isinstance(blocks[index], dict):
        name = blocks[index].get("name")
        return str(name) if name is not None else None
    return None
