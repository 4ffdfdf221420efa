"""Preprocessing, as a set of weights fixes it: resize the shorter side, center-crop, scale to [0, 1], normalize.

Each entry of :mod:`explorer.weights.registry` holds its :class:`Preprocess`
(timm's ``legacy_xception`` config, torchvision's
``Inception_V3_Weights.IMAGENET1K_V1.transforms()``); a spec whose
``input_size`` was changed keeps the same resize-to-crop ratio
(:func:`scaled`). The functions run on PIL images exactly as timm's and
torchvision's eval transforms do, so the tensors are the ones the reference
pipelines make.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from explorer.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


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
        if self.interpolation not in _INTERPOLATION:
            raise UsageError("interpolation", f"must be one of {', '.join(_INTERPOLATION)}, got {self.interpolation!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise UsageError("mean", f"mean and std need {self.channels} values (one per channel)")

    def crop_image(self, image: Image.Image) -> Image.Image:
        """The resized, center-cropped picture the network sees (before normalization): for overlays."""
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
    def from_dict(cls, data: Mapping) -> Preprocess:
        """Read :meth:`to_dict`'s output (a dict, or its JSON text)."""
        if isinstance(data, str):
            data = json.loads(data)
        known = {k: data[k] for k in ("resize", "crop", "interpolation", "mean", "std", "channels", "origin")
                 if k in data}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(v) for v in known[key])
        return cls(**known)


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
