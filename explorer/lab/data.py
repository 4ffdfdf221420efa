"""Training data for the lab: scikit-learn's digits or an image folder, as fixed uint8 tensors.

Both sources go through one pipeline, the one the explorer's classifier uses
(:class:`explorer.weights.Preprocess` with resize = crop = the spec's
``input_size``, bilinear, mean = std = 0.5): each image is converted to gray
(replicated to ``in_channels`` unless that is 3) or RGB (``in_channels`` 3),
its shorter side resized to ``input_size``, center-cropped, and kept as uint8.
Normalization happens per batch (:func:`to_model_input`), so a data set costs
``N × C × S × S`` bytes, and a checkpoint records the exact preprocessing.

Rules (each broken one is a :class:`DataError` with one clear line):

* **fill**: an image can fill the spec's input when it needs at most
  ``MAX_UPSCALE`` (8×) enlargement, i.e. its shorter side is at least
  ``input_size / 8``. The 8×8 digits therefore fill inputs up to 64 px. In a
  folder, images too small are skipped and counted; if none is left, it is an error.
  Downscaling is always allowed (photos are larger than networks' inputs).
* a folder must hold images (``DIR/CLASS/*.png`` as torchvision's ``ImageFolder``)
  in at least two classes; an unreadable image is skipped and counted, a class
  folder left without images is dropped with a note.
* the split is fixed: 20 % of each class is held out for testing, chosen by a
  generator seeded with ``SPLIT_SEED`` (independent of the training seed), unless
  the folder has ``train/`` and ``test/`` (or ``val/``) subfolders.

Where folders come from. The command line (``--data DIR``) is the machine owner's
tool and reads any folder. The app reads only folders under the data root
(:func:`under_data_root`: the ``data_root`` limit, ``data/`` beside ``app.py`` by
default, symlinks resolved) and uploaded zips (:func:`unpack_zip`: bounded by
``zip_max_bytes`` and ``zip_max_members``, unpacked into a private temporary folder).
Its messages say the same about every path outside the root, whether it exists or
not, and it records the folder relative to the root (or the zip's name), never a
server path.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from explorer.errors import ExplorerError
from explorer.files import (
    FilesError,
    TemporaryDir,
    is_symlink_member,
    remove_stale,
    safe_name,
    temporary_dir,
    zip_members,
)
from explorer.format import mib
from explorer.infer.images import EXTENSIONS
from explorer.resources import check, limit
from explorer.weights.preprocess import Preprocess

DIGITS = "digits"
DIGITS_SIZE = 8
MAX_UPSCALE = 8
TEST_FRACTION = 0.2
SPLIT_SEED = 0
MEAN, STD = 0.5, 0.5
MAX_DATA_BYTES = 2 * 2**30
ZIP_PREFIX = "explorer-lab-data-"  # the temporary folders uploaded zips are unpacked into

ProgressFn = Callable[[int, int], None]


class DataError(ExplorerError, ValueError):
    """A data set cannot be used for training; the message says why."""


@dataclass(frozen=True)
class ImageData:
    """A data set split into train and test, preprocessed to one input size.

    ``*_x`` are uint8 tensors ``N × C × S × S`` (C is 1 or 3), ``*_y`` int64
    class indices into ``classes``. ``skipped`` lists ``(file, reason)`` of the
    images left out; ``notes`` are lines worth telling the user.
    """

    source: str
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    preprocess: Preprocess
    split: str
    skipped: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def input_size(self) -> int:
        """Height and width of the prepared images."""
        return int(self.train_x.shape[-1])

    def describe(self) -> str:
        """One line: source, sizes, classes, split."""
        return (f"{self.source}: {len(self.train_y)} training and {len(self.test_y)} test images, "
                f"{len(self.classes)} classes, {self.input_size}×{self.input_size} px ({self.split})")


def preprocess_for_input(input_size: int, in_channels: int) -> Preprocess:
    """The lab's preprocessing for a spec's input: what training uses and a checkpoint records."""
    channels = 3 if in_channels == 3 else 1
    return Preprocess(resize=input_size, crop=input_size, interpolation="bilinear", mean=(MEAN,) * channels,
                      std=(STD,) * channels, channels=channels, origin="explorer lab (digits or image folder)")


def to_model_input(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """uint8 ``N × C × S × S`` → normalized float32 with ``in_channels`` channels (gray replicated)."""
    x = x.to(torch.float32).div_(255.0).sub_(MEAN).div_(STD)
    if x.shape[1] != in_channels:
        x = x[:, :1].expand(-1, in_channels, -1, -1)
    return x


def preprocess_images(images: Sequence[Image.Image], input_size: int, in_channels: int) -> torch.Tensor:
    """PIL images → the float32 input tensor a lab-trained network expects (exactly as in training)."""
    pre = preprocess_for_input(input_size, in_channels)
    return to_model_input(_stack([pre.crop_image(im) for im in images], pre.channels, input_size), in_channels)


def check_fill(native_side: int, input_size: int, what: str) -> None:
    """Raise :class:`DataError` when images with shorter side ``native_side`` cannot fill the input."""
    if native_side * MAX_UPSCALE < input_size:
        raise DataError(
            f"{what} cannot fill a {input_size}×{input_size} input: that would enlarge them "
            f"{input_size / native_side:.1f}× (at most {MAX_UPSCALE}×): use an input size of at most "
            f"{native_side * MAX_UPSCALE} px")


# -- the digits ----------------------------------------------------------------------------------

def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # 0..16 → 0..255
    return images, digits.target.astype(np.int64)


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """The fixed digits split: (train indices, test indices) into ``load_digits()``."""
    _, labels = _digits_arrays()
    return stratified_split(labels, TEST_FRACTION, SPLIT_SEED)


def digits_samples(n: int | None = 10, *, per_class: bool = True) -> list[tuple[Image.Image, str]]:
    """Digits from the test split as ``(8×8 gray PIL image, label)`` pairs, for the app's samples.

    ``per_class`` cycles through the classes (0, 1, ..., 9, 0, ...) so a few
    samples show every digit; ``n=None`` gives the whole test split in its order.
    """
    images, labels = _digits_arrays()
    _, test = digits_split()
    order = list(test)
    if per_class:
        by_class = [[i for i in test if labels[i] == c] for c in range(10)]
        order = [row[k] for k in range(max(map(len, by_class))) for row in by_class if k < len(row)]
    if n is not None:
        order = order[:n]
    return [(Image.fromarray(images[i], "L"), str(labels[i])) for i in order]


def load_digits_data(input_size: int, in_channels: int = 1, *, limit: int | None = None) -> ImageData:
    """The digits at ``input_size`` px (fixed 80/20 stratified split)."""
    check_fill(DIGITS_SIZE, input_size, f"the digits ({DIGITS_SIZE}×{DIGITS_SIZE} px)")
    images, labels = _digits_arrays()
    train, test = digits_split()
    pre = preprocess_for_input(input_size, in_channels)

    def prepare(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = _limit(index, limit)
        crops = [pre.crop_image(Image.fromarray(images[i], "L")) for i in index]
        return _stack(crops, pre.channels, input_size), torch.from_numpy(labels[index])

    (train_x, train_y), (test_x, test_y) = prepare(train), prepare(test)
    split = f"fixed 80/20 split stratified by class, seed {SPLIT_SEED}"
    notes = (f"limited to {limit} training and test images",) if limit else ()
    return ImageData(DIGITS, tuple(str(d) for d in range(10)), train_x, train_y, test_x, test_y, pre,
                     split, (), notes)


# -- image folders -------------------------------------------------------------------------------

def _class_files(root: Path) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[folder.name] = sorted(
            p for p in folder.rglob("*")
            if p.suffix.lower().lstrip(".") in EXTENSIONS and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return classes


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    train = root / "train"
    test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    return (train, test) if train.is_dir() and test is not None else None


def load_folder_data(root: str | Path, input_size: int, in_channels: int = 3, *, limit: int | None = None,
                     on_progress: ProgressFn | None = None, name: str | None = None) -> ImageData:
    """An ``ImageFolder``-layout directory (``ROOT/CLASS/*.jpg``) at ``input_size`` px.

    With ``ROOT/train`` and ``ROOT/test`` (or ``ROOT/val``) those are the split;
    otherwise 20 % of each class is held out (seeded, fixed). ``name`` is what
    messages and the data's ``source`` call the folder (default: the path as given).
    """
    from explorer.infer.images import ImageError, decode_image

    root = Path(root)
    label = str(root) if name is None else name
    if not root.is_dir():
        raise DataError(f"'{label}' is neither 'digits' nor a folder")
    layout = "DIR/CLASS/IMAGE.png, as torchvision's ImageFolder"
    splits = _split_folders(root)
    try:
        parts = {"train": _class_files(splits[0]), "test": _class_files(splits[1])} if splits else \
            {"all": _class_files(root)}
    except OSError as exc:
        raise DataError(f"cannot list the images of '{label}': {exc.strerror or exc}") from None
    total = sum(len(files) for part in parts.values() for files in part.values())
    if total == 0:
        raise DataError(f"'{label}' holds no images (expected {layout}; "
                        f"extensions {', '.join('.' + e for e in EXTENSIONS)})")
    pre = preprocess_for_input(input_size, in_channels)
    need = total * pre.channels * input_size * input_size
    if need > MAX_DATA_BYTES:
        raise DataError(f"{total} images at {input_size}×{input_size} would take {need / 2**30:.1f} GiB "
                        f"(limit {MAX_DATA_BYTES / 2**30:.0f} GiB): use a smaller input_size or fewer images")
    skipped: list[tuple[str, str]] = []
    decoded: dict[str, dict[str, list[Image.Image]]] = {}
    largest_small = 0  # the largest shorter side among the images too small to fill the input
    done = 0
    for part, classes in parts.items():
        decoded[part] = {}
        for class_name, files in classes.items():
            crops: list[Image.Image] = []
            for path in files:
                rel = str(path.relative_to(root))
                try:
                    image = decode_image(path, name=rel)
                except ImageError as exc:
                    skipped.append((rel, str(exc)))
                else:
                    side = min(image.original_size)
                    if side * MAX_UPSCALE < input_size:
                        skipped.append((rel, f"'{rel}' is too small to fill a {input_size}-px input "
                                             f"({image.original_size[0]}×{image.original_size[1]})"))
                        largest_small = max(largest_small, side)
                    else:
                        crops.append(pre.crop_image(image.image))
                done += 1
                if on_progress:
                    on_progress(done, total)
            decoded[part][class_name] = crops
    readable = sum(len(c) for part in decoded.values() for c in part.values())
    if readable == 0:
        if largest_small:
            check_fill(largest_small, input_size, f"the images of '{label}' (shorter sides up to {largest_small} px)")
        raise DataError(f"none of the {total} images in '{label}' could be read (first: {skipped[0][1]})")
    notes: list[str] = []
    if skipped:
        notes.append(f"skipped {len(skipped)} of {total} images (first: {skipped[0][1]})")
    train_classes = [c for c, crops in decoded["train" if splits else "all"].items() if crops]
    dropped = [c for c in decoded["train" if splits else "all"] if c not in train_classes]
    if dropped:
        notes.append(f"class folder{'s' if len(dropped) > 1 else ''} without usable images dropped: "
                     f"{', '.join(dropped)}")
    if len(train_classes) < 2:
        found = f"one class ('{train_classes[0]}')" if train_classes else "no class"
        raise DataError(f"'{label}' has {found}: a classifier needs at least two class folders ({layout})")
    index = {c: i for i, c in enumerate(train_classes)}
    if splits:
        extra = [c for c, crops in decoded["test"].items() if crops and c not in index]
        if extra:
            raise DataError(f"'{splits[1].name}/' has classes that '{splits[0].name}/' lacks: {', '.join(extra)}")
        train_items = [(im, index[c]) for c in train_classes for im in decoded["train"][c]]
        test_items = [(im, index[c]) for c, crops in decoded["test"].items() if c in index for im in crops]
        order = np.random.default_rng(SPLIT_SEED)
        train_items = [train_items[i] for i in order.permutation(len(train_items))]
        test_items = [test_items[i] for i in order.permutation(len(test_items))]
        split = f"the folder's {splits[0].name}/ and {splits[1].name}/"
    else:
        items = [(im, index[c]) for c in train_classes for im in decoded["all"][c]]
        train_idx, test_idx = stratified_split(np.array([y for _, y in items]), TEST_FRACTION, SPLIT_SEED)
        train_items = [items[i] for i in train_idx]
        test_items = [items[i] for i in test_idx]
        split = f"fixed 80/20 split stratified by class, seed {SPLIT_SEED}"
    if not test_items:
        raise DataError(f"'{label}' has too few images to hold out a test split (need 2 in a class)")
    train_items, test_items = _limit(train_items, limit), _limit(test_items, limit)
    if limit:
        notes.append(f"limited to {limit} training and test images")

    def tensors(items: list[tuple[Image.Image, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = _stack([im for im, _ in items], pre.channels, input_size)
        return x, torch.tensor([y for _, y in items], dtype=torch.int64)

    (train_x, train_y), (test_x, test_y) = tensors(train_items), tensors(test_items)
    return ImageData(label, tuple(train_classes), train_x, train_y, test_x, test_y, pre, split,
                     tuple(skipped), tuple(notes))


def load_data(source: str | Path, *, input_size: int, in_channels: int = 3, limit: int | None = None,
              on_progress: ProgressFn | None = None, name: str | None = None) -> ImageData:
    """``"digits"`` or an image folder, preprocessed for a spec with this input size and channel count
    (``name``: what the folder is called in messages and records, see :func:`load_folder_data`)."""
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    if str(source) == DIGITS:
        return load_digits_data(input_size, in_channels, limit=limit)
    return load_folder_data(source, input_size, in_channels, limit=limit, on_progress=on_progress, name=name)


# -- what the app may read: the data root and uploaded zips --------------------------------------

def data_root() -> Path:
    """The folder the app reads Lab data from (the ``data_root`` limit), symlinks resolved."""
    return Path(str(limit("data_root"))).expanduser().resolve()


def _inside(path: Path, root: Path) -> bool:
    return path != root and path.is_relative_to(root)


def root_folders() -> list[str]:
    """The data root's subfolders (not hidden, not leading outside it), by name; [] without a root."""
    root = data_root()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [p.name for p in entries if not p.name.startswith(".") and _inside(p.resolve(), root) and p.is_dir()]


def under_data_root(name: str) -> Path:
    """The folder ``name`` (relative to the data root) resolved, symlinks included; a :class:`DataError`
    when it leads outside the root, in the same words whether the outside path exists or not."""
    root = data_root()
    text = str(name).strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    folder = (root / text).resolve() if text else root
    if not _inside(folder, root):  # the same words for every outside path, existing or not
        raise DataError("that folder is not under the data root: the app reads Lab data only from the data "
                        "root's folders (or an uploaded zip)")
    if not folder.is_dir():
        raise DataError(f"no folder '{shown}' under the data root")
    return folder


@dataclass
class UnpackedZip:
    """An uploaded zip of images unpacked into a private temporary folder (removed by
    ``folder.cleanup()`` or once this object is dropped). ``root`` is the folder to load, ``name`` the
    zip's (sanitized) file name that messages and records use."""

    name: str
    digest: str
    folder: TemporaryDir
    root: Path

    def cleanup(self) -> None:
        self.folder.cleanup()


def _hidden(parts: Sequence[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def extract_zip(data: bytes, name: str, into: Path, *, max_bytes: int | None = None) -> Path:
    """Unpack the images of an uploaded zip (``CLASS/IMAGE.png``, maybe under one top folder) into ``into``;
    return the folder to load.

    Refused with one line: a zip over ``max_bytes`` (the upload limit), one declaring more files than
    ``zip_max_members`` or more bytes than ``zip_max_bytes`` once inflated, absolute or ``..`` names,
    symlinks, encrypted members. Only image files are written (mode 0600); no member is inflated past
    the size it declares.
    """
    what = f"'{safe_name(name)}'"
    if max_bytes is not None and len(data) > max_bytes:
        raise DataError(f"{what} is {mib(len(data))}, over the upload limit of {mib(max_bytes)}")
    f = io.BytesIO(data)
    try:
        members = zip_members(f, what=what, max_members=int(limit("zip_max_members")))
    except FilesError as exc:
        raise DataError(str(exc)) from None
    for info in members:
        if is_symlink_member(info):
            raise DataError(f"{what} holds a symlink ('{info.filename[:80]}'): symlinks are refused")
        if info.flag_bits & 0x1:
            raise DataError(f"{what} holds an encrypted file ('{info.filename[:80]}'): encrypted zips are refused")
    check("zip_max_bytes", f"unpacking {what}", sum(info.file_size for info in members))
    images = [info for info in members if not info.is_dir() and not _hidden(info.filename.split("/"))
              and info.filename.rsplit(".", 1)[-1].lower() in EXTENSIONS]
    if not images:
        raise DataError(f"{what} holds no images (expected CLASS/IMAGE.png; extensions "
                        f"{', '.join('.' + e for e in EXTENSIONS)})")
    into = Path(into)
    try:
        with zipfile.ZipFile(f) as archive:
            for info in images:
                target = into.joinpath(*info.filename.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                try:
                    out = os.open(target, flags, 0o600)
                except FileExistsError:
                    raise DataError(f"{what} holds '{info.filename[:80]}' twice") from None
                left = info.file_size
                with archive.open(info) as source, os.fdopen(out, "wb") as sink:
                    while chunk := source.read(min(1 << 20, left + 1)):
                        left -= len(chunk)
                        if left < 0:  # zipfile stops at the declared size; never trust it alone
                            raise DataError(f"{what} is damaged: '{info.filename[:80]}' is longer than it says")
                        sink.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{what} cannot be unpacked: {first}") from None
    top = [p for p in into.iterdir() if not p.name.startswith(".")]
    if len(top) == 1 and top[0].is_dir() and any(p.is_dir() for p in top[0].iterdir()):
        return top[0]  # pets.zip holding pets/cat, pets/dog
    return into


def unpack_zip(data: bytes, name: str, *, max_bytes: int | None = None) -> UnpackedZip:
    """Unpack an uploaded zip into a new private temporary folder (see :func:`extract_zip`); folders
    left by sessions that ended without cleaning up (untouched for a day) are removed first."""
    remove_stale(ZIP_PREFIX)
    folder = temporary_dir(ZIP_PREFIX)
    try:
        root = extract_zip(data, name, folder.path, max_bytes=max_bytes)
    except BaseException:
        folder.cleanup()
        raise
    return UnpackedZip(safe_name(name), hashlib.sha256(data).hexdigest(), folder, root)


# -- helpers -------------------------------------------------------------------------------------

def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test), each in a fixed shuffled order: ``fraction`` of every class
    (rounded, at least one when the class has two or more) is held out."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(members) * fraction))
        n_test = min(max(n_test, 1 if len(members) >= 2 else 0), len(members) - 1 if len(members) > 1 else 0)
        test += members[:n_test].tolist()
        train += members[n_test:].tolist()
    return rng.permutation(np.array(train, dtype=np.int64)), rng.permutation(np.array(test, dtype=np.int64))


def _limit(items, limit: int | None):
    return items if limit is None else items[:limit]


def _stack(images: Sequence[Image.Image], channels: int, size: int) -> torch.Tensor:
    if not images:
        return torch.zeros((0, channels, size, size), dtype=torch.uint8)
    arrays = [np.asarray(im, dtype=np.uint8) for im in images]
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))
