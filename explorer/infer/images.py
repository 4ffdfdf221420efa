"""Hardened image decoding: any upload becomes an 8-bit RGB picture or one clear :class:`ImageError`.

Pillow's traps, handled here: decompression bombs (the pixel count is checked
from the header, before any pixel is decoded), truncated files that fail only at ``load()``, 16-bit
grayscale that clips when converted straight to RGB (scaled instead), CMYK,
palette and alpha transparency (composited onto white), EXIF orientation and
animations (frame 0). Only the decoders of the accepted formats are tried.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explorer.errors import ExplorerError

# The decoders Pillow may try (only these: less attack surface). JPEG's also opens MPO, the
# multi-picture JPEG many cameras write.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"
EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")

MAX_PIXELS = 64_000_000   # about 8000 x 8000: a big phone photo passes, a bomb does not
MAX_BYTES = 64 * 2**20
# Pillow's own process-wide limits (Image.MAX_IMAGE_PIXELS and its warning) are left as they are:
# decode_image checks each image's size from its header against ``max_pixels`` itself, so importing
# this module changes nothing for other Pillow users in the process.

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, IO[bytes], Image.Image]


class ImageError(ExplorerError, ValueError):
    """An image cannot be used; the message names the file and says why."""


@dataclass
class DecodedImage:
    """An image ready for preprocessing: 8-bit RGB, upright, one frame, fully loaded."""

    image: Image.Image
    name: str
    format: str
    original_mode: str
    original_size: tuple[int, int]
    digest: str
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def _read(source: ImageSource, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data, name or "image"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or path.name
        if not path.is_file():
            raise ImageError(f"'{path}' is not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"'{label}' is {size / 2**20:.0f} MiB, over the limit of {max_bytes / 2**20:.0f} MiB")
        try:
            return path.read_bytes(), label
        except OSError as exc:
            raise ImageError(f"'{label}' cannot be read: {exc.strerror or exc}") from None
    # a file-like object, e.g. Streamlit's UploadedFile (getvalue) or an open file (read)
    label = name or os.path.basename(str(getattr(source, "name", "") or "")) or "image"
    if hasattr(source, "getvalue"):
        data = source.getvalue()
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)  # a stream: never read more than the limit
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"'{label}' did not give bytes (got {type(data).__name__})")
    return bytes(data), label


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _too_large(name: str, size: tuple[int, int], limit: int) -> ImageError:
    w, h = size
    return ImageError(f"'{name}' is too large: {w}x{h} = {w * h / 1e6:.1f} megapixels "
                      f"(the limit is {limit / 1e6:.0f} megapixels)")


def _scale_to_8bit(img: Image.Image, notes: list[str]) -> Image.Image:
    """Single-channel 16-bit, 32-bit or float images: scale the full range to 0..255 (never clip)."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        top = 65535.0
        notes.append("16-bit image scaled to 8 bits")
    elif img.mode == "I":
        top = 65535.0 if a.min() >= 0 and a.max() <= 65535 else None
        notes.append("integer image scaled to 8 bits")
    else:  # "F"
        top = 1.0 if a.min() >= 0 and a.max() <= 1 else None
        notes.append("floating-point image scaled to 8 bits")
    # one float32 copy, scaled in place: a 64-megapixel 16-bit scan costs ~256 MB here, not several
    # float64 temporaries (~2 GB)
    a = a.astype(np.float32)
    if top is None:
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if hi > lo:
            a -= lo
            a *= 255 / (hi - lo)
        else:
            a[...] = 0
    else:
        a *= 255 / top
    np.nan_to_num(a, copy=False, nan=0.0)
    np.clip(np.rint(a, out=a), 0, 255, out=a)
    return Image.fromarray(a.astype(np.uint8), "L")


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _scale_to_8bit(img, notes).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("L", "1") and "transparency" in img.info:
        img = img.convert("LA")
    elif mode == "RGB" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        alpha = img.getchannel("A")
        if alpha.getextrema()[0] < 255:
            notes.append("transparency composited onto white")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_image(source: ImageSource, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
                 max_bytes: int = MAX_BYTES) -> DecodedImage:
    """Decode bytes, a path, a file-like object or a PIL image into a :class:`DecodedImage`.

    Raises :class:`ImageError` (one line naming the file) for an empty,
    unreadable, unsupported, truncated, corrupt or too large image.
    """
    if isinstance(source, DecodedImage):
        return source
    if isinstance(source, Image.Image):
        label = name or "image"
        if source.width * source.height > max_pixels:
            raise _too_large(label, source.size, max_pixels)
        digest = hashlib.sha256(source.tobytes()).hexdigest()[:16]
        return _finish(source.copy(), label, source.format or "PIL", digest, max_pixels)
    data, label = _read(source, name, max_bytes)
    if not data:
        raise ImageError(f"'{label}' is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"'{label}' is {len(data) / 2**20:.0f} MiB, over the limit of {max_bytes / 2**20:.0f} MiB")
    try:
        img = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(label, exc, max_pixels) from None
    except UnidentifiedImageError:
        what = "a text file" if _looks_like_text(data) else "not an image"
        raise ImageError(f"'{label}' is {what}: it is not a {FORMAT_NAMES} image Pillow can read") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on corrupt headers
        raise ImageError(f"'{label}' is corrupt: {_reason(exc)}") from None
    if img.width * img.height > max_pixels:
        raise _too_large(label, img.size, max_pixels)
    return _finish(img, label, img.format or "?", hashlib.sha256(data).hexdigest()[:16], max_pixels)


def _finish(img: Image.Image, label: str, fmt: str, digest: str, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Load frame 0, turn it upright and convert it to 8-bit RGB."""
    notes: list[str] = []
    original_mode, original_size = img.mode, img.size
    if min(original_size) < 1:
        raise ImageError(f"'{label}' has no pixels ({original_size[0]}x{original_size[1]})")
    try:
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            img.seek(0)
            notes.append(f"frame 1 of {frames} used")
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(label, exc, max_pixels) from None
    except Exception as exc:  # noqa: BLE001 - as above, at decode time
        kind = "truncated" if "truncat" in str(exc).lower() else "corrupt"
        raise ImageError(f"'{label}' is {kind}: {_reason(exc)}") from None
    try:
        if _orientation(img) in range(2, 9):
            img = ImageOps.exif_transpose(img)
            notes.append("rotated upright (EXIF orientation)")
    except Exception:  # noqa: BLE001 - a malformed EXIF block: keep the pixels as stored
        notes.append("EXIF orientation unreadable, ignored")
    try:
        rgb = _to_rgb(img, notes)
        rgb.load()
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"'{label}' cannot be converted to RGB ({original_mode}): {_reason(exc)}") from None
    return DecodedImage(rgb, label, fmt, original_mode, original_size, digest, notes)


def _orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001
        return None


def _bomb(label: str, exc: BaseException, limit: int) -> ImageError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found[1]) / 1e6:.1f} megapixels" if found else "too many pixels"
    return ImageError(f"'{label}' is too large: {pixels} (the limit is {limit / 1e6:.0f} megapixels; "
                      "a decompression bomb?)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
