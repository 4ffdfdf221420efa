"""``explorer.explain_image(...)`` and ``python -m explorer explain``: files in, maps and one-line errors out;
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
from explorer.explain import ExplainError, default_layer, explain_tensor, get_method, layer_choices, resolve_layer
from explorer.spec import load_spec, spec_layers
from explorer.weights import get_weights

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "samples" / "cat.jpg"
DIGITS_CHECKPOINT = get_weights("mini_xception.digits").path  # the shipped model, where the registry says
SMALL = {"width": 0.25, "input_size": 64}

pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def small_xception():
    from explorer.infer import load_model

    return load_model("xception", "random", knobs=SMALL, cache=False)


def test_explorer_explain_is_the_one_call_and_matches_the_core(small_xception):
    import explorer.explain as package
    from explorer.infer import decode_image

    assert explorer.explain_image is package.explain_image  # the top-level name is the package's function
    assert not callable(package)  # one name, one thing: the package is not a function any more
    result = explorer.explain_image(CAT, small_xception, method="gradcam", target=281)
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
    by_name = explorer.explain_image(CAT, small_xception, method="saliency", target="Tabby")
    assert by_name.target == 281
    with pytest.raises(ExplainError, match="no class named 'tabbby'; close: 'tabby'"):
        explorer.explain_image(CAT, small_xception, target="tabbby")
    with pytest.raises(ExplainError, match=r"target class 1000 is out of range: the network has 1000 classes \(0..999\)"):
        explorer.explain_image(CAT, small_xception, target=1000)


def test_methods_and_options_are_checked_before_any_work():
    with pytest.raises(ExplainError, match="unknown method 'integrated' .*choose from saliency, ig"):
        get_method("integrated")
    assert get_method("Integrated_Gradients").name == "ig" and get_method("grad-cam").name == "gradcam"
    # no such spec file: the option error comes first, so nothing was loaded
    with pytest.raises(ExplainError, match="unknown option 'stepz' for ig \\(did you mean 'steps'\\?\\)"):
        explorer.explain_image(CAT, "no-such-spec.yaml", method="ig", stepz=3)
    with pytest.raises(ExplainError, match="option 'steps' of ig: bad value 'many': expected an integer"):
        explorer.explain_image(CAT, "no-such-spec.yaml", method="ig", steps="many")
    with pytest.raises(ExplainError, match="must be at least 2"):
        explorer.explain_image(CAT, "no-such-spec.yaml", method="ig", steps=1)
    with pytest.raises(ExplainError, match="choose from bilinear"):
        explorer.explain_image(CAT, "no-such-spec.yaml", method="gradcam", interpolate="cubic")


def test_default_layers_of_the_presets_and_the_choices():
    for name, layer in (("xception", "exit.sep2.act"), ("inception_v3", "Mixed_7c.concat")):
        layers = spec_layers(load_spec(name))
        choices = layer_choices(layers)
        assert choices[-1].name == layer
        assert all(len(c.out_shape) == 3 for c in choices)
        assert not any(c.name.startswith("AuxLogits") for c in choices)  # training-only head left out


def test_layer_paths_are_checked_with_close_matches(small_xception):
    model = small_xception.model
    # at 64 px the last spatial map (exit.sep2.act) is 2 x 2: the default is the finer layer its note names
    note = resolve_layer(model, "exit.sep2.act")[1]
    assert "only 2x2: too coarse" in note
    finer = note.split("a finer one: '")[1].split("'")[0]
    assert resolve_layer(model, None) == (finer, None)
    assert [layer.out_shape for layer in model.layers if layer.name == finer][0][1:] == (4, 4)
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
    cam = explain_tensor(digits.model, x, "gradcam", layer="exit.sep2.act")
    assert any("only 2x2: too coarse" in n and "middle.block3.add" in n for n in cam.notes)
    # the default is the finer layer that note recommends, with no note of its own
    default = explain_tensor(digits.model, x, "gradcam")
    assert default.layer == "middle.block3.add" and not any("coarse" in n for n in default.notes)
    assert default_layer(digits.model.layers) == "middle.block3.add"
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
                 "--weights", "random", "--method", "gradcam", "--layer", "exit.sep2.act", "--target", "tabby",
                 "--out", str(tmp_path), "--quiet"])
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


def test_cli_help_lists_every_method_with_its_real_options_and_defaults(capsys):
    """The help is made from the method registry when it is printed; building the parser needs no torch."""
    from explorer.cli import main as cli_main
    from explorer.explain import method_names

    with pytest.raises(SystemExit):
        cli_main(["explain", "--help"])
    help_text = capsys.readouterr().out
    listing = help_text.split("methods and their options with defaults")[1]
    blocks: dict[str, str] = {}
    for line in listing.splitlines()[1:]:
        if line[2:3] not in (" ", ""):
            name = line.split()[0]
            blocks[name] = line
        elif line.strip():
            blocks[name] += " " + line.strip()
    assert list(blocks) == method_names()
    for name, text in blocks.items():
        method = get_method(name)
        assert method.title in text
        for option in method.options:
            default = "auto" if option.default is None else str(option.default).lower()
            assert f"{option.name}={default}" in text, (name, option.name)


def test_the_app_and_the_api_share_one_explain_path(small_xception):
    """``explain_decoded`` (the app's call: a loaded network and a decoded image) gives what
    ``explorer.explain_image`` gives for the same file, and reports progress that may stop it."""
    from explorer.explain.api import explain_decoded
    from explorer.infer import decode_image

    via_api = explorer.explain_image(CAT, small_xception, method="ig", steps=4, internal_batch_size=2, target=281)
    fractions: list[float] = []
    via_app = explain_decoded(small_xception, decode_image(CAT), "ig", steps=4, internal_batch_size=2, target=281,
                              progress=fractions.append, model_name="Xception (small)")
    np.testing.assert_array_equal(via_app.values, via_api.values)
    assert via_app.model == "Xception (small)" and via_app.source == "cat.jpg"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any("random weights" in note for note in via_app.notes)  # the loaded model's notes come along


def test_pass_counts_match_the_forward_passes_the_methods_make(small_xception):
    """The estimate's count of images through the network equals what a counting model sees."""
    from explorer.explain.estimate import Passes, count_passes, estimate_seconds, seconds_per_unit

    x = torch.randn(3, 64, 64)
    seen: list[int] = []

    def record(images: int) -> None:  # a plain function: the replica's deep copy keeps this very one
        seen.append(images)

    class Counting(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.record = inner, record

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            self.record(batch.shape[0])
            return self.inner(batch)

    counting = Counting(small_xception.model)
    cases = [("saliency", {}, None), ("ig", {"steps": 6, "internal_batch_size": 4}, None),
             ("ig", {"steps": 6, "internal_batch_size": 4}, 3),
             ("smoothgrad", {"nt_samples": 5, "nt_samples_batch_size": 2}, None),
             ("occlusion", {"window": 16, "stride": 8}, None), ("guided-backprop", {}, 2)]
    for method, options, target in cases:
        seen.clear()
        explain_tensor(counting, x, method, target=target, **options)
        counted = count_passes(method, x, target=target, **options)
        assert counted.forward == sum(seen), (method, seen)
    assert count_passes("ig", x).backward == 16  # the default: 16 path points, each forward and back
    assert Passes(10, 0).units == 10 and Passes(1, 1).units > 2
    assert estimate_seconds(Passes(4, 0), 0.5) == 2.0
    assert seconds_per_unit(3.0, Passes(6, 0)) == 0.5 and seconds_per_unit(0.0, Passes(6, 0)) is None
    with pytest.raises(ExplainError, match="unknown option"):
        count_passes("ig", x, stepz=3)
