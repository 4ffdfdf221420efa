"""A spec's blocks as table rows and back: what the app's block editor edits.

One row per block. The common fields have a column each; whatever else a
block holds (an Inception module's branches, pool modes, ...) sits in the
``more`` column as inline YAML. Lists are written "128, 128".
"""

from __future__ import annotations

from typing import Any

import yaml

from explorer.errors import SpecError
from explorer.spec.io import load_yaml, parse_spec, short
from explorer.spec.schema import Spec

COLUMNS: tuple[str, ...] = ("name", "type", "flow", "repeat", "out", "channels", "kernel", "stride",
                            "residual", "mid_activation", "segments", "more")
_FIELDS = COLUMNS[4:-1]
_WORDS = ("name", "type", "flow", "residual", "mid_activation")  # text as typed, never read as YAML


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value


def _text(value: Any) -> str:
    """A cell as the editor shows it: "" for nothing, "128, 128" for a list, "true" for a flag."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_cell(value))


class _CellError(ValueError):
    """A cell that does not read as a value; spec_from_rows names the row and column."""


def _parse_cell(column: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if column in _WORDS:
            return text
        if column in ("channels", "kernel", "stride") and "," in text:
            inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text  # "[64, 96]" too
            return [_parse_cell(column, part) for part in inner.split(",")]
        try:
            return load_yaml(text)
        except yaml.YAMLError as exc:
            raise _CellError(f"'{short(text)}' is not a value: {getattr(exc, 'problem', None) or exc}") from None
        except SpecError as exc:
            raise _CellError(exc.reason) from None
    if isinstance(value, float) and value != value:  # NaN from an emptied numeric cell
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def spec_to_rows(spec: Spec, *, as_text: bool = False) -> list[dict[str, Any]]:
    """One dict per block with every column (None where a block has no such field).

    ``as_text``: every cell a string ("" for none, "128, 128" for a list), as a table editor whose
    columns are all text edits them; :func:`spec_from_rows` reads either form back.
    """
    rows = []
    for block in spec.blocks:
        data = block.model_dump(mode="json", exclude_defaults=True)
        row: dict[str, Any] = {c: None for c in COLUMNS}
        row.update(name=block.name, type=block.type, flow=block.flow, repeat=block.repeat)
        for field in _FIELDS:
            if field in data:
                row[field] = _cell(data.pop(field))
        rest = {k: v for k, v in data.items() if k not in ("name", "type", "flow", "repeat")}
        row["more"] = yaml.safe_dump(rest, default_flow_style=True, width=10_000, sort_keys=False).strip() if rest else ""
        rows.append({c: _text(v) for c, v in row.items()} if as_text else row)
    return rows


def spec_from_rows(spec: Spec, rows: list[dict[str, Any]]) -> Spec:
    """A new spec with ``spec``'s top-level fields and the blocks in ``rows``; validated."""
    blocks = []
    for i, row in enumerate(rows):
        block: dict[str, Any] = {}
        for column in COLUMNS[:-1]:
            try:
                value = _parse_cell(column, row.get(column))
            except _CellError as exc:
                raise SpecError(f"blocks[{i}].{column}", str(exc)) from None
            if value is not None:
                block[column] = value
        more = row.get("more")
        if isinstance(more, str) and more.strip():
            try:
                extra = load_yaml(more)
            except yaml.YAMLError as exc:
                raise SpecError(f"blocks[{i}].more", f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
            except SpecError as exc:
                raise SpecError(f"blocks[{i}].more", exc.reason) from None
            if not isinstance(extra, dict):
                raise SpecError(f"blocks[{i}].more", "must be a mapping such as {stride: 2}")
            block.update(extra)
        if block:
            blocks.append(block)
    data = spec.model_dump(mode="json", exclude={"blocks"})
    data["blocks"] = blocks
    return parse_spec(data)
