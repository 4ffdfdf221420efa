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
