"""Lab training: reproducible, lowers the loss, follows the data's classes, reports progress, trains aux heads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from explorer.build import build_model
from explorer.lab.data import DataError, load_data
from explorer.lab.train import TrainConfig, TrainError, evaluate, train
from explorer.spec import load_spec, parse_spec
from explorer.spec.errors import ExplorerError

TINY = {"width": 0.5, "middle_repeats": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def spec():
    return load_spec("mini_xception").with_overrides(**TINY)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", input_size=32, in_channels=3, limit=128)


def _numbers(history):
    return [(h.train_loss, h.train_acc, h.test_loss, h.test_acc, h.lr) for h in history]


def test_same_seed_same_curves_and_weights(spec, data):
    config = TrainConfig(epochs=2, batch_size=32, seed=3, device="cpu")
    a, b = train(spec, data, config), train(spec, data, config)
    assert _numbers(a.history) == _numbers(b.history)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
    c = train(spec, data, dataclasses.replace(config, seed=4))
    assert _numbers(c.history) != _numbers(a.history)
    assert not a.model.training  # handed back in eval()


def test_training_lowers_the_loss(spec, data):
    config = TrainConfig(epochs=3, batch_size=32, seed=0, device="cpu")
    # oracle: the same network before training, evaluated on the training images
    before, _ = evaluate(build_model(spec, seed=0), data.train_x, data.train_y, in_channels=3)
    result = train(spec, data, config)
    # measured in train() mode during the last epoch: the eval-mode loss of so short a run still
    # suffers from batch-norm running statistics that lag behind the weights
    assert result.history[-1].train_loss < 0.75 * before
    assert result.history[-1].train_acc > 0.5
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert result.history[-1].lr < result.history[0].lr  # the cosine schedule decays


def test_progress_callback_and_stop(spec, data):
    seen = []
    result = train(spec, data, TrainConfig(epochs=2, batch_size=32, device="cpu"),
                   on_progress=lambda p: seen.append((p.phase, p.epoch, p.batch, round(p.fraction, 3))))
    per_epoch = len(data.train_y) // 32
    assert [s for s in seen if s[0] == "epoch"] == [("epoch", 1, per_epoch, 0.5), ("epoch", 2, per_epoch, 1.0)]
    assert len([s for s in seen if s[0] == "train"]) == 2 * per_epoch
    assert len(result.history) == 2 and not result.stopped
    stopped = train(spec, data, TrainConfig(epochs=3, batch_size=32, device="cpu"),
                    on_progress=lambda p: not (p.epoch == 2 and p.batch == 1))
    assert stopped.stopped and len(stopped.history) == 2


def test_num_classes_follows_the_data_unless_set(data):
    spec = load_spec("mini_xception").with_overrides(num_classes=4, **TINY)
    result = train(spec, data, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    assert result.spec.num_classes == 10 and result.model.exit.fc.out_features == 10
    assert any("num_classes set to 10" in note for note in result.notes)
    with pytest.raises(DataError, match="num_classes is 4 but the data has 10 classes"):
        train(spec, data, TrainConfig(epochs=1), strict_classes=True)


def test_aux_head_output_is_trained():
    spec = parse_spec({
        "name": "tiny_aux", "input_size": 24, "num_classes": 10, "blocks": [
            {"name": "stem", "type": "conv", "flow": "entry", "out": 8, "padding": 1},
            {"name": "aux", "type": "aux_head", "flow": "entry", "channels": [8, 16]},
            {"name": "pool", "type": "pool", "flow": "exit", "mode": "global_avg"},
            {"name": "fc", "type": "classifier", "flow": "exit"}]})
    data = load_data("digits", input_size=24, in_channels=3, limit=64)
    before = build_model(spec, seed=0).aux.fc.weight.clone()
    result = train(spec, data, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    assert not torch.equal(result.model.aux.fc.weight, before)  # the aux loss reached its head
    assert torch.isfinite(torch.tensor(result.history[0].train_loss))


@pytest.mark.parametrize("config, needle", [
    (TrainConfig(epochs=0), "epochs must be at least 1"),
    (TrainConfig(batch_size=1), "batch size must be at least 2"),
    (TrainConfig(lr=-1.0), "learning rate"),
])
def test_bad_settings(spec, data, config, needle):
    with pytest.raises(TrainError, match=needle):
        train(spec, data, config)


def test_a_missing_device_is_a_clear_error(spec, data):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ExplorerError, match="not available"):
        train(spec, data, TrainConfig(epochs=1, device="cuda"))


def test_data_prepared_for_another_input_size(data):
    spec = load_spec("mini_xception").with_overrides(input_size=40, **TINY)
    with pytest.raises(DataError, match="prepared at 32 px but the spec takes 40 px"):
        train(spec, data, TrainConfig(epochs=1))


def test_mini_xception_has_xceptions_structure_and_every_knob():
    from explorer.spec import knob_applies, spec_layers

    spec = load_spec("mini_xception")
    xception = load_spec("xception")
    def shape(s):  # (flow, block type) in order, runs of equal blocks collapsed: shallower is allowed
        kinds = [(b.flow, b.type) for b in s.blocks]
        return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]

    assert shape(spec) == shape(xception)
    blocks = {b.name: b for b in spec.blocks}
    assert blocks["middle.block"].residual == "identity" and blocks["middle.block"].repeat >= 2
    assert {b.residual for b in spec.blocks if b.type == "xception" and b.flow != "middle"} == {"projection"}
    assert all(knob_applies(spec, k) for k in ("residual", "mid_activation", "middle_repeats", "width", "segments"))
    assert spec.input_size in (32, 64) and spec.num_classes == 10
    for knobs in ({"residual": False}, {"mid_activation": "elu"}, {"middle_repeats": 5}, {"width": 2.0},
                  {"segments": 4}):
        variant = spec.with_overrides(**knobs)
        model = build_model(variant)
        layers = spec_layers(variant)
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
        assert len(layers) == len([m for m in model.modules() if not list(m.children())])
