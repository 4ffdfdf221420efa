"""``python -m explorer classify``: results on stdout; each bad file one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

from PIL import Image

from explorer.cli import main
from explorer.infer import list_samples

CAT = str(list_samples()[0].path)


def bomb_png(side: int) -> bytes:
    """A tiny PNG that declares side x side pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def test_bad_and_odd_files_never_crash_the_cli(tmp_path):
    bad = {
        "empty.jpg": b"",
        "notes.jpg": b"this is a text file, not a photo\n",
        "half.png": None,
        "bomb.png": None,
    }
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 200, 30)).save(buf, "PNG")
    bad["half.png"] = buf.getvalue()[: len(buf.getvalue()) // 2]
    bad["bomb.png"] = bomb_png(40_000)
    paths = []
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    odd = tmp_path / "spin.gif"
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    frames[0].save(odd, save_all=True, append_images=frames[1:], duration=50)
    result = subprocess.run(
        [sys.executable, "-m", "explorer", "classify", CAT, *paths, str(odd), str(tmp_path / "missing.jpg"),
         "--model", "xception", "--set", "middle_repeats=1", "--weights", "random", "--top", "3"],
        check=False, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 5 and all(line.startswith("error: '") for line in errors)
    for needle in ("'empty.jpg' is empty", "'notes.jpg' is a text file", "'half.png' is truncated",
                   "'bomb.png' is too large", "is not a file"):
        assert any(needle in line for line in errors), needle
    # the good and the odd images were still classified
    assert "cat.jpg" in result.stdout and "spin.gif" in result.stdout and "frame 1 of 2 used" in result.stdout
    assert "random (seed 0)" in result.stdout


def test_json_output_and_top_k(capsys):
    assert main(["classify", CAT, "--model", "inception_v3", "--set", "aux_logits=false",
                 "--weights", "random", "--top", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "inception_v3" and data["weights"] == "random (seed 0)"
    assert len(data["results"][0]["top"]) == 2 and "342" in data["preprocess"]
    assert data["latency_ms"] > 0


def test_user_errors_are_one_line(capsys):
    assert main(["classify", CAT, "--model", "xception", "--set", "depth=3", "--weights", "random"]) == 2
    assert main(["classify", CAT, "--weights", "random"]) == 2
    assert main(["classify", CAT, "--model", "xception", "--weights", "random", "--device", "mps"]) in (0, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown knob" in err[0] and "need a spec" in err[1]
