"""Lab checkpoints: the shipped digits network reproduces its accuracy; a checkpoint alone rebuilds its network."""

from __future__ import annotations

import json
import shlex

import pytest
import torch

from explorer.lab.checkpoints import DIGITS_CHECKPOINT, load_trained, save_trained
from explorer.lab.data import digits_samples, load_data, to_model_input
from explorer.lab.train import TrainConfig, evaluate, predict, train
from explorer.spec import load_spec
from explorer.weights import WeightsError, load_checkpoint, save_checkpoint
from explorer.weights.preprocess import Preprocess

SHIPPED = DIGITS_CHECKPOINT


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped():
    return load_trained(SHIPPED)


@pytest.fixture(scope="module")
def digits_test(shipped):
    spec = shipped[1].spec
    return load_data("digits", input_size=spec.input_size, in_channels=spec.in_channels)


def test_shipped_checkpoint_reproduces_its_accuracy(shipped, digits_test):
    model, checkpoint = shipped
    assert SHIPPED.stat().st_size < 1_000_000
    assert checkpoint.spec == load_spec("mini_xception")
    assert checkpoint.classes == [str(d) for d in range(10)]
    # recomputed here on the fixed digits test split, not read from the metadata alone
    _, accuracy = evaluate(model, digits_test.test_x, digits_test.test_y, in_channels=checkpoint.spec.in_channels)
    recorded = float(checkpoint.metadata["test_accuracy"])
    assert accuracy >= 0.97
    assert abs(accuracy - recorded) <= 1 / len(digits_test.test_y) + 1e-9
    assert int(checkpoint.metadata["test_images"]) == len(digits_test.test_y)


def test_shipped_checkpoint_records_its_command(shipped):
    meta = shipped[1].metadata
    argv = shlex.split(meta["command"])
    assert argv[:5] == ["python", "-m", "explorer", "train", "mini_xception"]
    assert argv[argv.index("--out") + 1] == "assets/checkpoints/mini_xception_digits.safetensors"
    config = json.loads(meta["train_config"])
    assert int(argv[argv.index("--epochs") + 1]) == config["epochs"] == len(json.loads(meta["history"]))
    assert int(argv[argv.index("--seed") + 1]) == config["seed"]


def test_the_classifier_pipeline_gives_the_training_inputs(shipped, digits_test):
    """The app's samples, preprocessed as the checkpoint's metadata says, are exactly the test tensors."""
    model, checkpoint = shipped
    pre = Preprocess.from_dict(checkpoint.metadata["preprocess"])
    samples = digits_samples(12, per_class=False)
    x = pre.batch([image for image, _ in samples])
    expected = to_model_input(digits_test.test_x[:12], checkpoint.spec.in_channels)
    assert torch.allclose(x, expected, atol=1e-6)
    assert [label for _, label in samples] == [str(int(y)) for y in digits_test.test_y[:12]]
    with torch.no_grad():
        assert torch.allclose(model(x), predict(model, digits_test.test_x[:12], in_channels=3), atol=1e-5)


def test_shipped_checkpoint_loads_in_the_classifier(shipped, digits_test):
    from explorer.weights import load_model

    loaded = load_model(None, SHIPPED, cache=False)
    assert loaded.spec == shipped[1].spec and list(loaded.classes) == [str(d) for d in range(10)]
    samples = digits_samples(40, per_class=False)
    x = loaded.preprocess.batch([image for image, _ in samples])
    with torch.no_grad():
        got = loaded.model(x).argmax(1)
    expected = predict(shipped[0], digits_test.test_x[:40], in_channels=3).argmax(1)
    assert torch.equal(got, expected)


def test_checkpoint_round_trip(tmp_path):
    spec = load_spec("mini_xception").with_overrides(width=0.5, middle_repeats=1, num_classes=10)
    data = load_data("digits", input_size=32, in_channels=3, limit=64)
    result = train(spec, data, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    path = save_trained(tmp_path / "m.safetensors", result, data, command="python -m explorer train ...")
    model, checkpoint = load_trained(path)
    assert checkpoint.spec == result.spec and checkpoint.classes == list(data.classes)
    assert checkpoint.metadata["command"] == "python -m explorer train ..."
    assert float(checkpoint.metadata["test_accuracy"]) == pytest.approx(result.test_accuracy, abs=1e-6)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))
    # the batch-norm statistics travelled too (they are what eval() uses)
    assert torch.equal(model.entry.conv1.bn.running_var, result.model.entry.conv1.bn.running_var)


def test_a_checkpoint_without_spec_is_refused(tmp_path):
    spec = load_spec("mini_xception")
    from explorer.build import build_model

    path = save_checkpoint(tmp_path / "plain.safetensors", build_model(spec), spec)
    assert load_checkpoint(path).spec == spec
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(WeightsError, match="carries no spec"):
        load_trained(tmp_path / "bare.safetensors")
