"""Knobs: the paper's ablations and other whole-network changes, as spec overrides.

``apply_knobs(spec, {"residual": False})`` returns a new, validated spec; the
original is untouched. Values may be strings (``"false"``, ``"0.5"``) as typed
on a command line. A knob that does not apply to the spec is an error.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import Annotated

from explorer import resources
from explorer.errors import SpecError, UsageError
from explorer.spec.io import load_yaml, short
from explorer.spec.layers import spec_layers
from explorer.spec.schema import MAX_CLASSES, MAX_INT, Spec, SpecBudgetError, block_paths

_TYPES: dict[str, Any] = {
    "residual": bool,
    "separable": bool,
    "mid_activation": Literal["none", "relu", "elu"],
    "middle_repeats": Annotated[int, Field(ge=0, le=64)],
    "width": Annotated[float, Field(gt=0, le=16)],
    "segments": Union[Annotated[int, Field(ge=1, le=MAX_INT)], Literal["depthwise"]],
    "input_size": Annotated[int, Field(ge=1, le=MAX_INT)],  # and at most the max_input_size limit (coerce_knob)
    "num_classes": Annotated[int, Field(ge=1, le=MAX_CLASSES)],
    "aux_logits": bool,
}

KNOBS: tuple[str, ...] = tuple(_TYPES)

KNOB_HELP: dict[str, str] = {
    "residual": "residual shortcuts of the Xception blocks on (true) or off (false)",
    "separable": "separable convs (true) or, in their place, regular convs with the same input and output "
                 "channels, kernel, stride and padding (false; mid_activation and segments then have no effect)",
    "mid_activation": "activation between depthwise and pointwise convs: none, relu or elu "
                      "(no effect where separable is false)",
    "middle_repeats": "number of middle-flow blocks",
    "width": "channel multiplier for every conv",
    "segments": "groups of every separable conv's spatial conv (1 = full conv, depthwise = one per channel; "
                "no effect where separable is false)",
    "input_size": "input height and width in pixels",
    "num_classes": "classifier outputs",
    "aux_logits": "Inception's auxiliary head on (true) or off (false)",
}

_SEPARABLE = ("xception", "sepconv")


def coerce_knob(name: str, value: Any) -> Any:
    """Validate one knob value (strings are read as YAML scalars)."""
    if name not in _TYPES:
        raise SpecError(name, f"unknown knob (known: {', '.join(KNOBS)})")
    if isinstance(value, str):
        try:
            value = load_yaml(value) if value.strip() else value
        except yaml.YAMLError:
            pass
        except SpecError as exc:  # bounded reading: nested too deep, too many aliases, a number too long
            raise SpecError(name, f"bad value: {exc.reason}") from None
    try:
        value = TypeAdapter(_TYPES[name]).validate_python(value, strict=False)
    except ValidationError as exc:
        raise SpecError(name, f"bad value {short(repr(value) if isinstance(value, str) else value)}: "
                              f"{exc.errors()[0]['msg']}") from None
    if name == "input_size" and value > int(resources.limit("max_input_size")):
        raise SpecBudgetError(name, str(resources.over("max_input_size", "the input", value)),
                              "max_input_size")
    return value


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Read ``["residual=false", "width=0.5"]`` (the CLI's ``--set``) into knob values."""
    knobs: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError("assignments", f"expected KNOB=VALUE, got '{item}'")
        knobs[name.strip()] = coerce_knob(name.strip(), value.strip())
    return knobs


def knob_applies(spec: Spec, name: str) -> bool:
    """Whether ``name`` changes anything this spec can have."""
    types = {b.type for b in spec.blocks}
    return {
        "residual": "xception" in types,
        "separable": bool(types & set(_SEPARABLE)),
        "mid_activation": bool(types & set(_SEPARABLE)),
        "segments": bool(types & set(_SEPARABLE)),
        "middle_repeats": any(b.flow == "middle" and b.repeat is not None for b in spec.blocks),
        "aux_logits": "aux_head" in types,
    }.get(name, name in _TYPES)


def apply_knobs(spec: Spec, knobs: Mapping[str, Any]) -> Spec:
    """A new spec with ``knobs`` applied; raises :class:`SpecError` on a bad or inapplicable knob."""
    values = {name: coerce_knob(name, value) for name, value in knobs.items()}
    for name in values:
        if not knob_applies(spec, name):
            raise SpecError(name, f"does not apply to spec '{spec.name}'")
    data = spec.model_dump(mode="python")
    for name, value in values.items():
        _APPLY[name](spec, data, value)
    from explorer.spec.io import parse_spec

    return parse_spec(data)


def _each(data: dict, types: tuple[str, ...]):
    return (b for b in data["blocks"] if b["type"] in types)


def _residual(spec: Spec, data: dict, on: bool) -> None:
    if not on:
        for b in _each(data, ("xception",)):
            b["residual"] = "none"
        return
    # Turning shortcuts on: identity where the block keeps its shape, else a 1x1 projection.
    first_in: dict[str, tuple[int, ...]] = {}
    last_out: dict[str, tuple[int, ...]] = {}
    for layer in spec_layers(spec):
        first_in.setdefault(layer.block, layer.in_shape)
        last_out[layer.block] = layer.out_shape
    for block, b in zip(spec.blocks, data["blocks"]):
        if b["type"] == "xception" and b["residual"] == "none":
            keeps = all(first_in.get(p) == last_out.get(p) for p in block_paths(block))
            b["residual"] = "identity" if keeps else "projection"


def _set(field: str, types: tuple[str, ...], convert: Callable[[Any], Any] = lambda v: v):
    def apply(spec: Spec, data: dict, value: Any) -> None:
        for b in _each(data, types):
            b[field] = convert(value)
    return apply


def _middle_repeats(spec: Spec, data: dict, n: int) -> None:
    for b in data["blocks"]:
        if b["flow"] == "middle" and b["repeat"] is not None:
            b["repeat"] = n


def _width(spec: Spec, data: dict, w: float) -> None:
    def scale(c: int) -> int:
        return max(1, int(round(c * w)))

    for b in data["blocks"]:
        if "out" in b:
            b["out"] = scale(b["out"])
        if b["type"] in ("xception", "aux_head"):
            b["channels"] = type(b["channels"])(scale(c) for c in b["channels"])
        for branch in b.get("branches", ()):
            for step in branch:
                for conv in [step] if step["op"] == "conv" else [c for p in step.get("paths", ()) for c in p]:
                    conv["out"] = scale(conv["out"])


def _top(field: str):
    def apply(spec: Spec, data: dict, value: Any) -> None:
        data[field] = value
    return apply


def _aux_logits(spec: Spec, data: dict, on: bool) -> None:
    if not on:
        data["blocks"] = [b for b in data["blocks"] if b["type"] != "aux_head"]


_APPLY: dict[str, Callable[[Spec, dict, Any], None]] = {
    "residual": _residual,
    "separable": _set("separable", _SEPARABLE),
    "mid_activation": _set("mid_activation", _SEPARABLE),
    "middle_repeats": _middle_repeats,
    "width": _width,
    "segments": _set("segments", _SEPARABLE, lambda v: None if v == "depthwise" else v),
    "input_size": _top("input_size"),
    "num_classes": _top("num_classes"),
    "aux_logits": _aux_logits,
}


def knob_values(spec: Spec) -> dict[str, Any]:
    """The value each applicable knob has in ``spec`` as it stands (``width`` is 1.0 by definition).

    A UI shows these as the controls' starting values; applying a knob with
    the value shown here leaves the spec as it is.
    """
    values: dict[str, Any] = {"width": 1.0, "input_size": spec.input_size, "num_classes": spec.num_classes}
    xception = [b for b in spec.blocks if b.type == "xception"]
    separable = [b for b in spec.blocks if b.type in _SEPARABLE]
    if xception:
        values["residual"] = any(b.residual != "none" for b in xception)
    if separable:
        values["separable"] = any(b.separable for b in separable)
        values["mid_activation"] = separable[0].mid_activation
        values["segments"] = separable[0].segments or "depthwise"
    middle = [b for b in spec.blocks if b.flow == "middle" and b.repeat is not None]
    if middle:
        values["middle_repeats"] = middle[0].repeat
    if any(b.type == "aux_head" for b in spec.blocks):
        values["aux_logits"] = True
    return {k: values[k] for k in KNOBS if k in values}


def changed_knobs(spec: Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs in ``values`` that differ from what ``spec`` already has."""
    current = knob_values(spec)
    return {k: v for k, v in values.items() if k in current and coerce_knob(k, v) != current[k]}


def describe_knob(name: str, value: Any, *, short: bool = False) -> str:
    """One knob setting in words: ``describe_knob("residual", False)`` → ``'residual connections off'``;
    ``short=True`` (legends): ``'residual off'``, ``'ReLU mid activation'``."""
    value = coerce_knob(name, value)
    if name == "residual":
        return f"residual{'' if short else ' connections'} {'on' if value else 'off'}"
    if name == "separable":
        if short:
            return "separable convs" if value else "regular convs"
        return "separable convolutions" if value else "regular convolutions instead of separable ones"
    if name == "mid_activation":
        word = {"none": "no", "relu": "ReLU", "elu": "ELU"}[value]
        if short:
            return f"{word} mid activation"
        return f"{word} {'activation ' if value == 'none' else ''}between depthwise and pointwise"
    if name == "middle_repeats":
        return f"{value:,} middle-flow block{'s' if value != 1 else ''}"
    if name == "width":
        return f"width ×{value:g}"
    if name == "segments":
        return "depthwise spatial convs" if value == "depthwise" else (
            "full spatial convs (1 segment)" if value == 1 else f"spatial convs in {value:,} segments")
    if name == "input_size":
        return f"{value}×{value} px input"
    if name == "num_classes":
        return f"{value:,} classes"
    return f"auxiliary head {'on' if value else 'off'}"  # aux_logits


def describe_knobs(knobs: Mapping[str, Any], *, short: bool = False) -> str:
    """Several knob settings in words, in the knobs' canonical order, joined by commas."""
    return ", ".join(describe_knob(name, knobs[name], short=short) for name in KNOBS if name in knobs)
