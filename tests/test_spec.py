"""The spec layer: presets, knobs, YAML round trips and one clear error per bad input."""

from __future__ import annotations

import sys

import pytest
import yaml

from explorer.spec import SpecError, list_presets, load_spec, parse_spec, spec_layers


def xception_data() -> dict:
    return yaml.safe_load(load_spec("xception").to_yaml())


def test_presets_ship_and_round_trip():
    assert {"xception", "inception_v3"} <= set(list_presets())
    for name in list_presets():
        spec = load_spec(name)
        assert parse_spec(spec.to_yaml()) == spec
        assert spec.digest() == parse_spec(spec.to_yaml()).digest()


def test_spec_layer_imports_no_torch():
    import subprocess

    code = "import explorer.spec, sys; explorer.spec.spec_layers(explorer.spec.load_spec('xception')); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_any_yaml_file_is_a_spec(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(load_spec("xception").with_overrides(middle_repeats=2).to_yaml())
    spec = load_spec(str(path))
    assert [b.repeat for b in spec.blocks if b.flow == "middle"] == [2]


def test_with_overrides_returns_a_new_spec_and_keeps_the_original():
    spec = load_spec("xception")
    before = spec.to_yaml()
    changed = spec.with_overrides(residual=False, mid_activation="relu")
    assert spec.to_yaml() == before and changed != spec
    assert all(b.residual == "none" for b in changed.blocks if b.type == "xception")
    assert all(b.mid_activation == "relu" for b in changed.blocks if b.type in ("xception", "sepconv"))


def test_residual_true_restores_identity_and_projection_shortcuts():
    spec = load_spec("xception")
    assert spec.with_overrides(residual=False).with_overrides(residual=True) == spec


def test_knob_values_from_strings():
    spec = load_spec("xception").with_overrides(residual="false", width="0.5", segments="depthwise",
                                                middle_repeats="3")
    assert spec.blocks[0].out == 16
    assert [b.repeat for b in spec.blocks if b.flow == "middle"] == [3]


def test_segments_and_width_reach_every_separable_conv():
    layers = spec_layers(load_spec("xception").with_overrides(segments=8))
    groups = {l.config["groups"] for l in layers if l.name.endswith(".depthwise")}
    assert groups == {8}
    kinds = {l.kind for l in layers if l.name.endswith(".depthwise")}
    assert kinds == {"grouped_conv"}


@pytest.mark.parametrize("mutate, path, reason", [
    (lambda d: d["blocks"][2].update(type="xceptoin"), "blocks[2] (entry.block1)", "unknown block type 'xceptoin'"),
    (lambda d: d["blocks"][2].update(colour="red"), "blocks[2] (entry.block1).colour", "unknown field"),
    (lambda d: d["blocks"][2].update(channels=[128, 0]), "blocks[2] (entry.block1).channels[1]", "greater than or equal to 1"),
    (lambda d: d["blocks"][0].update(out=-4), "blocks[0] (entry.conv1).out", "greater than or equal to 1"),
    (lambda d: d["blocks"][3].update(segments=3), "blocks[3] (entry.block2).segments", "not divisible by 3 segments"),
    (lambda d: d.update(input_size=4), "blocks[1] (entry.conv2)", "too small"),
    (lambda d: d["blocks"][5].update(residual="identity", channels=[728, 512]), "blocks[5] (middle.block1).residual", "identity shortcut"),
    (lambda d: d["blocks"][1].update(name="entry.conv1"), "spec", "used twice"),
    (lambda d: d.update(frobnicate=1), "frobnicate", "unknown field"),
])
def test_bad_specs_raise_one_spec_error_naming_the_field(mutate, path, reason):
    data = xception_data()
    mutate(data)
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert info.value.path == path
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(SpecError) as info:
        parse_spec("name: x\nblocks: [\n  - {name: a\n")
    assert info.value.path.startswith("line ")
    assert "YAML syntax error" in info.value.reason


@pytest.mark.parametrize("knobs, path, reason", [
    ({"depth": 3}, "depth", "unknown knob"),
    ({"residual": "maybe"}, "residual", "bad value"),
    ({"separable": "maybe"}, "separable", "bad value"),
    ({"width": 0}, "width", "bad value"),
    ({"middle_repeats": -1}, "middle_repeats", "bad value"),
    ({"aux_logits": False}, "aux_logits", "does not apply"),
])
def test_bad_knobs(knobs, path, reason):
    with pytest.raises(SpecError) as info:
        load_spec("xception").with_overrides(**knobs)
    assert info.value.path == path and reason in info.value.reason


def test_knobs_that_do_not_apply_to_inception():
    spec = load_spec("inception_v3")
    for knob, value in [("residual", False), ("separable", False), ("mid_activation", "relu"), ("segments", 1),
                        ("middle_repeats", 2)]:
        with pytest.raises(SpecError, match="does not apply"):
            spec.with_overrides(**{knob: value})
    # ... while the knobs that do apply change what they say and nothing else
    half = spec.with_overrides(width=0.5, num_classes=10, input_size=160, aux_logits=False)
    assert (half.num_classes, half.input_size) == (10, 160)
    assert [b.type for b in half.blocks] == [b.type for b in spec.blocks if b.type != "aux_head"]
    convs = {layer.name: layer.out_shape[0] for layer in spec_layers(spec) if layer.kind == "conv"}
    halved = {layer.name: layer.out_shape[0] for layer in spec_layers(half) if layer.kind == "conv"}
    assert set(halved) == {layer.name for layer in spec_layers(spec) if layer.kind == "conv" and not layer.train_only}
    assert halved == {name: max(1, round(convs[name] / 2)) for name in halved}


def test_missing_spec_file():
    with pytest.raises(SpecError, match="neither a preset"):
        load_spec("/nonexistent/spec.yaml")
