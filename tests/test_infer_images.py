"""Hardened decoding: every odd or hostile image gives 8-bit RGB or one clear ImageError, never a crash."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from explorer.infer.images import ImageError, decode_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None = None) -> bytes:
    """A PNG written by hand (16-bit RGB, or a huge declared size with a tiny body)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = zlib.compress(rows if rows is not None else b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
    return Image.fromarray(np.concatenate([np.broadcast_to(x, (height, width, 1)),
                                           np.broadcast_to(y, (height, width, 1)),
                                           np.full((height, width, 1), 90, np.uint8)], 2))


def rgb(decoded) -> np.ndarray:
    assert decoded.image.mode == "RGB"
    return np.asarray(decoded.image).astype(int)


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"),
                                      ("GIF", "gif"), ("TIFF", "tif")])
def test_every_accepted_format_from_bytes_and_path(fmt, ext, tmp_path):
    data = encode(gradient(), fmt)
    from_bytes = decode_image(data, name=f"g.{ext}")
    path = tmp_path / f"g.{ext}"
    path.write_bytes(data)
    from_path = decode_image(path)
    assert from_bytes.size == from_path.size == (64, 48)
    assert from_path.name == f"g.{ext}" and from_path.format == fmt
    assert np.array_equal(rgb(from_bytes), rgb(from_path))
    lossless = fmt in ("PNG", "BMP", "TIFF")
    if lossless:
        assert np.array_equal(rgb(from_path), np.asarray(gradient()))


def test_uploads_and_open_files_are_read(tmp_path):
    data = encode(gradient(), "PNG")

    class Upload:  # what Streamlit's file_uploader hands over
        name = "upload.png"

        def getvalue(self) -> bytes:
            return data

    assert decode_image(Upload()).name == "upload.png"
    path = tmp_path / "open.png"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert decode_image(f).name == "open.png"


@pytest.mark.parametrize("data, needle", [
    (b"", "is empty"),
    (b"hello, I am not a picture\n" * 4, "is a text file"),
    (bytes(range(256)) * 8, "is not an image"),
])
def test_empty_text_and_garbage_are_refused(data, needle):
    with pytest.raises(ImageError, match=needle) as info:
        decode_image(data, name="photo.jpg")
    assert "photo.jpg" in str(info.value) and "\n" not in str(info.value)


def test_text_file_named_jpg_on_disk(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_text("<html>not a photo</html>")
    with pytest.raises(ImageError, match="'holiday.jpg' is a text file"):
        decode_image(path)


def test_missing_path():
    with pytest.raises(ImageError, match="is not a file"):
        decode_image("/nonexistent/dir/cat.jpg")


def test_a_readable_but_unaccepted_format_is_refused():
    with pytest.raises(ImageError, match="JPEG, PNG, WebP, BMP, GIF or TIFF"):
        decode_image(encode(gradient(), "PPM"), name="x.ppm")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_fail_at_load_with_a_clear_message(fmt):
    data = encode(gradient(256, 256), fmt)
    with pytest.raises(ImageError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2], name="half")


def test_corrupt_png_body():
    data = bytearray(encode(gradient(), "PNG"))
    start = data.index(b"IDAT") + 8
    data[start:start + 40] = b"\xff" * 40
    with pytest.raises(ImageError, match="'broken.png' is (corrupt|truncated)"):
        decode_image(bytes(data), name="broken.png")


@pytest.mark.parametrize("side, warning", [
    (30_000, "default"),  # beyond Pillow's hard limit
    (9_000, "error"),     # in Pillow's warning zone, the warning an error (as explorer.infer.images sets it)
    (9_000, "ignore"),    # ... and should someone silence it, our own pixel check still refuses
])
def test_decompression_bomb_is_refused_before_decoding(side, warning):
    import warnings

    warnings.simplefilter(warning, Image.DecompressionBombWarning)  # pytest restores the filters after the test
    with pytest.raises(ImageError, match="too large") as info:
        decode_image(raw_png(side, side, 1, 0), name="bomb.png")
    assert "megapixels" in str(info.value)


def test_pixel_limit_is_a_parameter():
    with pytest.raises(ImageError, match=r"100x100 = 0.0 megapixels"):
        decode_image(encode(gradient(100, 100), "PNG"), max_pixels=5_000)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), "PNG"))
    assert decoded.original_mode.startswith("I")
    assert rgb(decoded)[0, :, 0].tolist() == [0, 64, 128, 255]
    assert any("16-bit" in n for n in decoded.notes)


def test_sixteen_bit_rgb_keeps_the_high_bytes():
    pixels = np.array([[[65535, 32896, 0], [4112, 61680, 257 * 200]]], dtype=">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    decoded = decode_image(raw_png(2, 1, 16, 2, rows), name="deep.png")
    assert rgb(decoded).tolist() == [[[255, 128, 0], [16, 240, 200]]]


def test_float_tiff_is_scaled():
    values = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    decoded = decode_image(encode(Image.fromarray(values, "F"), "TIFF"))
    assert rgb(decoded)[0, :, 1].tolist() == [0, 64, 255]


def test_cmyk_becomes_rgb():
    decoded = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100))
    r, g, b = rgb(decoded)[4, 4]
    assert r > 240 and g < 15 and b < 15 and decoded.original_mode == "CMYK"


def test_palette_transparency_is_composited_onto_white():
    img = Image.new("P", (4, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1, 0, 1])
    decoded = decode_image(encode(img, "PNG", transparency=1))
    assert rgb(decoded)[0].tolist() == [[255, 0, 0], [255, 255, 255]] * 2
    assert any("white" in n for n in decoded.notes)
    gif = decode_image(encode(img, "GIF", transparency=1))
    assert rgb(gif)[0].tolist() == [[255, 0, 0], [255, 255, 255]] * 2


@pytest.mark.parametrize("mode, pixels, expected", [
    ("RGBA", [(255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 128)], [[255, 255, 255], [0, 0, 0], [127, 127, 127]]),
    ("LA", [(0, 0), (0, 255), (200, 255)], [[255, 255, 255], [0, 0, 0], [200, 200, 200]]),
])
def test_alpha_is_composited_onto_white(mode, pixels, expected):
    img = Image.new(mode, (3, 1))
    img.putdata(pixels)
    got = rgb(decode_image(encode(img, "PNG")))[0]
    assert np.abs(got - np.array(expected)).max() <= 1


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_becomes_three_equal_channels(mode):
    img = gradient().convert(mode)
    got = rgb(decode_image(encode(img, "PNG")))
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    assert np.array_equal(got[..., 0], np.asarray(img.convert("L")))


def test_exif_orientation_turns_the_picture_upright():
    # stored: left half red, right half blue; orientation 6 = "rotate 90 degrees clockwise to view"
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert decoded.size == (20, 40)
    top, bottom = rgb(decoded)[5, 10], rgb(decoded)[35, 10]
    assert top[0] > 200 and top[2] < 50      # the left edge is now on top: red
    assert bottom[2] > 200 and bottom[0] < 50
    assert any("EXIF" in n for n in decoded.notes)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "TIFF"])
def test_animations_and_multipage_files_give_frame_zero(fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    kw = {"save_all": True, "append_images": frames[1:]}
    if fmt != "TIFF":
        kw["duration"] = 100
    if fmt == "WEBP":
        kw["lossless"] = True
    decoded = decode_image(encode(frames[0], fmt, **kw))
    r, g, b = rgb(decoded)[8, 8]
    assert r > 240 and g < 15 and b < 15
    assert "frame 1 of 3 used" in decoded.notes


def test_pil_images_pass_through_the_same_checks():
    decoded = decode_image(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), name="drawn")
    assert rgb(decoded).min() == 255 and decoded.name == "drawn"
    with pytest.raises(ImageError, match="too large"):
        decode_image(Image.new("L", (100, 100)), max_pixels=100)
