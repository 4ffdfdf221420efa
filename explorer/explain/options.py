"""Method options: typed, validated, with defaults (``steps=16``) and "auto" values resolved per input.

Values may be strings as typed on a command line (``--option steps=16``);
an unknown option or a bad value is an :class:`ExplainError` naming the
method and the options it knows.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from explorer.explain.errors import ExplainError

BASELINES = ("zero", "black", "white")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def _number(kind: type, value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}")  # noqa: TRY004 (a user value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if kind is int:
        if number != int(number):
            raise ValueError("expected an integer")
        return int(number)
    return number


def parse_baseline(value: Any) -> str | float:
    """``zero`` (all-zero input tensor), ``black``/``white`` (those pixels, normalized) or a number."""
    if isinstance(value, str) and value.strip().lower() in BASELINES:
        return value.strip().lower()
    try:
        return float(_number(float, value))
    except ValueError:
        raise ValueError(f"expected {', '.join(BASELINES)} or a number") from None


@dataclass(frozen=True)
class Option:
    """One option of a method: name, type, default (None: worked out from the input), bounds, help."""

    name: str
    kind: type | Callable[[Any], Any]
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def parse(self, value: Any) -> Any:
        """The value as this option's type; ``ValueError`` with the reason when it does not fit."""
        if value is None:
            if self.default is None:
                return None  # "auto": resolved by the method from the input
            raise ValueError("a value is required")
        if self.kind is bool:
            return _bool(value)
        if self.kind in (int, float):
            number = _number(self.kind, value)
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"must be at least {self.minimum:g}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"must be at most {self.maximum:g}")
            return number
        if self.kind is str:
            text = str(value).strip().lower()
            if self.choices and text not in self.choices:
                raise ValueError(f"choose from {', '.join(self.choices)}")
            return text
        return self.kind(value)

    def describe(self) -> str:
        """``steps (int, default 16): ...`` for help texts."""
        kind = getattr(self.kind, "__name__", "value")
        if self.kind is parse_baseline:
            kind = "|".join(BASELINES) + "|number"
        elif self.choices:
            kind = "|".join(self.choices)
        default = "auto" if self.default is None else self.default
        return f"{self.name} ({kind}, default {default}): {self.help}"


def resolve_options(method: str, declared: Sequence[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``given`` against ``declared`` and fill in the defaults (None stays: "auto")."""
    known = {o.name: o for o in declared}
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            listing = ", ".join(known) if known else "none"
            raise ExplainError(f"unknown option '{name}' for {method}{hint}; its options: {listing}")
        try:
            out[name] = known[name].parse(value)
        except ValueError as exc:
            raise ExplainError(f"option '{name}' of {method}: bad value {value!r}: {exc}") from None
    for option in declared:
        out.setdefault(option.name, option.default)
    return out


def parse_option_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["steps=16", "baseline=black"]`` → ``{"steps": "16", "baseline": "black"}`` (values typed later)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ExplainError(f"option '{item}': expected KEY=VALUE, e.g. steps=16")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
