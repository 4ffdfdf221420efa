"""Lab data: the digits split and preprocessing, image folders, and every bad input as one clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torchvision.transforms import functional as TF

from explorer.errors import ExplorerError
from explorer.lab.data import (
    DataError,
    digits_samples,
    digits_split,
    load_data,
    preprocess_images,
    stratified_split,
    to_model_input,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_split_is_fixed_disjoint_and_stratified(digits):
    train, test = digits_split()
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(digits.target)))
    assert np.array_equal(test, digits_split()[1])  # fixed: the same on every call
    per_class = np.bincount(digits.target[test], minlength=10) / np.bincount(digits.target, minlength=10)
    assert np.all(np.abs(per_class - 0.2) < 0.01)


def test_digits_are_upsampled_with_the_classifier_pipeline(digits):
    data = load_data("digits", input_size=32, in_channels=3, limit=20)
    _, test = digits_split()
    assert data.test_x.shape == (20, 3, 32, 32) and data.test_x.dtype == torch.uint8
    assert data.classes == tuple(str(d) for d in range(10))
    assert data.test_y.tolist() == digits.target[test[:20]].tolist()
    # oracle: torchvision's resize on the 8-bit gray digit, replicated to RGB
    first = Image.fromarray(np.rint(digits.images[test[0]] * 255 / 16).astype(np.uint8), "L")
    expected = TF.pil_to_tensor(TF.resize(first.convert("RGB"), 32, interpolation=TF.InterpolationMode.BILINEAR))
    assert torch.equal(data.test_x[0], expected)
    x = to_model_input(data.test_x[:1], 3)
    assert torch.allclose(x, (expected.float() / 255 - 0.5) / 0.5)


def test_gray_inputs_are_replicated_to_in_channels():
    data = load_data("digits", input_size=16, in_channels=2, limit=4)
    assert data.train_x.shape[1] == 1
    x = to_model_input(data.train_x, 2)
    assert x.shape == (4, 2, 16, 16) and torch.equal(x[:, 0], x[:, 1])


def test_digits_samples_are_the_test_split(digits):
    _, test = digits_split()
    samples = digits_samples(None, per_class=False)
    assert len(samples) == len(test)
    for (image, label), index in zip(samples[:5], test[:5]):
        assert image.size == (8, 8) and image.mode == "L"
        assert label == str(digits.target[index])
    first_ten = digits_samples(10)
    assert [label for _, label in first_ten] == [str(d) for d in range(10)]
    x = preprocess_images([first_ten[0][0]], 32, 3)
    assert x.shape == (1, 3, 32, 32) and -1 <= x.min() and x.max() <= 1


def test_a_spec_the_digits_cannot_fill():
    load_data("digits", input_size=64, in_channels=3, limit=2)  # 8x: the largest enlargement allowed
    with pytest.raises(DataError, match=r"digits \(8×8 px\) cannot fill a 65×65 input.*input size of at most 64 px"):
        load_data("digits", input_size=65, in_channels=3)


def test_stratified_split_keeps_a_single_image_for_training():
    labels = np.array([0, 0, 0, 0, 0, 1])
    train, test = stratified_split(labels, 0.2, 0)
    assert sorted(labels[test].tolist()) == [0] and 5 in train.tolist()


# -- folders --------------------------------------------------------------------------------------

def _png(path, size=(12, 10), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(root, classes=("cat", "dog"), n=5, size=(12, 10)):
    for c, name in enumerate(classes):
        for i in range(n):
            _png(root / name / f"{i}.png", size, (40 * c + 20, 10 * i, 90))
    return root


def test_folder_loads_with_a_fixed_split(tmp_path):
    data = load_data(_folder(tmp_path / "pets"), input_size=16, in_channels=3)
    assert data.classes == ("cat", "dog")
    assert len(data.train_y) == 8 and len(data.test_y) == 2
    assert sorted(data.test_y.tolist()) == [0, 1]
    assert data.train_x.shape == (8, 3, 16, 16)
    again = load_data(tmp_path / "pets", input_size=16, in_channels=3)
    assert torch.equal(again.test_x, data.test_x)
    gray = load_data(tmp_path / "pets", input_size=16, in_channels=1)
    assert gray.train_x.shape == (8, 1, 16, 16)


def test_folder_with_train_and_test_subfolders(tmp_path):
    _folder(tmp_path / "set" / "train", n=3)
    _folder(tmp_path / "set" / "test", n=1)
    data = load_data(tmp_path / "set", input_size=16)
    assert data.classes == ("cat", "dog") and len(data.train_y) == 6 and len(data.test_y) == 2
    assert "train/ and test/" in data.split


def test_folder_without_images(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="holds no images.*ImageFolder"):
        load_data(tmp_path / "empty", input_size=16)


def test_folder_with_one_class(tmp_path):
    _folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(DataError, match=r"one class \('cat'\).*at least two class folders"):
        load_data(tmp_path / "one", input_size=16)


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    root = _folder(tmp_path / "pets")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = root / "cat" / "0.png"
    (root / "cat" / "truncated.png").write_bytes(good.read_bytes()[:40])
    data = load_data(root, input_size=16)
    assert len(data.train_y) + len(data.test_y) == 10
    assert sorted(name for name, _ in data.skipped) == ["cat/truncated.png", "dog/broken.png"]
    assert any("skipped 2 of 12 images" in note for note in data.notes)


def test_folder_of_images_too_small_to_fill_the_input(tmp_path):
    root = _folder(tmp_path / "tiny", size=(4, 3))
    with pytest.raises(DataError, match=r"cannot fill a 32×32 input.*at most 8×.*input size of at most 24 px"):
        load_data(root, input_size=32)
    _png(root / "cat" / "big.png", (40, 40))
    _png(root / "dog" / "big.png", (40, 40))
    _png(root / "dog" / "big2.png", (40, 40))
    data = load_data(root, input_size=32)  # the small ones are skipped and counted
    assert len(data.skipped) == 10 and "too small" in data.skipped[0][1]
    assert len(data.train_y) + len(data.test_y) == 3


def test_class_folder_without_usable_images_is_dropped(tmp_path):
    root = _folder(tmp_path / "pets", classes=("cat", "dog", "emu"))
    for f in (root / "emu").iterdir():
        f.write_bytes(b"garbage")
    data = load_data(root, input_size=16)
    assert data.classes == ("cat", "dog")
    assert any("emu" in note for note in data.notes)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="neither 'digits' nor a folder"):
        load_data(tmp_path / "nope", input_size=16)


def test_errors_are_explorer_errors():
    assert issubclass(DataError, ExplorerError)


def test_folder_where_nothing_can_be_read(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        (tmp_path / "bad" / name / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"none of the 2 images in .* could be read \(first: 'cat/x.png'"):
        load_data(tmp_path / "bad", input_size=16)


def test_folder_lists_only_the_formats_the_decoder_takes(tmp_path):
    """The lab reads a folder with the classifier's decoder, so it lists exactly the decoder's extensions:
    a PPM (which Pillow could open, but the hardened decoder refuses) is not an image here, not a failure."""
    root = _folder(tmp_path / "pets", n=3)
    Image.new("RGB", (12, 10), (1, 2, 3)).save(root / "cat" / "extra.ppm")
    Image.new("RGB", (12, 10), (3, 2, 1)).save(root / "dog" / "upper.JPG", format="JPEG")
    data = load_data(root, input_size=16)
    assert data.skipped == () and not any("skipped" in note for note in data.notes)
    assert len(data.train_y) + len(data.test_y) == 7  # 3 + 3 PNGs and the JPEG, not the PPM


# -- what the app may read: the data root and uploaded zips ------------------------------------------

@pytest.fixture
def root(tmp_path, monkeypatch):
    """A data root with one image folder, and an image folder outside it."""
    from explorer.lab.data import data_root

    root = tmp_path / "root"
    _folder(root / "pets")
    _folder(tmp_path / "outside")
    monkeypatch.setenv("EXPLORER_DATA_ROOT", str(root))
    assert data_root() == root.resolve()
    return root


def test_a_folder_under_the_root_loads_and_is_recorded_by_its_relative_name(root):
    from explorer.lab.data import root_folders, under_data_root

    assert root_folders() == ["pets"]
    data = load_data(under_data_root("pets"), input_size=16, name="pets")
    assert data.source == "pets" and str(root) not in data.describe()


def test_outside_the_root_is_refused_in_the_same_words_whether_it_exists_or_not(root, tmp_path):
    from explorer.lab.data import under_data_root

    messages = set()
    for name in ("../outside", "../missing", str(tmp_path / "outside"), "/nonexistent/x", "pets/../../outside",
                 "/usr/share", ""):
        with pytest.raises(DataError) as info:
            under_data_root(name)
        messages.add(str(info.value))
    assert len(messages) == 1
    message = messages.pop()
    assert "not under the data root" in message and str(tmp_path) not in message and "outside" not in message
    with pytest.raises(DataError, match="no folder 'nope' under the data root"):  # inside: may be said
        under_data_root("nope")


def test_a_symlink_leading_outside_the_root_is_refused_and_not_listed(root, tmp_path):
    from explorer.lab.data import root_folders, under_data_root

    (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "inner").symlink_to(root / "pets", target_is_directory=True)  # a symlink within the root is fine
    assert root_folders() == ["inner", "pets"]
    with pytest.raises(DataError, match="not under the data root") as info:
        under_data_root("link")
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(DataError, match="not under the data root"):
        under_data_root("link/cat")
    assert under_data_root("inner") == (root / "pets").resolve()


def _zip_bytes(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    import io
    import stat
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return out.getvalue()


def _png_bytes(colour=(200, 30, 30), size=(12, 10)) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _pets_zip(top: str = "pets/", n: int = 5) -> bytes:
    return _zip_bytes({f"{top}{c}/{i}.png": _png_bytes((40 * k + 20, 10 * i, 90))
                       for k, c in enumerate(("cat", "dog")) for i in range(n)})


def test_a_good_zip_trains_and_records_its_name_not_a_server_path(tmp_path):
    from explorer.build import build_model  # noqa: F401 - the oracle below trains through the library
    from explorer.lab.checkpoints import checkpoint_metadata
    from explorer.lab.data import ZIP_PREFIX, unpack_zip
    from explorer.lab.train import TrainConfig, train
    from explorer.spec import load_spec

    unpacked = unpack_zip(_pets_zip(), "my pets.zip")
    try:
        assert unpacked.folder.path.name.startswith(ZIP_PREFIX)
        assert oct(unpacked.folder.path.stat().st_mode & 0o777) == "0o700"
        data = load_data(unpacked.root, input_size=16, name=unpacked.name)
        # the oracle: the same images laid out as a folder
        expected = load_data(_folder(tmp_path / "pets"), input_size=16)
        assert data.classes == expected.classes == ("cat", "dog")
        assert torch.equal(data.train_x, expected.train_x) and torch.equal(data.test_y, expected.test_y)
        spec = load_spec("mini_xception").with_overrides(input_size=16, width=0.5, middle_repeats=1)
        result = train(spec, data, TrainConfig(epochs=1, batch_size=4, bn_recalibration=0))
        meta = checkpoint_metadata(result, data)
        assert meta["data"] == "my_pets.zip"
        assert not any(str(unpacked.folder.path) in value or "/tmp" in value for value in meta.values())
    finally:
        unpacked.cleanup()
    assert not unpacked.folder.path.exists()


def test_a_zip_without_a_top_folder_and_with_junk(tmp_path):
    from explorer.lab.data import unpack_zip

    files = {f"{c}/{i}.png": _png_bytes((40 * k, 10 * i, 90)) for k, c in enumerate(("cat", "dog")) for i in range(3)}
    files |= {"__MACOSX/cat/._0.png": b"junk", "cat/.hidden.png": b"junk", "README.txt": b"hello"}
    unpacked = unpack_zip(_zip_bytes(files), "flat.zip")
    with unpacked.folder:
        data = load_data(unpacked.root, input_size=16, name=unpacked.name)
        assert data.classes == ("cat", "dog") and data.skipped == ()
        assert sorted(p.name for p in unpacked.root.iterdir()) == ["cat", "dog"]


@pytest.mark.parametrize("files, symlinks, needle", [
    ({"pets/cat/0.png": b"x", "../evil.png": b"x"}, None, r"'bad.zip' holds a file named '\.\./evil.png'"),
    ({"pets/cat/0.png": b"x", "/abs/evil.png": b"x"}, None, "absolute paths"),
    ({"pets/cat/0.png": b"x"}, {"pets/dog/link.png": "/etc/passwd"}, "symlinks are refused"),
    ({"notes.txt": b"x"}, None, "holds no images"),
])
def test_bad_zips_are_one_line(files, symlinks, needle):
    from explorer.lab.data import unpack_zip

    with pytest.raises(DataError, match=needle) as info:
        unpack_zip(_zip_bytes(files, symlinks), "bad.zip")
    assert "\n" not in str(info.value)


def test_zips_over_the_caps_are_refused_before_unpacking(monkeypatch, tmp_path):
    import tempfile

    from explorer.lab.data import ZIP_PREFIX, unpack_zip
    from explorer.resources import BudgetError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = _pets_zip(n=5)  # 10 files
    monkeypatch.setenv("EXPLORER_ZIP_MAX_MEMBERS", "9")
    with pytest.raises(DataError, match=r"'pets.zip' declares 10 files \(at most 9 are read\)"):
        unpack_zip(data, "pets.zip")
    monkeypatch.setenv("EXPLORER_ZIP_MAX_MEMBERS", "10")
    bomb = _zip_bytes({"pets/cat/0.png": bytes(50 * 2**20)})  # 50 MiB of zeros, ~50 KB zipped
    assert len(bomb) < 2**20
    monkeypatch.setenv("EXPLORER_ZIP_MAX_BYTES", "10MiB")
    with pytest.raises(BudgetError, match=r"unpacking 'bomb.zip' would need 50.0 MiB, over the limit zip_max_bytes"):
        unpack_zip(bomb, "bomb.zip")
    with pytest.raises(DataError, match=r"'pets.zip' is [\d.]+ MiB, over the upload limit of [\d.]+ MiB"):
        unpack_zip(data, "pets.zip", max_bytes=len(data) - 1)
    assert not list(tmp_path.glob(f"{ZIP_PREFIX}*"))  # every refusal removed its temporary folder
    unpack_zip(data, "pets.zip").cleanup()


def test_stale_zip_folders_are_removed_on_the_next_upload(monkeypatch, tmp_path):
    import os
    import tempfile
    import time

    from explorer.lab.data import ZIP_PREFIX, unpack_zip

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"{ZIP_PREFIX}dead"
    (dead / "cat").mkdir(parents=True)
    day_ago = time.time() - 2 * 86400
    os.utime(dead, (day_ago, day_ago))
    unpacked = unpack_zip(_pets_zip(), "pets.zip")
    assert not dead.exists() and unpacked.root.exists()
    unpacked.cleanup()
