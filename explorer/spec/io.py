"""Reading and writing specs: YAML text, files and the shipped presets.

YAML is read with bounds (:func:`load_yaml`): text size, nesting depth, the
node count with every alias expanded (a "billion laughs" document is refused
before it is built) and the digits of a number, each refused with one
:class:`SpecError` line.
"""

from __future__ import annotations

import reprlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from explorer.errors import ExplorerError, SpecError
from explorer.resources import BudgetError
from explorer.spec.layers import spec_layers
from explorer.spec.schema import BLOCK_TYPES, Spec, SpecBudgetError

PRESET_PACKAGE = "explorer.spec.presets"

# Bounds on a spec's YAML, far above any real spec (the Inception V3 preset: 9 KB, 1,408 nodes, 10 deep).
MAX_SPEC_CHARS = 8 * 2**20
MAX_YAML_NODES = 100_000   # counted with every alias expanded, as validation would walk them
MAX_YAML_DEPTH = 32


def _mark(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "yaml"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting beyond :data:`MAX_YAML_DEPTH` while it composes (before
    Python's recursion limit) and numbers too long for ``int()`` (Python's 4,300-digit cap)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise SpecError(_mark(self.peek_event().start_mark),
                                f"YAML nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise SpecError(_mark(node.start_mark), f"number too large ({len(node.value):,} digits)") from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _check_nodes(root: yaml.Node) -> None:
    """Refuse a document whose nodes, every alias expanded, are too many or nest too deep (or that
    refers to itself): what validation would walk, counted on the composed graph (each node once)."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded node count, height)
    open_: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_:
            raise SpecError(_mark(node.start_mark), "a YAML alias refers to the node that holds it")
        if key not in done:
            if depth > MAX_YAML_DEPTH:
                raise SpecError(_mark(node.start_mark), f"YAML nested more than {MAX_YAML_DEPTH} levels deep "
                                                        "(aliases expanded)")
            open_.add(key)
            size, height = 1, 0
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [item for pair in node.value for item in pair]
            else:
                children = []
            for child in children:
                child_size, child_height = visit(child, depth + 1)
                size, height = size + child_size, max(height, child_height + 1)
                if size > MAX_YAML_NODES:
                    raise SpecError(_mark(node.start_mark), f"YAML too large: more than {MAX_YAML_NODES:,} "
                                                            "values with its aliases expanded")
            open_.discard(key)
            done[key] = (size, height)
        size, height = done[key]
        if depth + height > MAX_YAML_DEPTH:
            raise SpecError(_mark(node.start_mark), f"YAML nested more than {MAX_YAML_DEPTH} levels deep "
                                                    "(aliases expanded)")
        return size, height

    visit(root, 0)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with bounds: :class:`SpecError` for text over :data:`MAX_SPEC_CHARS`, nesting over
    :data:`MAX_YAML_DEPTH`, more than :data:`MAX_YAML_NODES` nodes with aliases expanded, or a number too
    long to read; :class:`yaml.YAMLError` for bad syntax."""
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError("spec", f"the YAML is {len(text):,} characters, over the {MAX_SPEC_CHARS:,} a spec may have")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node)
        return loader.construct_document(node)
    except RecursionError:
        raise SpecError("spec", "YAML nested too deeply") from None
    finally:
        loader.dispose()


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
            data = load_yaml(source)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(_mark(getattr(exc, "problem_mark", None)), f"YAML syntax error: {problem}") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise SpecError("spec", f"expected a mapping of fields, got {type(data).__name__}")
    try:
        spec = Spec.model_validate(data)
        # shape propagation: raises SpecError if the network cannot run, SpecBudgetError over max_layers
        spec_layers(spec)
    except ValidationError as exc:
        raise _spec_error(exc, data) from None
    except RecursionError:  # plain data nested deeper than Python recurses
        raise SpecError("spec", "nested too deeply") from None
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
        if path.stat().st_size > MAX_SPEC_CHARS * 4:  # before reading: no UTF-8 text that long is a spec
            raise SpecError("spec", f"'{text}' is {path.stat().st_size:,} bytes: too large for a spec")
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
        given = err["input"].get("type") if isinstance(err["input"], dict) else err["input"]
        msg = f"unknown block type '{short(given)}' (known: {', '.join(BLOCK_TYPES)})"
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, BudgetError):  # a limit (max_layers, max_input_size): the field and the limit
        return SpecBudgetError(path, msg, cause.limit)
    if isinstance(cause, ExplorerError) and not isinstance(cause, SpecError):
        return cause  # e.g. a limit's value that cannot be read (ConfigError): says so itself
    return SpecError(path, msg)


def short(value: object, width: int = 40) -> str:
    """``value`` for an error message: at most ``width`` characters (a huge number is not even printed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a {value.bit_length():,}-bit number"
    text = value if isinstance(value, str) else reprlib.repr(value)  # reprlib: bounded, even for nested data
    return text if len(text) <= width else text[:width - 3] + "..."


def _block_name(data: dict[str, Any], index: int) -> str | None:
    blocks = data.get("blocks")
    if isinstance(blocks, list) and 0 <= index < len(blocks) and isinstance(blocks[index], dict):
        name = blocks[index].get("name")
        return str(name) if name is not None else None
    return None
