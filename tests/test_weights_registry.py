"""The weights registry against its oracles: timm's and torchvision's own metadata, the built networks,
the reference state dicts, and the shipped model evaluated on its own test split."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from explorer.build import build_model
from explorer.cli import main
from explorer.errors import UsageError
from explorer.spec import load_spec
from explorer.weights import (
    LoadedModel,
    WeightsError,
    closest,
    convert_state_dict,
    get_weights,
    imagenet_for,
    list_weights,
    load_model,
    read_metadata,
)

XCEPTION = get_weights("xception.imagenet")
INCEPTION = get_weights("inception_v3.imagenet")
DIGITS = get_weights("mini_xception.digits")


def _learnable(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_every_entry_is_listed_once_official_first():
    names = [entry.name for entry in list_weights()]
    assert names == ["xception.imagenet", "inception_v3.imagenet", "mini_xception.digits"]
    assert [entry.shipped for entry in list_weights()] == [False, False, True]
    with pytest.raises(UsageError, match="no weights set named 'resnet' \\(known: xception.imagenet"):
        get_weights("resnet")


@pytest.mark.parametrize("entry, reference", [(XCEPTION, "timm_xception"), (INCEPTION, "tv_inception")])
def test_the_network_an_official_entry_fits_is_the_reference_networks_own(entry, reference, request):
    """The registry's structural check compares specs; here the reference module's state dict, mapped by the
    entry's key layout, must hold exactly the preset's learnable tensors, shape for shape."""
    module = request.getfixturevalue(reference)
    theirs = convert_state_dict({k: tuple(v.shape) for k, v in module.named_parameters()}, entry.layout)
    ours = _learnable(build_model(entry.spec()))
    assert theirs == ours
    fit = entry.fit(entry.spec())
    assert fit.complete and fit.total == len(ours)


@pytest.mark.parametrize("entry, reference", [(XCEPTION, "timm_xception"), (INCEPTION, "tv_inception")])
def test_parameter_counts_are_the_built_and_the_reference_networks(entry, reference, request):
    module = request.getfixturevalue(reference)
    assert entry.num_params == sum(p.numel() for p in module.parameters())
    assert entry.num_params == sum(p.numel() for p in build_model(entry.spec()).parameters())


def test_inception_facts_are_torchvisions_own():
    from torchvision.models import Inception_V3_Weights

    meta = Inception_V3_Weights.IMAGENET1K_V1.meta
    assert INCEPTION.num_params == meta["num_params"]
    card = next(a for a in INCEPTION.accuracy if "torchvision" in a.source)
    metrics = meta["_metrics"]["ImageNet-1K"]
    assert (card.top1, card.top5) == (metrics["acc@1"], metrics["acc@5"])
    assert INCEPTION.url == Inception_V3_Weights.IMAGENET1K_V1.url
    assert INCEPTION.class_names() == list(meta["categories"])
    assert INCEPTION.sha256_prefix and INCEPTION.file_name.split("-")[-1].startswith(INCEPTION.sha256_prefix)


def test_xception_facts_are_timms_own():
    import timm

    cfg = timm.models.get_pretrained_cfg("legacy_xception.tf_in1k")
    assert XCEPTION.url == cfg.url
    pre = XCEPTION.preprocess
    assert (pre.crop, pre.interpolation, pre.mean, pre.std) == (cfg.input_size[1], cfg.interpolation,
                                                                 tuple(cfg.mean), tuple(cfg.std))
    assert pre.resize == int(pre.crop / cfg.crop_pct)  # timm's eval resize: crop / crop_pct, floored
    assert len(XCEPTION.class_names()) == cfg.num_classes == 1000
    # each published accuracy names its source
    assert all(a.source and a.url for a in XCEPTION.accuracy)


def test_the_shipped_models_accuracy_is_what_it_scores_on_its_test_split():
    """The entry's accuracy comes from the file; the oracle is the network evaluated again on the held-out
    digits it was measured on."""
    from explorer.lab.data import load_data
    from explorer.lab.train import evaluate
    from explorer.weights import load_trained

    model, checkpoint = load_trained(DIGITS.path)
    data = load_data("digits", input_size=checkpoint.spec.input_size, in_channels=checkpoint.spec.in_channels)
    _, accuracy = evaluate(model, data.test_x, data.test_y, in_channels=checkpoint.spec.in_channels)
    assert DIGITS.accuracy[0].top1 == pytest.approx(100 * accuracy, abs=1e-3)
    assert int(read_metadata(DIGITS.path)["test_images"]) == len(data.test_y)
    assert DIGITS.num_params == sum(p.numel() for p in model.parameters())
    assert DIGITS.class_names() == checkpoint.classes


@pytest.mark.parametrize("knobs, fits", [
    ({}, True),
    ({"residual": False}, True),            # the shortcuts' weights are unused, the rest all fit
    ({"mid_activation": "relu"}, True),     # no parameters change
    ({"middle_repeats": 2}, True),
    ({"num_classes": 10}, True),            # all but the classifier
    ({"segments": 1}, True),                # the depthwise convs change, most tensors still fit
    ({"width": 0.75}, False),               # every conv changes width
])
def test_fit_is_decided_by_structure(knobs, fits):
    spec = load_spec("xception").with_overrides(**knobs)
    built = _learnable(build_model(spec))
    reference = _learnable(build_model(XCEPTION.spec()))
    same = sum(reference.get(name) == shape for name, shape in built.items())
    fit = XCEPTION.fit(spec)
    assert (fit.matched, fit.total) == (same, len(built))  # the spec-only count is the built networks' own
    assert fit.fits is fits
    if fits:
        assert imagenet_for(spec)[0] is XCEPTION
    else:
        with pytest.raises(WeightsError, match="no ImageNet weights fit spec 'xception'"):
            imagenet_for(spec)


def test_a_network_of_xception_blocks_is_not_xception():
    """mini_xception is built of xception blocks: by name it used to pass for Xception and fail only after
    the download. By structure it fits the shipped digits weights and no ImageNet set."""
    mini = load_spec("mini_xception")
    assert not XCEPTION.fit(mini).fits and DIGITS.fit(mini).complete
    assert closest(mini) is XCEPTION  # its preprocessing for random weights still derives from Xception's
    assert closest(load_spec("inception_v3").with_overrides(width=0.5)) is INCEPTION


def test_a_registry_name_loads_that_set():
    loaded = load_model(None, "mini_xception.digits", cache=False)
    assert loaded.entry is DIGITS and loaded.report.complete and loaded.classes == tuple(DIGITS.class_names())
    assert loaded.preprocess == DIGITS.preprocess
    with pytest.raises(WeightsError, match="do not fit spec 'xception'"):
        load_model("xception", "mini_xception.digits", cache=False)


def test_a_loaded_model_is_immutable():
    loaded = load_model(None, "mini_xception.digits", cache=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.weights = "something else"
    assert isinstance(loaded.notes, tuple) and isinstance(loaded.classes, tuple)
    runner = loaded.runner("cpu")
    assert loaded.runner("cpu") is runner  # the copies live beside it, made once
    loaded.drop_copies()
    assert loaded.runner("cpu") is not runner
    assert LoadedModel.__hash__ is object.__hash__  # one loaded model, one entry in the copies table


def test_the_weights_command_shows_the_registry(capsys):
    assert main(["weights", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [e.name for e in list_weights()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["inception_v3.imagenet"]["parameters"] == INCEPTION.num_params
    assert by_name["mini_xception.digits"]["on_this_machine"] is True
    assert main(["weights", "xception.imagenet"]) == 0
    text = capsys.readouterr().out
    assert XCEPTION.url in text and "Chollet 2017" in text and "22,855,952 parameters" in text
    assert main(["weights", "resnet"]) == 2
    assert "no weights set named 'resnet'" in capsys.readouterr().err


def test_importing_the_image_decoder_leaves_pillow_alone():
    """Pillow's process-wide limits are not ours to change: decode_image checks each image itself."""
    probe = ("from PIL import Image; import warnings; before = Image.MAX_IMAGE_PIXELS\n"
             "import explorer.infer.images\n"
             "assert Image.MAX_IMAGE_PIXELS == before, 'the pixel limit changed'\n"
             "assert not [f for f in warnings.filters if f[2] is Image.DecompressionBombWarning], 'a filter'\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
