"""Checkpoint files that would take the server down are refused before anything is inflated or allocated:
a zip bomb dressed as a torch checkpoint (peak memory measured in a subprocess), safetensors and legacy
pickles over the budget, odd member names, and metadata ``classes`` of the wrong shape (one line each)."""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from explorer.build import build_model
from explorer.resources import BudgetError
from explorer.spec import load_spec
from explorer.weights.io import (
    WeightsError,
    check_checkpoint_size,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from explorer.weights.load import load_model

ROOT = Path(__file__).resolve().parents[1]
GiB, MiB = 2**30, 2**20
BOMB_BYTES = 3 * GiB  # over the default max_weight_bytes (2 GiB)


# -- a zip bomb that torch.load accepts ---------------------------------------------------------------

class _Storage:
    pass


class _Tensor:
    """Pickles as torch pickles a float tensor of ``n`` elements on storage record '0'."""

    def __init__(self, n: int) -> None:
        self.n, self.storage = n, _Storage()

    def __reduce_ex__(self, protocol):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, (self.n,), (1,), False, collections.OrderedDict())


def _torch_pickle(n: int) -> bytes:
    out = io.BytesIO()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", n) if isinstance(obj, _Storage) else None

    Pickler(out, protocol=2).dump({"w": _Tensor(n)})
    return out.getvalue()


def _zeros_deflated(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes and their CRC-32, built from one repeated block
    (a full flush resets the compressor, so every 16 MiB block compresses to the same bytes)."""
    chunk = 16 * MiB
    assert size % chunk == 0
    zero = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // chunk):
        crc = zlib.crc32(zero, crc)
    return block * (size // chunk) + compressor.flush(), crc


def _zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip (zip64 sizes) of ``(name, stored bytes, method, crc, uncompressed size)`` members."""
    out, central = io.BytesIO(), []
    for name, data, method, crc, size in members:
        offset = out.tell()
        raw = name.encode()
        extra = struct.pack("<HHQQ", 1, 16, size, len(data))
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, method, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                              len(raw), len(extra)) + raw + extra + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, method, 0, 0x21, crc, 0xFFFFFFFF,
                                   0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0, offset) + raw + extra)
    start = out.tell()
    directory = b"".join(central)
    out.write(directory)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0))
    return out.getvalue()


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, 0, zlib.crc32(data), len(data)


def torch_zip_bomb(path: Path, size: int = BOMB_BYTES) -> Path:
    """A .pth in torch's zip layout whose one tensor record is ``size`` zeros, deflated (a few MB)."""
    data, crc = _zeros_deflated(size)
    path.write_bytes(_zip([
        _stored("archive/data.pkl", _torch_pickle(size // 4)),
        _stored("archive/byteorder", b"little"),
        ("archive/data/0", data, zipfile.ZIP_DEFLATED, crc, size),
        _stored("archive/version", b"3\n"),
    ]))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return torch_zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pth")


def test_the_bomb_is_a_real_torch_zip(tmp_path):
    """The construction is sound: a small one torch.load reads, to the declared zeros."""
    small = torch_zip_bomb(tmp_path / "small.pth", 32 * MiB)
    assert small.stat().st_size < MiB
    tensor = torch.load(small, weights_only=True)["w"]
    assert tensor.shape == (8 * MiB,) and not tensor.any()


MEASURE = textwrap.dedent("""
    import json, sys
    import torch  # noqa: F401
    from explorer.weights.io import read_checkpoint
    def peak():  # VmHWM: this process's peak since exec (ru_maxrss would count the pytest that forked it)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    baseline = peak()
    try:
        read_checkpoint(sys.argv[1])
        message = None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"baseline": baseline, "peak": peak(), "message": message}))
""")


def test_a_zip_bomb_is_refused_before_it_is_inflated(bomb):
    assert bomb.stat().st_size < 16 * MiB  # a few MB on disk, 3 GiB declared
    with zipfile.ZipFile(bomb) as archive:  # the oracle: what the central directory declares
        declared = sum(info.file_size for info in archive.infolist())
    assert declared > BOMB_BYTES
    run = subprocess.run([sys.executable, "-c", MEASURE, str(bomb)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["message"] and found["message"].startswith("WeightsBudgetError: ")
    assert "'bomb.pth'" in found["message"] and "max_weight_bytes" in found["message"]
    assert "\n" not in found["message"]
    # nothing was inflated: the peak stays near the import-only baseline (the bomb would add 3 GiB)
    assert found["peak"] - found["baseline"] < 64 * MiB, found


def test_a_zip_bomb_is_refused_by_ratio_even_within_the_budget(tmp_path):
    bomb = torch_zip_bomb(tmp_path / "ratio.pth", 256 * MiB)
    with pytest.raises(WeightsError, match=r"'ratio.pth' was refused: its record 'archive/data/0' would inflate "
                                           r"[\d,]+× .*zip bomb"):
        read_checkpoint(bomb)


def test_the_budget_refusal_is_a_budget_error_naming_the_limit(bomb):
    with pytest.raises(BudgetError) as info:
        check_checkpoint_size(bomb)
    assert info.value.limit == "max_weight_bytes"
    assert isinstance(info.value, WeightsError)  # the loaders' callers catch WeightsError


def test_odd_member_names_are_refused(tmp_path):
    path = tmp_path / "odd.pth"
    path.write_bytes(_zip([_stored("archive/data.pkl", _torch_pickle(1)), _stored("../../evil", b"x")]))
    with pytest.raises(WeightsError, match=r"'odd.pth' holds a file named '\.\./\.\./evil'"):
        read_checkpoint(path)


def test_safetensors_declaring_more_than_the_budget_is_refused_from_its_header(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [BOMB_BYTES // 4], "data_offsets": [0, BOMB_BYTES]}})
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(64))
    with pytest.raises(BudgetError, match=r"reading 'huge.safetensors' would need 3.00 GiB, over the limit "
                                          r"max_weight_bytes"):
        read_checkpoint(path)


def test_a_legacy_pickle_is_bounded_by_its_size(tmp_path, monkeypatch):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(5 * MiB)}, path, _use_new_zipfile_serialization=False)  # 20 MiB
    assert not zipfile.is_zipfile(path)
    assert read_checkpoint(path)[0]["w"].shape == (5 * MiB,)
    monkeypatch.setenv("EXPLORER_MAX_WEIGHT_BYTES", "1MiB")  # + the records' allowance: under 20 MiB
    with pytest.raises(BudgetError, match="reading 'legacy.pth' would need"):
        read_checkpoint(path)


def test_a_checkpoint_within_the_budget_loads(tmp_path):
    spec = load_spec("mini_xception")
    model = build_model(spec, seed=0)
    path = save_checkpoint(tmp_path / "ok.safetensors", model, spec, [str(i) for i in range(10)])
    check_checkpoint_size(path)
    torch.save(model.state_dict(), tmp_path / "ok.pth")
    check_checkpoint_size(tmp_path / "ok.pth")
    assert set(read_checkpoint(tmp_path / "ok.pth")[0]) == set(model.state_dict())


# -- metadata ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, needle", [
    ("cat, dog", "not JSON"),
    ("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", "expected a JSON list of class names"),
    ('{"a": 1}', "expected a JSON list of class names"),
])
def test_bad_classes_metadata_is_one_line(tmp_path, classes, needle):
    spec = load_spec("mini_xception")
    path = save_checkpoint(tmp_path / "c.safetensors", build_model(spec, seed=0), spec, metadata={"classes": classes})
    with pytest.raises(WeightsError, match=needle) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "'c.safetensors'" in str(info.value)
    with pytest.raises(WeightsError, match=needle):  # the path the app and the CLI take
        load_model(None, str(path), cache=False)


def test_save_checkpoint_replaces_a_file_whole(tmp_path):
    spec = load_spec("mini_xception")
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"an older file")
    save_checkpoint(path, build_model(spec, seed=0), spec)
    assert load_checkpoint(path).spec == spec
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left
