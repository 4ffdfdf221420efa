"""Checkpoints read and written safely, and copied onto spec-built networks with a report.

Pickled files are never executed: ``.pth``/``.pt`` files are read with
``torch.load(weights_only=True)``, ``.safetensors`` files with safetensors.
The explorer writes its own checkpoints (the lab's too) as safetensors whose
metadata carries the spec, the class names and the preprocessing, so a file
alone rebuilds its network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from explorer.errors import ExplorerError

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


class WeightsError(ExplorerError, ValueError):
    """Weights that cannot be had, read or fitted to the network; the message says why."""


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
# extra string fields (accuracy, data set, command, preprocessing): the file alone rebuilds its network.

def save_checkpoint(path: str | Path, model: nn.Module, spec, classes: list[str] | None = None,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s state dict and ``spec`` (a :class:`explorer.spec.Spec`) as safetensors."""
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


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata (its spec, classes, accuracy...) without reading a tensor."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no checkpoint file at '{path}'")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types on a bad file
        raise WeightsError(f"'{path.name}' is not a valid safetensors file: {exc}") from None


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: tensors, and the spec and classes when the file carries them."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str]
    spec: object | None = None
    classes: list[str] | None = None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint safely; a file written by :func:`save_checkpoint` also yields its spec."""
    from explorer.spec import parse_spec

    state_dict, metadata = read_checkpoint(path)
    spec = parse_spec(metadata["spec"]) if "spec" in metadata else None
    classes = json.loads(metadata["classes"]) if "classes" in metadata else None
    return Checkpoint(state_dict, metadata, spec, classes)


def load_trained(path: str | Path):
    """Rebuild the network a checkpoint describes and load its weights exactly; in ``eval()``.

    Returns ``(model, checkpoint)``. The file must carry its spec (written by
    :func:`save_checkpoint`, e.g. by the lab); the model is built with seed 0,
    so the global random state is left alone.
    """
    from explorer.build import build_model

    checkpoint = load_checkpoint(path)
    if checkpoint.spec is None:
        raise WeightsError(f"'{Path(path).name}' carries no spec: it was not written by the explorer")
    model = build_model(checkpoint.spec, seed=0)
    load_weights(model, checkpoint.state_dict, strict=True)
    return model.eval(), checkpoint
