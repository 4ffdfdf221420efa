"""A spec built and given its weights: :func:`load_model` and the :class:`LoadedModel` it returns.

``weights`` is ``"imagenet"`` (the official set that fits the spec, found in or
fetched into torch hub's cache), the name of a registry entry
(``mini_xception.digits``), ``"random"`` (seeded) or a checkpoint path. A spec
changed by knobs loads what still fits of the ImageNet weights and its
:class:`~explorer.weights.io.LoadReport` names the rest; a spec the weights do
not fit is refused before anything is read or downloaded. A local file must
fit exactly (else it is refused, naming the first bad key); pickles are
never executed.

A :class:`LoadedModel` is immutable once built and may be shared between
threads and sessions. The copies made from it (on another device, or the
inference-only copy predictions run) are kept beside it, in a table keyed by
the loaded model, under one lock.

:func:`load_model` keeps the models it loaded within one byte budget, the
limit ``model_cache_bytes``: each model's weights, its copies, and what other
parts keep for it (explain's replicas, see :func:`register_keeper`), counted
by their tensors' bytes. Over the budget, the least recently used models go
(never the one just asked for: a model larger than the whole budget is still
returned, and is then the only one kept), with their copies, and the freed
memory is given back to the OS. A model still in use elsewhere when it goes
is not touched: it only stops being cached.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Callable, Mapping, Protocol

import torch
from torch import nn

from explorer import resources
from explorer.build import build_model
from explorer.spec import Spec, load_spec
from explorer.spec.budget import weight_bytes
from explorer.weights.io import (
    CHECKPOINT_SUFFIXES,
    LoadReport,
    WeightsError,
    load_checkpoint,
    load_weights,
)
from explorer.weights.keys import convert_state_dict
from explorer.weights.preprocess import Preprocess
from explorer.weights.registry import (
    WeightsEntry,
    class_names,
    closest,
    imagenet_for,
    preprocess_for,
    registry,
)

RANDOM, IMAGENET = "random", "imagenet"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network ready to classify: the model (CPU, eval), its spec, weights and preprocessing.

    Immutable, and shared between callers: treat the model as read-only. It
    stays as built (one module per layer) for hooks and attribution; :meth:`on`
    gives it on another device, :meth:`runner` the faster copy that
    predictions use. ``entry`` is the registry entry the weights come from
    (None for random weights and files of one's own).
    """

    model: nn.Module
    spec: Spec
    weights: str                    # label for people: "imagenet", "random (seed 0)", "mine.safetensors"
    kind: str                       # "imagenet", "random" or "file"
    classes: tuple[str, ...]
    preprocess: Preprocess
    report: LoadReport | None = None
    notes: tuple[str, ...] = ()
    entry: WeightsEntry | None = None
    channels_last: bool = True
    fast: bool = True

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_random(self) -> bool:
        return self.kind == RANDOM

    @property
    def layers(self):
        """The network's layers in execution order (:class:`~explorer.spec.Layer`: name, kind, shapes)."""
        return self.model.layers

    def on(self, device: torch.device | str) -> nn.Module:
        """The model itself on ``device`` (the CPU model, else a cached copy): for hooks and attribution."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.model
        return _copy(self, "exact", device, lambda: copy.deepcopy(self.model))

    def runner(self, device: torch.device | str, precision: str = "fp32") -> nn.Module:
        """The network to predict with on ``device``: a cached inference-only copy (batch norms folded,
        ReLUs and adds in place, on the CPU in fp32 weights prepacked; see :mod:`explorer.build.fast`),
        or the model itself with ``fast=False``."""
        device = torch.device(device)
        if not self.fast:
            return self.on(device)
        from explorer.build.fast import fast_copy

        if device.type == "cpu" and precision == "fp32" and self.channels_last:
            return _copy(self, "packed", device, lambda: fast_copy(self.model, pack=True), convert=False)
        return _copy(self, "fast", device, lambda: fast_copy(self.model))

    def drop_copies(self, device_type: str | None = None) -> None:
        """Forget the cached copies (of one device type, e.g. after an out-of-memory error)."""
        with _COPIES_LOCK:
            copies = _COPIES.get(self, {})
            for key in [k for k in copies if device_type is None or k[1].type == device_type]:
                del copies[key]

    def inputs(self, images: list) -> torch.Tensor:
        """Preprocess PIL images into this network's input batch (a gray picture fills every input channel)."""
        x = self.preprocess.batch(images)
        if x.shape[1] == 1 and self.spec.in_channels > 1:
            x = x.expand(-1, self.spec.in_channels, -1, -1).contiguous()
        return x

    def describe(self) -> str:
        """One line: network, weights and what did not load."""
        text = f"{self.spec.name} with {self.weights} weights"
        if self.report is not None and not self.report.complete:
            text += f" ({self.report.summary()})"
        return text


# The copies made from each loaded model, beside it: (kind, device) -> module. Weak keys: a loaded
# model that nobody holds any more takes its copies with it.
_COPIES: weakref.WeakKeyDictionary[LoadedModel, dict] = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def _copy(loaded: LoadedModel, kind: str, device: torch.device, make: Callable[[], nn.Module],
          convert: bool = True) -> nn.Module:
    with _COPIES_LOCK:
        copies = _COPIES.setdefault(loaded, {})
        key = (kind, device)
        made = key not in copies
        if made:
            module = make()
            if convert:
                module = module.to(device)
                if loaded.channels_last:
                    module = module.to(memory_format=torch.channels_last)
            copies[key] = module
        module = copies[key]
    if made:  # a new copy counts in its model's bytes
        trim_cache(loaded.model)
    return module


def resolve_model_spec(spec: Spec | str | None, knobs: Mapping[str, object] | None = None) -> Spec | None:
    """A spec from a Spec, a preset name or a YAML path, with ``knobs`` applied."""
    if spec is None:
        if knobs:
            raise WeightsError("knobs need a spec to apply to")
        return None
    if not isinstance(spec, Spec):
        spec = load_spec(str(spec))
    return spec.with_overrides(**knobs) if knobs else spec


def _file_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
                     origin: WeightsEntry | None) -> dict[str, torch.Tensor]:
    """The key naming that fits ``model`` best (as stored, or converted from the official layout of the
    set it derives from), in the network's order, so that "the first bad key" is the first in the network."""
    own = list(model.state_dict())
    candidates = [dict(state_dict)]
    if origin is not None:
        candidates.append(convert_state_dict(state_dict, origin.layout))
    best = max(candidates, key=lambda sd: sum(k in sd for k in own))
    ordered = {k: best[k] for k in own if k in best}
    ordered.update((k, v) for k, v in best.items() if k not in ordered)
    return ordered


def _load_entry(spec: Spec | None, entry: WeightsEntry | None, seed: int, download: bool | None) -> LoadedModel:
    """An official or shipped set: checked against the spec by structure first, then read and mapped."""
    if entry is None:
        entry, fit = imagenet_for(spec)
    else:
        spec = spec if spec is not None else entry.spec()
        fit = entry.fit(spec)
        if not fit.fits:
            raise WeightsError(f"the weights {entry.name} do not fit spec '{spec.name}': {fit.describe()}")
    checkpoint = load_checkpoint(entry.fetch(download))
    model = build_model(spec, seed=seed)
    report = load_weights(model, convert_state_dict(checkpoint.state_dict, entry.layout))
    notes: tuple[str, ...] = ()
    label = "imagenet" if entry.categories == "imagenet-1k" else entry.name
    if not report.complete:
        total = len(report.loaded) + len(report.missing) + len(report.mismatched)
        label = f"{label} (partial: {len(report.loaded)} of {total} tensors)"
        notes = (f"the {entry.name} weights do not all fit this spec: {report.summary()}",)
    classes = entry.class_names() if spec.num_classes == len(entry.class_names()) else class_names(spec.num_classes)
    return LoadedModel(model, spec, label, IMAGENET if entry.categories == "imagenet-1k" else "file",
                       tuple(classes), entry.preprocess_for(spec), report, notes, entry)


def _load_random(spec: Spec, seed: int) -> LoadedModel:
    model = build_model(spec, seed=seed)
    return LoadedModel(model, spec, f"random (seed {seed})", RANDOM, tuple(class_names(spec.num_classes)),
                       preprocess_for(spec), None, ("random weights: the predictions mean nothing",))


def _load_file(path: Path, spec: Spec | None, seed: int) -> LoadedModel:
    if not path.exists():
        raise WeightsError(f"weights '{path}': neither 'imagenet', 'random', a known weights set "
                           f"({', '.join(registry())}) nor an existing checkpoint file")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise WeightsError(f"'{path.name}' is not a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})")
    checkpoint = load_checkpoint(path)
    if spec is None:
        if checkpoint.spec is None:
            raise WeightsError(f"'{path.name}' does not say which network it belongs to: name a spec (--model SPEC)")
        spec = checkpoint.spec
    model = build_model(spec, seed=seed)
    origin = closest(spec)
    try:
        report = load_weights(model, _file_state_dict(checkpoint.state_dict, model, origin), strict=True)
    except WeightsError as exc:
        raise WeightsError(f"'{path.name}' does not fit spec '{spec.name}': {exc}".replace(
            "the checkpoint does not fit this network: ", "")) from None
    if "preprocess" in checkpoint.metadata:
        try:
            preprocess = Preprocess.from_dict(checkpoint.metadata["preprocess"])
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"'{path.name}' has bad preprocess metadata: {exc}") from None
    else:
        preprocess = preprocess_for(spec, origin)
    return LoadedModel(model, spec, path.name, "file", tuple(class_names(spec.num_classes, checkpoint.classes)),
                       preprocess, report)


# -- the byte-bounded cache -------------------------------------------------------------------------

_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()  # least recently used first
_CACHE_LOCK = threading.Lock()


class Keeper(Protocol):
    """Something that keeps modules made from a model beside it (explain's pool of replicas)."""

    def kept(self, model: nn.Module) -> list[nn.Module]:
        """The modules kept for ``model`` now."""

    def forget(self, model: nn.Module) -> None:
        """Drop what is kept for ``model``."""


_KEEPERS: weakref.WeakSet = weakref.WeakSet()


def register_keeper(keeper: Keeper) -> None:
    """Count what ``keeper`` keeps for a cached model in that model's bytes, and drop it with the model.

    For the layers above this one (explain's replica pool registers itself); a keeper that adds a
    module calls :func:`trim_cache` afterwards.
    """
    _KEEPERS.add(keeper)


def _tensors(module: nn.Module):
    for m in module.modules():
        yield from m._parameters.values()
        yield from m._buffers.values()
        # plain tensor attributes: the prepacked oneDNN weights of the CPU copy are neither
        yield from (v for v in vars(m).values() if isinstance(v, torch.Tensor))


def module_bytes(*modules: nn.Module) -> int:
    """Bytes of the tensors ``modules`` hold (parameters, buffers, tensor attributes such as prepacked
    weights), a storage shared between them counted once."""
    seen: set = set()
    total = 0
    for tensor in chain.from_iterable(_tensors(m) for m in modules):
        if tensor is None:
            continue
        try:
            storage = tensor.untyped_storage()
            key, size = (storage.device, storage.data_ptr()), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # an opaque (oneDNN) tensor has no storage to read
            key, size = id(tensor), tensor.numel() * tensor.element_size()
        if key not in seen:
            seen.add(key)
            total += size
    return total


def _kept(loaded: LoadedModel) -> list[nn.Module]:
    """The model, its copies, and what the keepers keep for either."""
    own = [loaded.model, *_copies_of(loaded)]
    return own + [m for keeper in list(_KEEPERS) for module in own for m in keeper.kept(module)]


def loaded_bytes(loaded: LoadedModel) -> int:
    """What keeping ``loaded`` costs: its weights, its copies and what is kept beside it, in bytes."""
    return module_bytes(*_kept(loaded))


def cache_bytes() -> int:
    """The bytes of every model the cache keeps (as :func:`loaded_bytes` counts them)."""
    with _CACHE_LOCK:
        return sum(loaded_bytes(loaded) for loaded in _CACHE.values())


def cached_models() -> list[LoadedModel]:
    """The models the cache keeps, least recently used first."""
    with _CACHE_LOCK:
        return list(_CACHE.values())


def _evict(keep: LoadedModel | None, room: int = 0) -> list[LoadedModel]:
    """Take the least recently used models out of the cache (never ``keep``) until the rest, plus
    ``room`` bytes about to be loaded, fit the budget; returns them. Under ``_CACHE_LOCK``."""
    budget = int(resources.limit("model_cache_bytes"))
    sizes = {key: loaded_bytes(loaded) for key, loaded in _CACHE.items()}
    total = sum(sizes.values()) + room
    gone = []
    for key in list(_CACHE):
        if total <= budget:
            break
        if _CACHE[key] is not keep:
            total -= sizes[key]
            gone.append(_CACHE.pop(key))
    return gone


def _forget(gone: list[LoadedModel]) -> None:
    """Drop the copies and kept modules of models that left the cache (emptying ``gone``), and give the
    memory back to the OS. A session still using one of them keeps it whole: nothing in it is changed,
    only the cache's references are dropped."""
    if not gone:
        return
    while gone:
        loaded = gone.pop()
        with _COPIES_LOCK:
            copies = list(_COPIES.pop(loaded, {}).values())
        for keeper in list(_KEEPERS):
            for module in (loaded.model, *copies):
                keeper.forget(module)
        del loaded, copies
    resources.release_memory()


def trim_cache(model: nn.Module | None = None) -> None:
    """Hold the cache to its budget after what it keeps grew (a new copy or replica of ``model``): the
    cached model ``model`` is (or was copied from) counts as just used and stays."""
    with _CACHE_LOCK:
        keep = None
        if model is not None:
            for key, loaded in _CACHE.items():
                if loaded.model is model or any(c is model for c in _copies_of(loaded)):
                    keep = loaded
                    _CACHE.move_to_end(key)
                    break
        gone = _evict(keep)
    _forget(gone)


def _copies_of(loaded: LoadedModel) -> list[nn.Module]:
    with _COPIES_LOCK:
        return list(_COPIES.get(loaded, {}).values())


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_size, st.st_mtime_ns)


def _cache_key(spec: Spec | None, weights: str, seed: int) -> tuple:
    digest = spec.digest() if spec else None
    if weights == RANDOM:
        return (digest, weights, seed)
    if weights == IMAGENET:
        try:
            path = imagenet_for(spec)[0].path
        except WeightsError:
            return (digest, weights, seed)  # refused before any file is read: nothing to cache on
        return (digest, weights, seed, str(path), _stat(path))
    if weights in registry():
        path = registry()[weights].path
        return (digest, weights, seed, str(path), _stat(path))
    path = Path(weights).resolve()
    return (digest, str(path), seed, _stat(path))


def load_model(spec: Spec | str | None, weights: str | os.PathLike = IMAGENET, *,
               knobs: Mapping[str, object] | None = None, seed: int = 0, download: bool | None = None,
               channels_last: bool = True, cache: bool = True) -> LoadedModel:
    """Build ``spec`` and give it ``weights``: ``"imagenet"``, a registry name, ``"random"`` or a checkpoint path.

    ``spec`` is a :class:`Spec`, a preset name or a YAML path; it may be None
    when the weights carry their spec (a registry entry, an explorer
    checkpoint). ``imagenet`` loads what fits a changed spec and reports the
    rest; a file must fit exactly. Raises :class:`WeightsError` (one line)
    when the weights cannot be had or do not fit. Results are cached within
    the byte budget ``model_cache_bytes`` (see the module docstring): the
    returned model is shared, read-only.
    """
    resolved = resolve_model_spec(spec, knobs)
    weights = os.fspath(weights)
    if resolved is None and weights in (IMAGENET, RANDOM):
        raise WeightsError(f"'{weights}' weights need a spec (--model SPEC)")
    key = _cache_key(resolved, weights, seed) if cache else None
    if key is not None:
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
            # room first, so that the old models are gone before the new one is built
            gone = _evict(None, weight_bytes(resolved) if resolved is not None else 0)
        _forget(gone)
    if weights == IMAGENET:
        loaded = _load_entry(resolved, None, seed, download)
    elif weights in registry():
        loaded = _load_entry(resolved, registry()[weights], seed, download)
    elif weights == RANDOM:
        loaded = _load_random(resolved, seed)
    else:
        loaded = _load_file(Path(weights), resolved, seed)
    if channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    loaded = replace(loaded, channels_last=channels_last)
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = loaded
            _CACHE.move_to_end(key)
            gone = _evict(loaded)
        _forget(gone)
    return loaded


def load_or_random(spec: Spec | str | None, weights: str | os.PathLike = IMAGENET, **kwargs
                   ) -> tuple[LoadedModel, str | None]:
    """:func:`load_model`, or, when the weights cannot be had, the seeded random network and the reason.

    For the app: it keeps working offline, the weights labelled ``random (seed 0)``.
    """
    try:
        return load_model(spec, weights, **kwargs), None
    except WeightsError as exc:
        if spec is None:
            raise
        kwargs.pop("download", None)
        return load_model(spec, RANDOM, **kwargs), str(exc)


def clear_cache() -> None:
    """Forget the cached models (and their copies), and give the memory back to the OS."""
    with _CACHE_LOCK:
        gone = list(_CACHE.values())
        _CACHE.clear()
    _forget(gone)
