"""What every attribution method is: a name, Captum's class, options, and ``attribute(job)``.

Each method lives in its own module and registers itself here; the registry
maps CLI names and aliases (``ig``, ``integrated-gradients``) to one instance.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from explorer.explain.errors import ExplainError
from explorer.explain.options import Option, resolve_options
from explorer.explain.progress import CountingForward

SIGNS: tuple[str, ...] = ("signed", "absolute", "positive")


@dataclass
class Job:
    """One attribution to compute: everything a method's :meth:`Method.attribute` needs."""

    model: nn.Module                  # a private replica: the method may hook it
    forward: CountingForward          # Captum's forward_func: the model with progress counting
    inputs: torch.Tensor              # 1 x C x H x W on the model's device (Captum sets requires_grad)
    target: int
    options: dict[str, Any]
    layer_name: str | None = None
    mean: tuple[float, ...] | None = None   # the preprocessing's normalization, for pixel baselines
    std: tuple[float, ...] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def layer(self) -> nn.Module:
        """The module at :attr:`layer_name` in the replica."""
        return self.model.get_submodule(self.layer_name)

    def baseline(self, value: str | float) -> torch.Tensor | float:
        """The reference input: ``zero``, ``black``/``white`` pixels normalized by the preprocessing, a number."""
        if isinstance(value, (int, float)):
            return float(value)
        if value == "zero":
            return 0.0
        if self.mean is None or self.std is None:
            raise ExplainError(f"baseline '{value}' needs the preprocessing's mean and std; use 'zero' or a number")
        pixel = 0.0 if value == "black" else 1.0
        x = self.inputs
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((pixel - mean) / std).expand_as(x).contiguous()


class Method:
    """An attribution method. Subclasses set the class attributes and :meth:`attribute`."""

    name: ClassVar[str]
    title: ClassVar[str]
    captum: ClassVar[str]                 # the Captum class(es) it runs
    paper: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    uses_layer: ClassVar[bool] = False
    reports_progress: ClassVar[bool] = False
    clean_first_call: ClassVar[bool] = True  # the first forward pass sees the unperturbed input
    # it puts no hook on the network's modules (only calls it and differentiates), so it may run on the
    # folded inference copy (see explorer.explain.safety); Grad-CAM and the guided methods hook modules
    hook_free: ClassVar[bool] = False
    default_sign: ClassVar[str] = "absolute"

    def resolve(self, given: dict[str, Any], inputs: torch.Tensor) -> dict[str, Any]:
        """Validated options with every default, "auto" ones worked out for ``inputs`` (1 x C x H x W)."""
        return resolve_options(self.name, self.options, given)

    def expected_calls(self, options: dict[str, Any], inputs: torch.Tensor) -> int:
        """How many forward passes the method makes (for progress)."""
        return 1

    def passes(self, options: dict[str, Any], inputs: torch.Tensor) -> tuple[int, int]:
        """How many images go through the network forward, and how many of those backward too (for the
        time estimate: a batch of 8 is 8 images). Gradient methods: the input once, both ways."""
        return 1, 1

    def attribute(self, job: Job) -> torch.Tensor:
        """The attribution, shaped like the input (1 x C x H x W) or 1 x 1 x H x W for Grad-CAM."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: title, Captum class, options."""
        opts = "; ".join(o.describe() for o in self.options) or "no options"
        return f"{self.name}: {self.title} (Captum {self.captum}). Options: {opts}"


METHODS: dict[str, Method] = {}
_ALIASES: dict[str, str] = {}
# the order pickers and help texts list the methods in: simple to elaborate, then the slow one
ORDER: tuple[str, ...] = ("saliency", "ig", "smoothgrad", "guided-backprop", "gradcam", "guided-gradcam",
                          "occlusion")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under its name and aliases."""
    method = cls()
    METHODS[cls.name] = method
    for alias in (cls.name, *cls.aliases):
        _ALIASES[alias] = cls.name
    return cls


def method_names() -> list[str]:
    """The methods' CLI names (:data:`ORDER` first, then any other registered method)."""
    return sorted(METHODS, key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))


def get_method(name: str | Method) -> Method:
    """The method called ``name`` (or one of its aliases); an :class:`ExplainError` with close names if none."""
    if isinstance(name, Method):
        return name
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if key in _ALIASES:
        return METHODS[_ALIASES[key]]
    close = difflib.get_close_matches(key, list(_ALIASES), n=1)
    hint = f" (did you mean '{_ALIASES[close[0]]}'?)" if close else ""
    raise ExplainError(f"unknown method '{name}'{hint}; choose from {', '.join(method_names())}")


def check_sign(sign: str) -> str:
    """``signed``, ``absolute`` or ``positive`` (an :class:`ExplainError` otherwise)."""
    if sign not in SIGNS:
        raise ExplainError(f"unknown sign '{sign}': choose from {', '.join(SIGNS)}")
    return sign


def registered(names: Sequence[str]) -> list[Method]:
    """The methods for ``names`` (each checked)."""
    return [get_method(n) for n in names]
