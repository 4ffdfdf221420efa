"""Preprocessing, as a set of weights fixes it: resize the shorter side, center-crop, scale to [0, 1], normalize.

Each entry of :mod:`explorer.weights.registry` holds its :class:`Preprocess`
(timm's ``legacy_xception`` config, torchvision's
``Inception_V3_Weights.IMAGENET1K_V1.transforms()``); a spec whose
``input_size`` was changed keeps the same resize-to-crop ratio
(:func:`scaled`). The functions run on PIL images exactly as timm's and
torchvision's eval transforms do, so the tensors are the ones the reference
pipelines make.

Every number is checked when a :class:`Preprocess` is made (also from a
checkpoint's metadata, :meth:`Preprocess.from_dict`): the crop at most the
``max_input_size`` limit, the resize at most twice it, and no image is resized
to more than :data:`MAX_RESIZED_PIXELS` (a very elongated picture would be),
each refused with one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from explorer import resources
from explorer.errors import UsageError
from explorer.resources import BudgetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}
MAX_RESIZED_PIXELS = 64_000_000  # the resized picture, before the crop: ~190 MB of RGB at most
_FIELDS = ("resize", "crop", "interpolation", "mean", "std", "channels", "origin")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network's input tensor (C x crop x crop, float32)."""

    resize: int
    crop: int
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    channels: int = 3
    origin: str = ""

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(name, f"must be a whole number of pixels, at least 1, got {_short(value)}")
        top = int(resources.limit("max_input_size"))
        if self.crop > top:
            raise BudgetError("max_input_size", f"crop: {resources.over('max_input_size', 'the crop', self.crop)}")
        if self.resize > 2 * top:
            entry = resources.LIMITS["max_input_size"]
            raise BudgetError("max_input_size", f"resize: {entry.format(self.resize)} is over twice the limit "
                                                f"max_input_size = {entry.format(top)} "
                                                f"({resources.how_to_raise('max_input_size')})")
        if self.interpolation not in _INTERPOLATION:
            raise UsageError("interpolation", f"must be one of {', '.join(_INTERPOLATION)}, "
                                              f"got {_short(self.interpolation)}")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise UsageError("channels", f"must be 1 (gray) or 3 (RGB), got {_short(self.channels)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise UsageError("mean", f"mean and std need {self.channels} values (one per channel)")
        if not all(math.isfinite(v) for v in self.mean + self.std) or 0 in self.std:
            raise UsageError("std", "mean and std must be finite numbers, std not zero")

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (width, height) an image of ``size`` is resized to (its shorter side to :attr:`resize`),
        as torchvision computes it; :class:`UsageError` when it would exceed :data:`MAX_RESIZED_PIXELS`."""
        w, h = size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.resize * long / short)
        if self.resize * new_long > MAX_RESIZED_PIXELS:
            raise UsageError("image", f"a {w}x{h} picture resized to {self.resize} px on its shorter side would "
                                      f"have {self.resize * new_long / 1e6:,.0f} megapixels, over "
                                      f"{MAX_RESIZED_PIXELS / 1e6:.0f}: too elongated")
        return (self.resize, new_long) if w <= h else (new_long, self.resize)

    def crop_image(self, image: Image.Image) -> Image.Image:
        """The resized, center-cropped picture the network sees (before normalization): for overlays."""
        self.resized_size(image.size)  # refused before Pillow allocates it
        image = image.convert("L" if self.channels == 1 else "RGB")
        image = F.resize(image, self.resize, interpolation=_INTERPOLATION[self.interpolation], antialias=True)
        return F.center_crop(image, [self.crop, self.crop])

    def normalize(self, image: Image.Image) -> torch.Tensor:
        """A cropped picture (from :meth:`crop_image`) as a normalized C x H x W float tensor."""
        x = F.pil_to_tensor(image).to(torch.float32).div_(255)
        return F.normalize(x, list(self.mean), list(self.std))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one RGB PIL image into a C x crop x crop float32 tensor."""
        return self.normalize(self.crop_image(image))

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess several images into an N x C x crop x crop tensor."""
        return torch.stack([self(image) for image in images])

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization (back to [0, 1] pixels), for showing an input tensor."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return x * std + mean

    def describe(self) -> str:
        """One line for people: the steps with their numbers."""
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        origin = f" ({self.origin})" if self.origin else ""
        gray = "grayscale, " if self.channels == 1 else ""
        return (f"{gray}resize the shorter side to {self.resize} px ({self.interpolation}), center-crop "
                f"{self.crop}x{self.crop}, scale to [0, 1], normalize with mean [{mean}] and std [{std}]{origin}")

    def to_dict(self) -> dict:
        """Plain data (what a checkpoint's ``preprocess`` metadata holds)."""
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping | str) -> Preprocess:
        """Read :meth:`to_dict`'s output (a dict, or its JSON text). Anything else, e.g. a checkpoint's
        junk metadata, is one :class:`UsageError` (or a :class:`~explorer.resources.BudgetError` for sizes
        over the limit)."""
        try:
            if isinstance(data, (str, bytes)):
                if len(data) > 2**16:
                    raise UsageError("preprocess", f"{len(data):,} characters: too long for preprocessing settings")
                data = json.loads(data)
            if not isinstance(data, Mapping):
                raise UsageError("preprocess", f"expected a mapping of settings, got {type(data).__name__}")
            known = {k: data[k] for k in _FIELDS if k in data}
            for key in ("mean", "std"):
                if key in known:
                    if not isinstance(known[key], (list, tuple)) or len(known[key]) > 4:
                        raise UsageError(key, f"expected a list of one number per channel, got {_short(known[key])}")
                    known[key] = tuple(float(v) for v in known[key])
            return cls(**known)
        except (UsageError, BudgetError):
            raise
        except (TypeError, ValueError, KeyError, RecursionError) as exc:  # junk: no traceback, one line
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError("preprocess", f"cannot read the settings: {reason[:200]}") from None


def _short(value: object) -> str:
    """``repr(value)`` cut to 40 characters (a number of thousands of digits is not even printed)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"a {value.bit_length():,}-bit number"
    text = repr(value) if isinstance(value, (str, int, float)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def scaled(base: Preprocess, input_size: int, channels: int = 3) -> Preprocess:
    """``base`` for another input size (same resize-to-crop ratio) or channel count."""
    if input_size == base.crop and channels == base.channels:
        return base
    resize = max(input_size, round(input_size * base.resize / base.crop))
    mean, std = base.mean, base.std
    if channels != len(mean):
        # a gray network: the mean of the colour statistics, one value per channel
        mean = (sum(mean) / len(mean),) * channels
        std = (sum(std) / len(std),) * channels
    origin = f"{base.origin}, scaled to {input_size} px" if base.origin else ""
    return Preprocess(resize, input_size, base.interpolation, mean, std, channels, origin)
