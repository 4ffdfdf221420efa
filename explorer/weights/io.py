"""Checkpoints read and written safely, and copied onto spec-built networks with a report.

Pickled files are never executed: ``.pth``/``.pt`` files are read with
``torch.load(weights_only=True)``, ``.safetensors`` files with safetensors.
Nothing is inflated or read beyond the budget: before a file is loaded, the
sizes it declares (a torch zip's central directory, a safetensors header, a
legacy pickle's own size) are checked against ``max_weight_bytes``
(:func:`check_checkpoint_size`), so a small zip bomb is refused before torch
allocates what it claims.
The explorer writes its own checkpoints (the lab's too) as safetensors whose
metadata carries the spec, the class names and the preprocessing, so a file
alone rebuilds its network.
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from explorer.errors import ExplorerError
from explorer.files import FilesError, atomic_path, zip_members
from explorer.resources import BudgetError, limit, over

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
# Beyond the tensors' bytes a checkpoint holds its pickle (or header) and small records.
RECORDS_ALLOWANCE = 16 * 2**20
# A member of a torch zip that inflates more than this many times is a bomb, not weights (torch
# stores members uncompressed; deflated float weights shrink by a few percent, a run of zeros ~1000×).
MAX_RATIO = 100
RATIO_FROM_BYTES = 64 * 2**20  # small members (the pickle, version records) may compress well
MAX_MEMBERS = 1_000_000
SAFETENSORS_HEADER_MAX = 100 * 2**20  # what safetensors itself accepts


class WeightsError(ExplorerError, ValueError):
    """Weights that cannot be had, read or fitted to the network; the message says why."""


class WeightsBudgetError(WeightsError, BudgetError):
    """A checkpoint that would need more memory than ``max_weight_bytes`` once read (a
    :class:`WeightsError` and a :class:`~explorer.resources.BudgetError`)."""


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


def _too_big(path: Path, need: int) -> WeightsBudgetError:
    return WeightsBudgetError("max_weight_bytes", str(over("max_weight_bytes", f"reading '{path.name}'", need)))


def _check_budget(path: Path, need: int) -> None:
    if need > int(limit("max_weight_bytes")) + RECORDS_ALLOWANCE:
        raise _too_big(path, need)


def _check_torch_zip(path: Path) -> None:
    """A torch zip's declared sizes against the budget, from its central directory (nothing inflated).

    torch allocates each record at the size the central directory declares and inflates into that
    buffer, so the declared sizes bound what loading it takes.
    """
    what = f"'{path.name}'"
    try:
        with open(path, "rb") as f:
            members = zip_members(f, what=what, max_members=MAX_MEMBERS)
    except FilesError as exc:
        raise WeightsError(f"{exc} (not a torch checkpoint)") from None
    _check_budget(path, sum(info.file_size for info in members))
    for info in members:
        if info.file_size > RATIO_FROM_BYTES and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise WeightsError(f"{what} was refused: its record '{info.filename[:80]}' would inflate "
                               f"{info.file_size / max(1, info.compress_size):,.0f}× (from "
                               f"{info.compress_size:,} to {info.file_size:,} bytes): a zip bomb, not weights")


def _check_safetensors(path: Path) -> None:
    """A safetensors file's header: readable, and the tensors it declares within the budget."""
    what = f"'{path.name}'"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(SAFETENSORS_HEADER_MAX, size - 8):
            raise WeightsError(f"{what} is not a valid safetensors file (its header length is wrong)")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise WeightsError(f"{what} is not a valid safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{what} is not a valid safetensors file (its header is not a JSON object)")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise WeightsError(f"{what} is not a valid safetensors file (tensor '{str(key)[:80]}' has no offsets)")
        end = max(end, offsets[1])
    _check_budget(path, end)


def check_checkpoint_size(path: str | Path) -> None:
    """Refuse a checkpoint whose tensors would need more than ``max_weight_bytes`` (plus a small
    allowance for its records), from what it declares and without inflating anything.

    A torch zip (``.pth``/``.pt`` written by ``torch.save``): its central directory's sizes (a member
    that would inflate absurdly is refused too). A safetensors file: its header's offsets. A legacy
    pickle: its own size (``weights_only`` loading reads tensors from the file).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        _check_safetensors(path)
        return
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":  # how torch.load tells its zip format from a legacy pickle
        _check_torch_zip(path)
    else:
        _check_budget(path, path.stat().st_size)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a state dict (and metadata, for safetensors) without running any pickle.

    A ``.pth``/``.pt`` file is loaded with ``weights_only=True``: a pickle that
    carries code is refused with :class:`WeightsError`. A ``{"state_dict": ...}``
    or ``{"model": ...}`` wrapper is unwrapped. A file that declares more than
    the budget is refused first (:func:`check_checkpoint_size`).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no checkpoint file at '{path}'")
    check_checkpoint_size(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as exc:  # safetensors raises several types on a bad file
            raise WeightsError(f"'{path.name}' is not a valid safetensors file: {exc}") from None
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol; the refusal says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
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

def _checkpoint_parts(model: nn.Module, spec, classes: list[str] | None,
                      metadata: Mapping[str, str] | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    meta = {"format": "xception-explorer/1", "spec": spec.to_yaml()}
    if classes is not None:
        meta["classes"] = json.dumps(list(classes))
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    return tensors, meta


def save_checkpoint(path: str | Path, model: nn.Module, spec, classes: list[str] | None = None,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s state dict and ``spec`` (a :class:`explorer.spec.Spec`) as safetensors
    (whole or not at all: written to a temporary file that then replaces ``path``)."""
    from safetensors.torch import save_file

    tensors, meta = _checkpoint_parts(model, spec, classes, metadata)
    path = Path(path)
    with atomic_path(path, mode=None) as temporary:
        save_file(tensors, str(temporary), metadata=meta)
    return path


def checkpoint_bytes(model: nn.Module, spec, classes: list[str] | None = None,
                     metadata: Mapping[str, str] | None = None) -> bytes:
    """What :func:`save_checkpoint` writes, as bytes (a download, with no file left behind)."""
    from safetensors.torch import save

    return save(*_checkpoint_parts(model, spec, classes, metadata))


def parse_classes(text: str, name: str = "the checkpoint") -> list[str]:
    """A checkpoint's ``classes`` metadata: a JSON list of strings, else a one-line :class:`WeightsError`."""
    try:
        classes = json.loads(text)
    except ValueError:
        raise WeightsError(f"{name} has bad classes metadata: not JSON (expected a list of class names)") from None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise WeightsError(f"{name} has bad classes metadata: expected a JSON list of class names (strings), "
                           f"got {type(classes).__name__}" + (" with other items" if isinstance(classes, list) else ""))
    return classes


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata (its spec, classes, accuracy...) without reading a tensor."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no checkpoint file at '{path}'")
    check_checkpoint_size(path)
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
    classes = parse_classes(metadata["classes"], f"'{Path(path).name}'") if "classes" in metadata else None
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
