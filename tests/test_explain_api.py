"""``explorer.explain(...)`` and ``python -m explorer explain``: files in, maps and one-line errors out;
the choice of methods, options, layers and targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explorer
from explorer.cli import main
from explorer.explain import ExplainError, explain_tensor, get_method, layer_choices, resolve_layer
from explorer.spec import load_spec, spec_layers

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "samples" / "cat.jpg"
DIGITS_CHECKPOINT = ROOT / "assets" / "checkpoints" / "mini_xception_digits.safetensors"
SMALL = {"width": 0.25, "input_size": 64}

pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def small_xception():
    from explorer.infer import load_model

    return load_model("xception", "random", knobs=SMALL, cache=False)


def test_explorer_explain_is_the_one_call_and_matches_the_core(small_xception):
    from explorer.infer import decode_image

    assert explorer.explain is not None and callable(explorer.explain)
    import explorer.explain as package  # the package is callable too, so the name works either way

    result = package(CAT, small_xception, method="gradcam", target=281)
    pre = small_xception.preprocess
    crop = pre.crop_image(decode_image(CAT).image)
    oracle = explain_tensor(small_xception.model, pre.normalize(crop), "gradcam", target=281)
    np.testing.assert_array_equal(result.values, oracle.values)
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8
    np.testing.assert_array_equal(result.image, np.asarray(crop))
    assert result.target == 281 and result.target_label == "tabby"
    assert result.source == "cat.jpg" and "random" in result.model
    assert any("random weights" in note for note in result.notes)


def test_target_by_name_and_errors(small_xception):
    by_name = explorer.explain(CAT, small_xception, method="saliency", target="Tabby")
    assert by_name.target == 281
    with pytest.raises(ExplainError, match="no class named 'tabbby'; close: 'tabby'"):
        explorer.explain(CAT, small_xception, target="tabbby")
    with pytest.raises(ExplainError, match=r"target class 1000 is out of range: the network has 1000 classes \(0..999\)"):
        explorer.explain(CAT, small_xception, target=1000)


def test_methods_and_options_are_checked_before_any_work():
    with pytest.raises(ExplainError, match="unknown method 'integrated' .*choose from saliency, ig"):
        get_method("integrated")
    assert get_method("Integrated_Gradients").name == "ig" and get_method("grad-cam").name == "gradcam"
    # no such spec file: the option error comes first, so nothing was loaded
    with pytest.raises(ExplainError, match="unknown option 'stepz' for ig \\(did you mean 'steps'\\?\\)"):
        explorer.explain(CAT, "no-such-spec.yaml", method="ig", stepz=3)
    with pytest.raises(ExplainError, match="option 'steps' of ig: bad value 'many': expected an integer"):
        explorer.explain(CAT, "no-such-spec.yaml", method="ig", steps="many")
    with pytest.raises(ExplainError, match="must be at least 2"):
        explorer.explain(CAT, "no-such-spec.yaml", method="ig", steps=1)
    with pytest.raises(ExplainError, match="choose from bilinear"):
        explorer.explain(CAT, "no-such-spec.yaml", method="gradcam", interpolate="cubic")


def test_default_layers_of_the_presets_and_the_choices():
    for name, layer in (("xception", "exit.sep2.act"), ("inception_v3", "Mixed_7c.concat")):
        layers = spec_layers(load_spec(name))
        choices = layer_choices(layers)
        assert choices[-1].name == layer
        assert all(len(c.out_shape) == 3 for c in choices)
        assert not any(c.name.startswith("AuxLogits") for c in choices)  # training-only head left out


def test_layer_paths_are_checked_with_close_matches(small_xception):
    model = small_xception.model
    assert resolve_layer(model, None)[0] == "exit.sep2.act"
    with pytest.raises(ExplainError, match="no layer 'exit.sep2.ac' in this network; close matches: exit.sep2.act"):
        resolve_layer(model, "exit.sep2.ac")
    with pytest.raises(ExplainError, match="not a spatial map"):
        resolve_layer(model, "exit.fc")
    name, note = resolve_layer(model, "middle.block8")
    assert name == "middle.block8.add" and "is a block" in note
    assert resolve_layer(model, "entry.block2.sep1.pointwise") == ("entry.block2.sep1.pointwise", None)


def test_inception_aux_head_is_refused_as_a_layer():
    from explorer.build import build_model

    model = build_model(load_spec("inception_v3").with_overrides(width=0.125, aux_logits=True))
    with pytest.raises(ExplainError, match="auxiliary head, which runs only in training"):
        resolve_layer(model, "AuxLogits.conv0.conv")


def test_notes_for_unused_layer_and_coarse_gradcam_maps():
    from explorer.infer import load_model

    digits = load_model(None, DIGITS_CHECKPOINT, cache=False)
    x = torch.zeros(3, 32, 32)
    x[:, 8:24, 14:18] = 1.0  # a "1"
    cam = explain_tensor(digits.model, x, "gradcam")
    assert any("only 2x2: too coarse" in n and "middle.block3.add" in n for n in cam.notes)
    saliency = explain_tensor(digits.model, x, "saliency", layer="exit.sep2.act")
    assert any("does not use a layer" in n for n in saliency.notes)


def test_black_baseline_needs_the_normalization(small_xception):
    x = torch.randn(3, 64, 64)
    with pytest.raises(ExplainError, match="needs the preprocessing's mean and std"):
        explain_tensor(small_xception.model, x, "ig", steps=2, baseline="black")
    # with the mean and std, black is the normalized black picture: IG's completeness gap uses it
    mean, std = small_xception.preprocess.mean, small_xception.preprocess.std
    result = explain_tensor(small_xception.model, x, "ig", steps=2, baseline="black", mean=mean, std=std)
    assert np.isfinite(result.values).all() and result.options["baseline"] == "black"


def test_cli_writes_png_npy_and_json(tmp_path, capsys):
    code = main(["explain", str(CAT), "--model", "xception", "--set", "width=0.25", "--set", "input_size=64",
                 "--weights", "random", "--method", "gradcam", "--target", "tabby", "--out", str(tmp_path),
                 "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Grad-CAM at exit.sep2.act for class 281 (tabby)" in out
    png, npy, summary = (tmp_path / f"cat_xception_gradcam.{ext}" for ext in ("png", "npy", "json"))
    assert Image.open(png).size == (64, 64)
    assert np.load(npy).shape == (1, 64, 64)
    data = json.loads(summary.read_text())
    assert data["target"] == 281 and data["layer"] == "exit.sep2.act" and data["method"] == "gradcam"
    assert data["files"]["png"] == str(png) and data["empty"] is None


def test_cli_digits_checkpoint_with_options(tmp_path, capsys):
    code = main(["explain", str(CAT), "--weights", str(DIGITS_CHECKPOINT), "--method", "ig", "-o", "steps=4",
                 "-o", "baseline=black", "--target", "3", "--view", "map", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    data = json.loads((tmp_path / "cat_mini_xception_ig.json").read_text())
    assert data["options"]["steps"] == 4 and data["options"]["baseline"] == "black" and data["target"] == 3
    assert np.load(tmp_path / "cat_mini_xception_ig.npy").shape == (3, 32, 32)


@pytest.mark.parametrize("args, needle", [
    (["--method", "gradcam", "--layer", "exit.sep2.ac"], "close matches: exit.sep2.act"),
    (["--method", "integrated"], "unknown method 'integrated'"),
    (["--method", "ig", "-o", "steps"], "expected KEY=VALUE"),
])
def test_cli_errors_are_one_line_and_exit_2(args, needle, tmp_path):
    result = subprocess.run([sys.executable, "-m", "explorer", "explain", str(CAT), "--model", "xception",
                             "--set", "width=0.25", "--set", "input_size=64", "--weights", "random",
                             "--out", str(tmp_path), "--quiet", *args],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert not list(tmp_path.iterdir())


def test_cli_help_lists_every_method_with_its_real_options_and_defaults():
    """The help is written out (so `--help` needs no torch); it must match the methods."""
    from explorer.explain import method_names
    from explorer.explain.cli import CLI_METHODS, METHODS_HELP

    assert list(CLI_METHODS) == method_names()
    blocks = {}
    for line in METHODS_HELP.splitlines():
        if line[2:3] != " ":
            name = line.split()[0]
            blocks[name] = line
        else:
            blocks[name] += " " + line.strip()
    assert list(blocks) == method_names()
    for name, text in blocks.items():
        for option in get_method(name).options:
            default = "auto" if option.default is None else str(option.default).lower()
            assert f"{option.name}={default}" in text, (name, option.name)
