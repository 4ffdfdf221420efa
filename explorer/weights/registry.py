"""The weights the explorer knows, one entry per set: where it comes from and everything that belongs to it.

An entry holds what torchvision keeps in a ``Weights`` enum member and timm in
a pretrained config: the file (URL and hash, or the file shipped in
``assets/``), the key layout (:mod:`explorer.weights.keys`), the
preprocessing, the categories, the parameter count and the published
accuracy with its source. Which network a set fits is decided by structure,
never by name: :meth:`WeightsEntry.fit` compares the spec's learnable tensors
(names and shapes, from the spec alone) with those of the network the weights
were trained as. A spec changed by knobs still takes the weights when most of
its tensors are found; a different network (``mini_xception``) is refused
before anything is downloaded.

``list_weights()`` (and ``python -m explorer weights``) shows the registry.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import UsageError
from explorer.weights.io import WeightsError
from explorer.weights.preprocess import Preprocess, scaled

OFFLINE_ENV = "EXPLORER_OFFLINE"
IMAGENET = "imagenet-1k"
_DOWNLOAD_TIMEOUT_S = 30
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"  # the checkpoints in the repository
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Accuracy:
    """A published (or measured) accuracy, in percent, and where it comes from."""

    top1: float
    top5: float | None
    source: str
    url: str = ""

    def describe(self) -> str:
        top5 = f" / top-5 {self.top5:.2f} %" if self.top5 is not None else ""
        return f"top-1 {self.top1:.2f} %{top5} ({self.source})"


@dataclass(frozen=True)
class Fit:
    """How a spec's learnable tensors meet a weights set's: found by name and shape, by name only, or not."""

    entry: str
    matched: int
    named: int
    total: int
    first_difference: tuple[str, Shape | None, Shape | None] | None = None

    @property
    def fits(self) -> bool:
        """Most of the spec's tensors are in the weights, with their shapes."""
        return self.total > 0 and 2 * self.matched > self.total

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.matched == self.total

    def describe(self) -> str:
        text = f"{self.entry} holds {self.matched} of the network's {self.total} learnable tensors"
        if self.first_difference is not None:
            name, here, there = self.first_difference
            if there is None:
                text += f" (the first one it lacks: {name})"
            else:
                text += f" (the first that differs: {name} is {_shape(here)} here, {_shape(there)} in the weights)"
        return text


def _shape(shape: Shape | None) -> str:
    from explorer.format import shape as fmt

    return fmt(shape) if shape else "-"


@dataclass(frozen=True)
class WeightsEntry:
    """One set of weights and what belongs to it.

    ``preset`` names the spec the weights were trained as; ``spec_yaml`` holds
    it instead for a file that carries its own spec. ``file_name`` is looked
    up in torch hub's cache (``url`` set) or in ``assets/checkpoints``
    (``url`` empty: shipped with the explorer). ``layout`` names the key map
    (:data:`explorer.weights.keys.KEY_MAPS`). ``categories`` is ``imagenet-1k``
    (torchvision's class names) or the class names themselves.
    """

    name: str
    title: str
    file_name: str
    layout: str
    categories: str | tuple[str, ...]
    num_params: int
    accuracy: tuple[Accuracy, ...]
    reference: str
    preset: str = ""
    spec_yaml: str = ""
    url: str = ""
    sha256_prefix: str = ""
    preprocess: Preprocess | None = None

    @property
    def shipped(self) -> bool:
        """Comes with the explorer (no download)."""
        return not self.url

    @property
    def path(self) -> Path:
        """Where the file is (or will be once downloaded)."""
        return (SHIPPED_DIR if self.shipped else hub_checkpoint_dir()) / self.file_name

    def spec(self):
        """The :class:`~explorer.spec.Spec` the weights were trained as (read once: specs are frozen)."""
        return _spec_of(self.preset, self.spec_yaml)

    def class_names(self) -> list[str]:
        return imagenet_classes() if self.categories == IMAGENET else list(self.categories)

    def preprocess_for(self, spec) -> Preprocess:
        """This set's preprocessing at ``spec``'s input size and channels."""
        assert self.preprocess is not None
        return scaled(self.preprocess, spec.input_size, spec.in_channels)

    def fit(self, spec) -> Fit:
        """How ``spec``'s learnable tensors (names and shapes, from the spec alone) meet these weights'."""
        theirs = _tensors(self.spec())
        ours = _tensors(spec)
        matched = named = 0
        first = None
        for name, shape in ours.items():
            there = theirs.get(name)
            named += there is not None
            matched += there == shape
            if there != shape and first is None:
                first = (name, shape, there)
        return Fit(self.name, matched, named, len(ours), first)

    def fetch(self, download: bool | None = None) -> Path:
        """The file's path, downloading it into torch hub's cache first if it is missing and allowed.

        Offline with nothing cached: a :class:`WeightsError` naming the file and the folder.
        """
        path = self.path
        if path.is_file():
            return path
        if self.shipped:
            raise WeightsError(f"the shipped checkpoint '{path}' is missing: restore it from the repository")
        if not downloads_allowed(download):
            raise WeightsError(missing_message(self, "downloads are off"))
        try:
            _download(self, path)
        except WeightsError:
            raise
        except Exception as exc:  # noqa: BLE001 - no network, a proxy, a full disk: all the same to the user
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsError(missing_message(self, f"the download failed: {first}")) from None
        return path


@functools.lru_cache(maxsize=8)
def _spec_of(preset: str, spec_yaml: str):
    from explorer.spec import load_spec, parse_spec

    return parse_spec(spec_yaml) if spec_yaml else load_spec(preset)


_TENSORS: dict[str, dict[str, Shape]] = {}  # by spec digest, the newest few
_TENSORS_KEPT = 32


def _tensors(spec) -> dict[str, Shape]:
    """A spec's learnable tensors by state-dict key, in the network's order (from the spec alone; kept
    by the spec's digest, since the app asks again on every rerun)."""
    from explorer.spec import spec_layers
    from explorer.spec.layers import iter_params

    key = spec.digest()
    found = _TENSORS.get(key)
    if found is None:
        found = {f"{layer.name}.{suffix}": shape for layer in spec_layers(spec) for suffix, shape in iter_params(layer)}
        _TENSORS[key] = found
        while len(_TENSORS) > _TENSORS_KEPT:
            _TENSORS.pop(next(iter(_TENSORS)))
    return found


# -- the entries -----------------------------------------------------------------------------------

_OFFICIAL = (
    WeightsEntry(
        name="xception.imagenet",
        title="Xception, ImageNet-1k (Chollet's Keras weights, ported)",
        preset="xception",
        file_name="xception-43020ad28.pth",
        url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/xception-43020ad28.pth",
        layout="timm-legacy-xception",
        preprocess=Preprocess(333, 299, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                              origin="timm legacy_xception: crop_pct 0.8975"),
        categories=IMAGENET,
        num_params=22_855_952,
        accuracy=(
            Accuracy(79.0, 94.5, "Chollet 2017, Table 1", "https://arxiv.org/abs/1610.02357"),
            Accuracy(79.058, 94.396, "timm results-imagenet.csv, legacy_xception.tf_in1k",
                     "https://github.com/huggingface/pytorch-image-models/blob/main/results/results-imagenet.csv"),
        ),
        reference="timm legacy_xception",
    ),
    WeightsEntry(
        name="inception_v3.imagenet",
        title="Inception V3, ImageNet-1k (torchvision IMAGENET1K_V1)",
        preset="inception_v3",
        file_name="inception_v3_google-0cc3c7bd.pth",
        url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        sha256_prefix="0cc3c7bd",
        layout="torchvision-inception-v3",
        preprocess=Preprocess(342, 299, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                              origin="torchvision Inception_V3_Weights.IMAGENET1K_V1"),
        categories=IMAGENET,
        num_params=27_161_264,
        accuracy=(
            Accuracy(78.2, 94.1, "Chollet 2017, Table 1", "https://arxiv.org/abs/1610.02357"),
            Accuracy(77.294, 93.450, "torchvision model card, Inception_V3_Weights.IMAGENET1K_V1",
                     "https://docs.pytorch.org/vision/stable/models/generated/torchvision.models.inception_v3.html"),
        ),
        reference="torchvision Inception_V3_Weights.IMAGENET1K_V1",
    ),
)

DIGITS_FILE = "mini_xception_digits.safetensors"


def _shipped(file_name: str) -> WeightsEntry:
    """An entry for a checkpoint written by the lab: every fact comes from the file's own metadata."""
    from explorer.spec import parse_spec
    from explorer.weights.io import parse_classes, read_metadata

    meta = read_metadata(SHIPPED_DIR / file_name)
    spec = parse_spec(meta["spec"])
    return WeightsEntry(
        name=f"{spec.name}.{meta.get('data', 'lab')}",
        title=f"{spec.name}, trained on the {meta.get('data', '?')} by the lab",
        spec_yaml=meta["spec"],
        file_name=file_name,
        layout="explorer",
        preprocess=Preprocess.from_dict(meta["preprocess"]),
        categories=tuple(parse_classes(meta["classes"], f"'{file_name}'")),
        num_params=sum(_count(shape) for shape in _tensors(spec).values()),
        accuracy=(Accuracy(float(meta["test_accuracy"]) * 100, None,
                           f"measured on {meta.get('test_images', '?')} held-out images "
                           f"({meta.get('split', 'a test split')}) by `{meta.get('command', 'the lab')}`"),),
        reference="this repository's lab (docs/readme_lab.md)",
    )


def _count(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, WeightsEntry]:
    """Every known weights set by name: the official ImageNet ones, then the shipped ones."""
    entries = list(_OFFICIAL)
    entries.append(_shipped(DIGITS_FILE))
    return {entry.name: entry for entry in entries}


def list_weights() -> list[WeightsEntry]:
    """The registry's entries, official first."""
    return list(registry().values())


def get_weights(name: str) -> WeightsEntry:
    """The entry called ``name`` (``xception.imagenet``); a :class:`UsageError` naming the known ones."""
    entries = registry()
    if name not in entries:
        raise UsageError("name", f"no weights set named '{name}' (known: {', '.join(entries)})")
    return entries[name]


def imagenet_for(spec) -> tuple[WeightsEntry, Fit]:
    """The ImageNet weights ``spec`` fits best, checked by structure; :class:`WeightsError` when none fits."""
    fits = sorted(((entry, entry.fit(spec)) for entry in _OFFICIAL), key=lambda ef: -ef[1].matched)
    entry, fit = fits[0]
    if not fit.fits:
        raise WeightsError(f"no ImageNet weights fit spec '{spec.name}' (weights must hold most of its tensors): "
                           f"the closest, {fit.describe()}. Use random weights or your own checkpoint")
    return entry, fit


def closest(spec) -> WeightsEntry | None:
    """The official set whose network ``spec`` shares the most tensor names with (a variant's origin), or None."""
    best = max(_OFFICIAL, key=lambda entry: entry.fit(spec).named)
    return best if best.fit(spec).named else None


def preprocess_for(spec, entry: WeightsEntry | None = None) -> Preprocess:
    """The preprocessing for ``spec``: its weights' own, else that of the official set it derives from
    (Xception's, mean = std = 0.5, when it derives from none), at the spec's size."""
    entry = entry or closest(spec) or _OFFICIAL[0]
    return entry.preprocess_for(spec)


# -- classes ---------------------------------------------------------------------------------------

def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights meta (no download)."""
    from torchvision.models import Inception_V3_Weights

    return list(Inception_V3_Weights.IMAGENET1K_V1.meta["categories"])


def class_names(num_classes: int, given: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """``given`` when it fits, ImageNet's names for 1000 outputs, else ``class 0``, ``class 1``, ..."""
    if given is not None and len(given) == num_classes:
        return list(given)
    if num_classes == 1000:
        return imagenet_classes()
    return [f"class {i}" for i in range(num_classes)]


# -- downloads -------------------------------------------------------------------------------------

def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoints folder (``$TORCH_HOME/hub/checkpoints`` unless ``torch.hub.set_dir`` moved it)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed(download: bool | None = None) -> bool:
    """Whether fetching a checkpoint may be tried (``$EXPLORER_OFFLINE=1`` forbids it)."""
    if download is not None:
        return download
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def missing_message(entry: WeightsEntry, reason: str = "") -> str:
    """The one line that says how to provide an official checkpoint by hand."""
    why = f" ({reason})" if reason else ""
    return (f"the ImageNet weights for {entry.preset} are not available offline{why}: put "
            f"'{entry.file_name}' (from {entry.url}) in the folder '{hub_checkpoint_dir()}', "
            f"or use your own checkpoint (upload it, or --weights PATH), or random weights (--weights random)")


def _download(entry: WeightsEntry, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".part{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry.url, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
        if entry.sha256_prefix and not digest.hexdigest().startswith(entry.sha256_prefix):
            raise WeightsError(f"the download of '{entry.file_name}' is corrupt (sha256 mismatch)")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
