"""Checkpoints onto spec-built networks: key mapping, safe reading and loading reports.

The official checkpoints map onto the presets' module paths by a simple rule:

* ``timm-legacy-xception``: ``conv1/bn1`` and ``conv2/bn2`` are the entry flow's
  two convs; ``block1..3`` the entry blocks, ``block4..11`` the middle blocks,
  ``block12`` the exit block; inside a block ``rep`` holds [ReLU, SeparableConv,
  BN] triples (block1 lacks the first ReLU) and ``skip/skipbn`` the projection;
  ``conv3/bn3`` and ``conv4/bn4`` are the exit separable convs, ``fc`` the classifier.
* ``torchvision-inception-v3``: the presets use torchvision's names, so keys map
  as they are.

Pickled files are never executed: ``.pth``/``.pt`` are read with
``torch.load(weights_only=True)``, ``.safetensors`` with safetensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from explorer.errors import ExplorerError

SOURCES = ("timm-legacy-xception", "torchvision-inception-v3", "explorer")

_XCEPTION_TOP = {
    "conv1": "entry.conv1.conv", "bn1": "entry.conv1.bn",
    "conv2": "entry.conv2.conv", "bn2": "entry.conv2.bn",
    "conv3.conv1": "exit.sep1.depthwise", "conv3.pointwise": "exit.sep1.pointwise", "bn3": "exit.sep1.bn",
    "conv4.conv1": "exit.sep2.depthwise", "conv4.pointwise": "exit.sep2.pointwise", "bn4": "exit.sep2.bn",
    "fc": "exit.fc",
}
_ENTRY_BLOCKS, _MIDDLE_BLOCKS = 3, 8
_REP_ROLE = {0: "act", 1: "sep", 2: "bn"}


class WeightsError(ExplorerError, ValueError):
    """A checkpoint cannot be read or does not fit the network; the message says why."""


def _xception_block(n: int) -> str:
    if n <= _ENTRY_BLOCKS:
        return f"entry.block{n}"
    if n <= _ENTRY_BLOCKS + _MIDDLE_BLOCKS:
        return f"middle.block{n - _ENTRY_BLOCKS}"
    return f"exit.block{n - _ENTRY_BLOCKS - _MIDDLE_BLOCKS}"


def _xception_key(key: str) -> str:
    match = re.match(r"block(\d+)\.(.+)", key)
    if not match:
        for old, new in _XCEPTION_TOP.items():
            if key.startswith(old + "."):
                return new + key[len(old):]
        return key
    n, rest = int(match[1]), match[2]
    block = _xception_block(n)
    if rest.startswith("skipbn."):
        return f"{block}.skip.bn.{rest[len('skipbn.'):]}"
    if rest.startswith("skip."):
        return f"{block}.skip.conv.{rest[len('skip.'):]}"
    rep = re.match(r"rep\.(\d+)\.(.+)", rest)
    if not rep:
        return f"{block}.{rest}"
    position = int(rep[1]) + (1 if n == 1 else 0)  # block1 starts without its ReLU
    index, role = position // 3 + 1, _REP_ROLE[position % 3]
    tail = rep[2].replace("conv1.", "depthwise.", 1) if role == "sep" else rep[2]
    return f"{block}.{role}{index}.{tail}"


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename an official checkpoint's keys to the presets' module paths."""
    if source == "timm-legacy-xception":
        return {_xception_key(k): v for k, v in state_dict.items()}
    if source in ("torchvision-inception-v3", "explorer"):
        return dict(state_dict)
    raise WeightsError(f"unknown checkpoint source '{source}' (known: {', '.join(SOURCES)})")


@dataclass
class LoadReport:
    """What a checkpoint gave a network: loaded keys and what did not fit."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One readable paragraph: what loaded and, by name, what did not."""
        if self.complete:
            return f"all {len(self.loaded)} tensors loaded"
        parts = [f"{len(self.loaded)} tensors loaded"]
        if self.mismatched:
            k, want, got = self.mismatched[0]
            parts.append(f"{len(self.mismatched)} of the wrong shape (first: {k}, network "
                         f"{tuple(want)}, checkpoint {tuple(got)})")
        if self.missing:
            parts.append(f"{len(self.missing)} left at their initial values (first: {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unused (first: {self.unexpected[0]})")
        return "; ".join(parts)


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                 strict: bool = False) -> LoadReport:
    """Copy what fits of ``state_dict`` into ``model`` and report the rest.

    ``strict=True`` refuses (``WeightsError``, naming the first bad key) any
    checkpoint that does not fit exactly, and changes nothing then.
    """
    own = model.state_dict()
    report = LoadReport()
    usable: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(own[key].shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
            report.mismatched.append((key, tuple(own[key].shape), got))
        else:
            usable[key] = value
    mismatched = {k for k, *_ in report.mismatched}
    report.missing = [k for k in own if k not in usable and k not in mismatched
                      and not k.endswith("num_batches_tracked")]
    report.loaded = list(usable)
    if strict and not report.complete:
        raise WeightsError(f"the checkpoint does not fit this network: {report.summary()}")
    model.load_state_dict(usable, strict=False)
    return report


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a state dict (and metadata, for safetensors) without running any pickle.

    A ``.pth``/``.pt`` file is loaded with ``weights_only=True``: a pickle that
    carries code is refused with :class:`WeightsError`. A ``{"state_dict": ...}``
    or ``{"model": ...}`` wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no checkpoint file at '{path}'")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as exc:  # safetensors raises several types on a bad file
            raise WeightsError(f"'{path.name}' is not a valid safetensors file: {exc}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"'{path.name}' was refused: it is not a plain tensor checkpoint "
                           f"(weights_only loading failed: {first})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"'{path.name}' holds no state dict of tensors")
    return dict(obj), {}


# -- the explorer's own checkpoints ---------------------------------------------------------------
# A safetensors file whose metadata holds the spec (YAML), the class names (JSON list) and any
# extra string fields (accuracy, data set, command): the file alone rebuilds its network.

def save_checkpoint(path: str | Path, model: nn.Module, spec, classes: list[str] | None = None,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s state dict and ``spec`` (a :class:`explorer.spec.Spec`) as safetensors."""
    import json

    from safetensors.torch import save_file

    meta = {"format": "xception-explorer/1", "spec": spec.to_yaml()}
    if classes is not None:
        meta["classes"] = json.dumps(list(classes))
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: tensors, and the spec and classes when the file carries them."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str]
    spec: object | None = None
    classes: list[str] | None = None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint safely; a file written by :func:`save_checkpoint` also yields its spec."""
    import json

    from explorer.spec import parse_spec

    state_dict, metadata = read_checkpoint(path)
    spec = parse_spec(metadata["spec"]) if "spec" in metadata else None
    classes = json.loads(metadata["classes"]) if "classes" in metadata else None
    return Checkpoint(state_dict, metadata, spec, classes)
