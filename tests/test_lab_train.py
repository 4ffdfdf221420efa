"""Lab training: reproducible, lowers the loss, follows the data's classes, reports progress, trains aux heads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from explorer.build import build_model
from explorer.errors import ExplorerError
from explorer.lab.data import DataError, load_data, to_model_input
from explorer.lab.train import (
    EpochStats,
    TrainConfig,
    TrainError,
    accuracy_lag_note,
    cpu_threads,
    estimate_epoch_seconds,
    evaluate,
    recalibrate_batch_norm,
    train,
)
from explorer.spec import load_spec, parse_spec

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
    assert any("(num_classes) set to 10 from the data" in note for note in result.notes)
    with pytest.raises(DataError, match="num_classes is 4 but the data has 10 classes"):
        train(spec, data, TrainConfig(epochs=1), strict_classes=True)


def tiny_aux_spec():
    """A conv stem, an auxiliary head beside it and a classifier: the smallest spec with a training-only head."""
    return parse_spec({
        "name": "tiny_aux", "input_size": 24, "num_classes": 10, "blocks": [
            {"name": "stem", "type": "conv", "flow": "entry", "out": 8, "padding": 1},
            {"name": "aux", "type": "aux_head", "flow": "entry", "channels": [8, 16]},
            {"name": "pool", "type": "pool", "flow": "exit", "mode": "global_avg"},
            {"name": "fc", "type": "classifier", "flow": "exit"}]})


def test_aux_head_output_is_trained():
    spec = tiny_aux_spec()
    data = load_data("digits", input_size=24, in_channels=3, limit=64)
    before = build_model(spec, seed=0).aux.fc.weight.clone()
    result = train(spec, data, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    assert not torch.equal(result.model.aux.fc.weight, before)  # the aux loss reached its head
    assert torch.isfinite(torch.tensor(result.history[0].train_loss))


@pytest.mark.parametrize("config, needle", [
    (TrainConfig(epochs=0), "epochs must be at least 1"),
    (TrainConfig(batch_size=1), "batch size must be at least 2"),
    (TrainConfig(lr=-1.0), "learning rate"),
    (TrainConfig(bn_recalibration=-1), "recalibration images must not be negative"),
    (TrainConfig(threads=0), "threads must be at least 1"),
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


# -- batch norm in early epochs ----------------------------------------------------------------

def test_recalibration_sets_running_statistics_to_the_images_statistics():
    torch.manual_seed(0)
    conv, norm = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)
    model = torch.nn.Sequential(conv, norm, torch.nn.ReLU())
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    assert recalibrate_batch_norm(model, x, in_channels=3, batch_size=16) == 1
    # oracle: the statistics of the conv's output over all 64 images (four equal batches, averaged)
    with torch.no_grad():
        features = conv(to_model_input(x, 3))
    batches = features.split(16)
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(norm.running_mean, mean, atol=1e-5)
    assert torch.allclose(norm.running_var, var, atol=1e-4)
    assert norm.momentum == 0.1 and not model.training  # left as it was: eval(), the usual momentum


def test_recalibration_leaves_layers_off_the_eval_path_alone():
    spec = tiny_aux_spec()
    data = load_data("digits", input_size=24, in_channels=3, limit=64)
    config = TrainConfig(epochs=1, batch_size=32, device="cpu")
    on = train(spec, data, config).model.state_dict()
    off = train(spec, data, dataclasses.replace(config, bn_recalibration=0)).model.state_dict()
    aux = [k for k in on if k.startswith("aux.") and ("running_" in k)]
    stem = [k for k in on if k.startswith("stem.") and ("running_" in k)]
    assert aux and stem
    for key in aux:  # the aux head does not run in eval(): its statistics stay as training left them
        assert torch.equal(on[key], off[key]), key
    assert any(not torch.equal(on[key], off[key]) for key in stem)


def test_recalibration_lifts_the_first_epochs_test_accuracy_and_keeps_the_weights(spec, data):
    config = TrainConfig(epochs=2, batch_size=32, seed=0, device="cpu")
    on = train(spec, data, config)
    off = train(spec, data, dataclasses.replace(config, bn_recalibration=0))
    # the same training: identical training curves and weights; only the running statistics differ
    assert [(h.train_loss, h.train_acc) for h in on.history] == [(h.train_loss, h.train_acc) for h in off.history]
    weights_on, weights_off = dict(on.model.named_parameters()), dict(off.model.named_parameters())
    assert all(torch.equal(weights_on[k], weights_off[k]) for k in weights_on)
    chance = 1 / len(data.classes)
    for a, b in zip(on.history, off.history):
        assert a.test_acc >= b.test_acc + 0.15, (a.test_acc, b.test_acc)
        assert a.test_acc >= 2.5 * chance
    # the lag the note explains is there without recalibration
    assert accuracy_lag_note(off.history, recalibrated=False) is not None


def _stats(epoch, train_acc, test_acc):
    return EpochStats(epoch, 1.0, train_acc, 2.0, test_acc, 1.0, float(epoch), 1e-3)


def test_lag_note_only_for_a_large_early_gap():
    note = accuracy_lag_note([_stats(1, 0.82, 0.1588)], recalibrated=False)
    assert note and "15.9%" in note and "82.0%" in note and "batch norm" in note
    assert "re-estimat" in note
    assert accuracy_lag_note([_stats(1, 0.82, 0.78)]) is None  # no real gap
    assert accuracy_lag_note([_stats(8, 0.99, 0.5)]) is None  # late: not the running statistics
    assert "network's own" in accuracy_lag_note([_stats(1, 0.9, 0.3)], recalibrated=True)


def test_epoch_time_estimate_is_a_positive_number(spec, data):
    seconds = estimate_epoch_seconds(spec, data, TrainConfig(batch_size=32, device="cpu"))
    assert 0 < seconds < float("inf")


def test_training_on_one_thread_restores_the_threads_after(spec, data):
    module_threads = torch.get_num_threads()  # this module runs on one thread: start from two
    torch.set_num_threads(2)
    try:
        seen = []
        train(spec, data, TrainConfig(epochs=1, batch_size=32, device="cpu", threads=1),
              on_progress=lambda p: seen.append(torch.get_num_threads()))
        assert set(seen) == {1}
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with cpu_threads(1):
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(module_threads)


def test_training_over_the_activation_budget_is_refused_before_anything_is_built(spec, data, monkeypatch):
    """One training step keeps every activation of its batch for the backward: the limit set between what
    batch 8 and batch 16 keep lets the first train and refuses the second, naming the batch size."""
    import importlib

    from explorer.resources import BudgetError
    from explorer.spec.budget import needs

    fitted = spec.with_overrides(num_classes=10)
    limit = needs(fitted, batch=8, training=True).activation_bytes
    assert needs(fitted, batch=16, training=True).activation_bytes > limit
    monkeypatch.setenv("EXPLORER_MAX_ACTIVATION_BYTES", str(limit))
    built = []
    lab_train = importlib.import_module("explorer.lab.train")  # the package's `train` is the function
    monkeypatch.setattr(lab_train, "build_model", lambda *a, **k: built.append(a) or build_model(*a, **k))
    with pytest.raises(BudgetError, match=r"training 'mini_xception'.*max_activation_bytes.*batch size") as info:
        train(spec, data, TrainConfig(epochs=1, batch_size=16))
    assert info.value.limit == "max_activation_bytes" and not built
    result = train(spec, data, TrainConfig(epochs=1, batch_size=8))
    assert built and len(result.history) == 1
