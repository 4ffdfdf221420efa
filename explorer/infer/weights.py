"""Which weights a network runs with: the official ImageNet checkpoints, seeded random, or a local file.

``imagenet`` means the published checkpoints, found in (or fetched into) torch
hub's cache, ``torch.hub.get_dir()/checkpoints``, under their official file names:

* Xception: ``xception-43020ad28.pth`` (timm ``legacy_xception``),
* Inception V3: ``inception_v3_google-0cc3c7bd.pth`` (torchvision ``IMAGENET1K_V1``).

They are mapped onto the spec-built network by :mod:`explorer.weights`; a spec
changed by knobs loads what still fits and its :class:`LoadReport` names the
rest. A local file must fit exactly (else it is refused, naming the first bad
key); pickles are never executed.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from explorer.build import build_model
from explorer.infer.preprocess import Preprocess, preprocess_for
from explorer.spec import Spec, load_spec
from explorer.weights import LoadReport, WeightsError, convert_state_dict, load_checkpoint, load_weights

OFFLINE_ENV = "EXPLORER_OFFLINE"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
_DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class OfficialWeights:
    """A published ImageNet checkpoint: where it comes from and how its keys map."""

    family: str
    source: str          # the key mapping, for explorer.weights.convert_state_dict
    file_name: str
    url: str
    reference: str       # the reference implementation, for people
    hash_prefix: str | None = None  # sha256 prefix checked after a download (torchvision's convention)


OFFICIAL: dict[str, OfficialWeights] = {
    "xception": OfficialWeights(
        "xception", "timm-legacy-xception", "xception-43020ad28.pth",
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/xception-43020ad28.pth",
        "timm legacy_xception"),
    "inception_v3": OfficialWeights(
        "inception_v3", "torchvision-inception-v3", "inception_v3_google-0cc3c7bd.pth",
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        "torchvision Inception_V3_Weights.IMAGENET1K_V1", hash_prefix="0cc3c7bd"),
}


def spec_family(spec: Spec) -> str | None:
    """``xception``, ``inception_v3`` or None: the reference network a spec derives from.

    The preset name decides; a renamed spec is judged by its blocks.
    """
    if spec.name in OFFICIAL:
        return spec.name
    types = {block.type for block in spec.blocks}
    if "xception" in types:
        return "xception"
    if "inception" in types:
        return "inception_v3"
    return None


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoints folder (``$TORCH_HOME/hub/checkpoints`` unless ``torch.hub.set_dir`` moved it)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed(download: bool | None = None) -> bool:
    """Whether fetching a checkpoint may be tried (``$EXPLORER_OFFLINE=1`` forbids it)."""
    if download is not None:
        return download
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def missing_message(official: OfficialWeights, reason: str = "") -> str:
    """The one line that says how to provide an official checkpoint by hand."""
    why = f" ({reason})" if reason else ""
    return (f"the ImageNet weights for {official.family} are not available offline{why}: put "
            f"'{official.file_name}' (from {official.url}) in the folder '{hub_checkpoint_dir()}', "
            f"or use your own checkpoint (upload it, or --weights PATH), or random weights (--weights random)")


def _download(official: OfficialWeights, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".part{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(official.url, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
        if official.hash_prefix and not digest.hexdigest().startswith(official.hash_prefix):
            raise WeightsError(f"the download of '{official.file_name}' is corrupt (sha256 mismatch)")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def official_checkpoint(family: str, *, download: bool | None = None) -> Path:
    """The path of ``family``'s official checkpoint in torch hub's cache, downloading it if allowed.

    Offline with nothing cached: a :class:`WeightsError` naming the file and the folder.
    """
    official = OFFICIAL[family]
    path = hub_checkpoint_dir() / official.file_name
    if path.is_file():
        return path
    if not downloads_allowed(download):
        raise WeightsError(missing_message(official, "downloads are off"))
    try:
        _download(official, path)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a full disk: all the same to the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(missing_message(official, f"the download failed: {first}")) from None
    return path


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights meta (no download)."""
    from torchvision.models import Inception_V3_Weights

    return list(Inception_V3_Weights.IMAGENET1K_V1.meta["categories"])


def class_names(num_classes: int, given: list[str] | None = None) -> list[str]:
    """``given`` when it fits, ImageNet's names for 1000 outputs, else ``class 0``, ``class 1``, ..."""
    if given is not None and len(given) == num_classes:
        return list(given)
    if num_classes == 1000:
        return imagenet_classes()
    return [f"class {i}" for i in range(num_classes)]


@dataclass
class LoadedModel:
    """A network ready to classify: the model (CPU, eval), its spec, weights and preprocessing.

    The model may be shared (cached) between callers: treat it as read-only.
    It stays as built (one module per layer) for hooks and attribution; :meth:`on`
    gives it on another device, :meth:`runner` the faster copy that predictions use.
    """

    model: nn.Module
    spec: Spec
    weights: str                    # label for people: "imagenet", "random (seed 0)", "mine.safetensors"
    kind: str                       # "imagenet", "random" or "file"
    classes: list[str]
    preprocess: Preprocess
    report: LoadReport | None = None
    notes: list[str] = field(default_factory=list)
    channels_last: bool = True
    fast: bool = True
    _copies: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def on(self, device: torch.device | str) -> nn.Module:
        """The model itself on ``device`` (the CPU model, else a cached copy): for hooks and attribution."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.model
        return self._copy("exact", device, lambda: copy.deepcopy(self.model))

    def runner(self, device: torch.device | str, precision: str = "fp32") -> nn.Module:
        """The network to predict with on ``device``: a cached inference-only copy (batch norms folded,
        ReLUs and adds in place, on the CPU in fp32 weights prepacked; see :mod:`explorer.build.fast`),
        or the model itself with ``fast=False``."""
        device = torch.device(device)
        if not self.fast:
            return self.on(device)
        from explorer.build.fast import fast_copy

        if device.type == "cpu" and precision == "fp32" and self.channels_last:
            return self._copy("packed", device, lambda: fast_copy(self.model, pack=True), convert=False)
        return self._copy("fast", device, lambda: fast_copy(self.model))

    def _copy(self, kind: str, device: torch.device, make, convert: bool = True) -> nn.Module:
        with self._lock:
            key = (kind, device)
            if key not in self._copies:
                module = make()
                if convert:
                    module = module.to(device)
                    if self.channels_last:
                        module = module.to(memory_format=torch.channels_last)
                self._copies[key] = module
            return self._copies[key]

    def drop_copies(self, device_type: str | None = None) -> None:
        """Forget the cached copies (of one device type, e.g. after an out-of-memory error)."""
        with self._lock:
            for key in [k for k in self._copies if device_type is None or k[1].type == device_type]:
                del self._copies[key]

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
                     family: str | None) -> dict[str, torch.Tensor]:
    """The key naming that fits ``model`` best (as stored, or converted from the official layout),
    in the network's order, so that "the first bad key" is the first in the network."""
    own = list(model.state_dict())
    candidates = [dict(state_dict)]
    if family is not None:
        candidates.append(convert_state_dict(state_dict, OFFICIAL[family].source))
    best = max(candidates, key=lambda sd: sum(k in sd for k in own))
    ordered = {k: best[k] for k in own if k in best}
    ordered.update((k, v) for k, v in best.items() if k not in ordered)
    return ordered


def _load_imagenet(spec: Spec, seed: int, download: bool | None) -> LoadedModel:
    family = spec_family(spec)
    if family is None:
        raise WeightsError(f"there are no ImageNet weights for spec '{spec.name}' (only for the "
                           f"{' and '.join(OFFICIAL)} presets and their variants): use random weights or a file")
    official = OFFICIAL[family]
    path = official_checkpoint(family, download=download)
    checkpoint = load_checkpoint(path)
    model = build_model(spec, seed=seed)
    report = load_weights(model, convert_state_dict(checkpoint.state_dict, official.source))
    if not report.loaded:
        raise WeightsError(f"none of the ImageNet weights of {family} fit spec '{spec.name}' "
                           f"({report.summary()}): use random weights or a file")
    notes = []
    label = "imagenet"
    if not report.complete:
        total = len(report.loaded) + len(report.missing) + len(report.mismatched)
        label = f"imagenet (partial: {len(report.loaded)} of {total} tensors)"
        notes.append(f"the ImageNet weights do not all fit this spec: {report.summary()}")
    return LoadedModel(model, spec, label, "imagenet", class_names(spec.num_classes),
                       preprocess_for(spec, family), report, notes)


def _load_random(spec: Spec, seed: int) -> LoadedModel:
    model = build_model(spec, seed=seed)
    return LoadedModel(model, spec, f"random (seed {seed})", "random", class_names(spec.num_classes),
                       preprocess_for(spec, spec_family(spec)), None,
                       ["random weights: the predictions mean nothing"])


def _load_file(path: Path, spec: Spec | None, seed: int) -> LoadedModel:
    if not path.exists():
        raise WeightsError(f"weights '{path}': neither 'imagenet', 'random' nor an existing checkpoint file")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise WeightsError(f"'{path.name}' is not a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})")
    checkpoint = load_checkpoint(path)
    if spec is None:
        if checkpoint.spec is None:
            raise WeightsError(f"'{path.name}' does not say which network it belongs to: name a spec (--model SPEC)")
        spec = checkpoint.spec
    family = spec_family(spec)
    model = build_model(spec, seed=seed)
    try:
        report = load_weights(model, _file_state_dict(checkpoint.state_dict, model, family), strict=True)
    except WeightsError as exc:
        raise WeightsError(f"'{path.name}' does not fit spec '{spec.name}': {exc}".replace(
            "the checkpoint does not fit this network: ", "")) from None
    if "preprocess" in checkpoint.metadata:
        try:
            preprocess = Preprocess.from_dict(checkpoint.metadata["preprocess"])
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"'{path.name}' has bad preprocess metadata: {exc}") from None
    else:
        preprocess = preprocess_for(spec, family)
    return LoadedModel(model, spec, path.name, "file", class_names(spec.num_classes, checkpoint.classes),
                       preprocess, report, [])


_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def _cache_key(spec: Spec | None, weights: str, seed: int) -> tuple:
    if weights in ("imagenet", "random"):
        extra: tuple = ()
        if weights == "imagenet" and spec is not None and spec_family(spec):
            path = hub_checkpoint_dir() / OFFICIAL[spec_family(spec)].file_name
            extra = (str(path), _stat(path))
        return (spec.digest() if spec else None, weights, seed, extra)
    path = Path(weights).resolve()
    return (spec.digest() if spec else None, str(path), seed, _stat(path))


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_size, st.st_mtime_ns)


def load_model(spec: Spec | str | None, weights: str | os.PathLike = "imagenet", *,
               knobs: Mapping[str, object] | None = None, seed: int = 0, download: bool | None = None,
               channels_last: bool = True, cache: bool = True) -> LoadedModel:
    """Build ``spec`` and give it ``weights``: ``"imagenet"``, ``"random"`` or a checkpoint path.

    ``spec`` is a :class:`Spec`, a preset name or a YAML path; it may be None
    when the checkpoint carries its spec. ``imagenet`` loads what fits a
    changed spec and reports the rest; a file must fit exactly. Raises
    :class:`WeightsError` (one line) when the weights cannot be had.
    Results are cached (a few models): the returned model is shared, read-only.
    """
    resolved = resolve_model_spec(spec, knobs)
    weights = os.fspath(weights)
    if resolved is None and weights in ("imagenet", "random"):
        raise WeightsError(f"'{weights}' weights need a spec (--model SPEC)")
    key = _cache_key(resolved, weights, seed) if cache else None
    if key is not None:
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
    if weights == "imagenet":
        loaded = _load_imagenet(resolved, seed, download)
    elif weights == "random":
        loaded = _load_random(resolved, seed)
    else:
        loaded = _load_file(Path(weights), resolved, seed)
    loaded.channels_last = channels_last
    if channels_last:
        loaded.model = loaded.model.to(memory_format=torch.channels_last)
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = loaded
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return loaded


def load_or_random(spec: Spec | str | None, weights: str | os.PathLike = "imagenet", **kwargs
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
        return load_model(spec, "random", **kwargs), str(exc)


def clear_cache() -> None:
    """Forget the cached models."""
    with _CACHE_LOCK:
        _CACHE.clear()

