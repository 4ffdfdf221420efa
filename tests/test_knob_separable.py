"""The ``separable`` knob: every separable conv replaced by the regular conv with the same input, output,
kernel, stride and padding. Oracles: the built model (FlopCounterMode, its parameters, a torch.fx trace),
the paper's formula, the separable spec's own cost report, and the CLI's and YAML's round trips."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch
import yaml
from test_cost import assert_costs_match_model, counted_macs, run_cli
from test_graph import fx_edges

from explorer.build import build_model
from explorer.cost import count_costs, separable_groups, what_if
from explorer.graph import build_graph
from explorer.spec import SpecError, knob_applies, knob_values, list_presets, load_spec, parse_spec, spec_layers
from explorer.spec.knobs import changed_knobs, describe_knob, describe_knobs
from explorer.spec.summary import summarize

XCEPTION = load_spec("xception")
SMALL = {"input_size": 71, "middle_repeats": 1}  # every block kind, at a size that runs in a blink
SEPARABLE_BLOCKS = ("xception", "sepconv")


def regular(spec, **knobs):
    return spec.with_overrides(separable=False, **knobs)


def test_regular_xception_builds_runs_and_costs_what_the_built_model_counts():
    spec = regular(XCEPTION, **SMALL)
    model = build_model(spec)
    out = model(torch.randn(2, 3, 71, 71))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert_costs_match_model(spec, batch=2)  # every layer's MACs and parameters, module by module
    convs = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert all(m.groups == 1 and m.bias is None for m in convs.values())
    assert not any(n.endswith((".depthwise", ".pointwise", ".mid_act")) for n, _ in model.named_modules())


def test_each_separable_conv_becomes_one_conv_at_its_module_path():
    sep, reg = spec_layers(XCEPTION), spec_layers(regular(XCEPTION))
    groups = separable_groups(sep)
    assert len(groups) == 34 and separable_groups(reg) == {}
    by_name = {layer.name: layer for layer in reg}
    for name, (spatial, pointwise) in groups.items():
        conv = by_name[f"{name}.conv"]
        assert conv.kind == "conv" and conv.separable is None and conv.block == spatial.block
        assert conv.inputs == spatial.inputs and conv.in_shape == spatial.in_shape
        assert conv.out_shape == pointwise.out_shape
        assert {k: conv.config[k] for k in ("kernel", "stride", "padding")} == {
            k: spatial.config[k] for k in ("kernel", "stride", "padding")}
        assert (conv.config["groups"], conv.config["bias"]) == (1, False)
    # everything else stays: the batch norms, activations, pools and shortcuts, in the same order
    # (the separable spec's layer names, each depthwise + pointwise pair read as one `<separable conv>.conv`)
    names = [f"{layer.separable}.conv" if layer.separable else layer.name for layer in sep
             if not (layer.separable and layer.kind == "pointwise")]
    assert [layer.name for layer in reg] == names


def test_each_replaced_conv_costs_the_papers_regular_conv():
    """Regular M·D_K²·D_G²·N against separable M·D_K²·D_G² + M·D_G²·N, layer by layer, at 299 px."""
    reg = regular(XCEPTION)
    with torch.device("meta"):  # FlopCounterMode counts on the meta device: nothing is computed
        model = build_model(reg)
        macs, _ = counted_macs(model, torch.empty(1, 3, 299, 299))
    sep_report, reg_report = count_costs(XCEPTION), count_costs(reg)
    for name, (spatial, pointwise) in separable_groups(spec_layers(XCEPTION)).items():
        m, n = spatial.config["in_channels"], pointwise.config["out_channels"]
        k, _ = spatial.config["kernel"]
        _, g, _ = pointwise.out_shape
        conv = reg_report.layer(f"{name}.conv")
        assert conv.macs == macs[f"{name}.conv"] == m * k * k * g * g * n
        assert conv.params == sum(p.numel() for p in model.get_submodule(f"{name}.conv").parameters()) == m * k * k * n
        separable = sep_report.layer(f"{name}.depthwise").macs + sep_report.layer(f"{name}.pointwise").macs
        assert separable == m * k * k * g * g + m * g * g * n
        assert Fraction(separable, conv.macs) == Fraction(1, n) + Fraction(1, k * k)
    # the what-if's regular network is this knob's network
    totals, whatif = reg_report.totals, what_if(XCEPTION).regular_totals
    assert (totals["params"], totals["macs"]) == (whatif["params"], whatif["macs"]) == (179_071_688, 68_818_345_696)


def test_with_regular_convs_the_what_if_has_nothing_to_compare():
    result = what_if(regular(XCEPTION, **SMALL))
    assert not result.separables and not result.spectrum
    assert result.regular_totals == result.totals


@pytest.mark.parametrize("knobs", [
    {"residual": False},
    {"width": 0.5},
    {"mid_activation": "relu", "segments": 2, "width": 0.25, "num_classes": 10},
])
def test_composes_with_the_other_knobs(knobs):
    spec = regular(XCEPTION, **SMALL, **knobs)
    assert_costs_match_model(spec)
    assert not separable_groups(spec_layers(spec))
    # the same knobs set in the other order give the same network
    assert XCEPTION.with_overrides(**knobs).with_overrides(separable=False, **SMALL) == spec


def test_residual_off_with_regular_convs_drops_the_shortcuts():
    layers = spec_layers(regular(XCEPTION, residual=False, **SMALL))
    assert not [layer.name for layer in layers if layer.kind == "add" or ".skip." in layer.name]


@pytest.mark.parametrize("knobs", [{"mid_activation": "relu"}, {"mid_activation": "elu"}, {"segments": 8},
                                   {"segments": 5}, {"segments": 1}])
def test_mid_activation_and_segments_have_no_effect_on_regular_convs(knobs):
    """They stay in the spec (for when the convs are separable again) but change no layer; a ``segments``
    that no channel count divides is no error, since there is no spatial conv to split."""
    plain = regular(XCEPTION, **SMALL)
    spec = regular(XCEPTION, **SMALL, **knobs)
    assert spec_layers(spec) == spec_layers(plain)
    assert count_costs(spec).totals == count_costs(plain).totals
    assert knob_applies(spec, next(iter(knobs)))
    if knobs != {"segments": 5}:  # ... and back on, they are there again
        assert spec.with_overrides(separable=True) == XCEPTION.with_overrides(**SMALL, **knobs)
    else:
        with pytest.raises(SpecError, match="not divisible by 5 segments"):
            spec.with_overrides(separable=True)


def test_the_layer_graph_is_the_built_models_data_flow():
    spec = regular(XCEPTION, **SMALL)
    graph = build_graph(spec)
    with torch.device("meta"):
        model = build_model(spec)
    assert set(graph.edges) == fx_edges(model)
    report = count_costs(spec)
    assert graph.graph["macs"] == report.totals["macs"] and graph.graph["params"] == report.totals["params"]
    assert {d["kind"] for n, d in graph.nodes(data=True) if n.endswith(".conv") and ".sep" in n} == {"conv"}


def test_presets_do_not_change_and_regular_convs_round_trip_through_yaml():
    for name in list_presets():
        spec = load_spec(name)
        assert parse_spec(spec.to_yaml()) == spec
        blocks = yaml.safe_load(spec.to_yaml())["blocks"]
        assert not any("separable" in b for b in blocks)  # the default is not written
        assert all(b.separable for b in spec.blocks if b.type in SEPARABLE_BLOCKS)
    for name in ("xception", "mini_xception"):
        spec = regular(load_spec(name))
        assert parse_spec(spec.to_yaml()) == spec
        blocks = yaml.safe_load(spec.to_yaml())["blocks"]
        assert [b.get("separable") for b in blocks] == [
            False if b["type"] in SEPARABLE_BLOCKS else None for b in blocks]
        assert spec.with_overrides(separable=True) == load_spec(name)


def test_knob_values_changed_knobs_and_words():
    assert knob_values(XCEPTION)["separable"] is True
    reg = regular(XCEPTION)
    assert knob_values(reg)["separable"] is False
    assert reg.with_overrides(separable=False) == reg  # the value shown leaves the spec as it is
    assert changed_knobs(XCEPTION, {"separable": "false", "residual": True}) == {"separable": "false"}
    assert changed_knobs(reg, {"separable": False}) == {}
    assert list(knob_values(XCEPTION))[:3] == ["residual", "separable", "mid_activation"]
    inception = load_spec("inception_v3")
    assert "separable" not in knob_values(inception) and not knob_applies(inception, "separable")
    with pytest.raises(SpecError, match="does not apply"):
        inception.with_overrides(separable=False)
    with pytest.raises(SpecError, match="bad value"):
        XCEPTION.with_overrides(separable="sometimes")
    assert describe_knob("separable", False) == "regular convolutions instead of separable ones"
    assert describe_knob("separable", "true") == "separable convolutions"
    assert describe_knob("separable", False, short=True) == "regular convs"
    assert describe_knobs({"mid_activation": "relu", "separable": False, "residual": False}) == (
        "residual connections off, regular convolutions instead of separable ones, "
        "ReLU between depthwise and pointwise")


def test_the_summary_says_the_convs_are_regular():
    assert "regular conv" not in summarize(XCEPTION)
    text = summarize(regular(XCEPTION, middle_repeats=3, mid_activation="relu"))
    model = build_model(regular(XCEPTION, middle_repeats=3, input_size=71))
    convs = [n for n, _ in model.named_modules() if n.endswith(".conv") and ".sep" in n]
    assert f"{len(convs)} regular convs in place of separable ones" in text, text
    assert "depthwise" not in text and "ReLU" not in text  # no separable conv left to describe


def test_the_costs_command_takes_the_knob(capsys):
    code, out, _ = run_cli(capsys, "costs", "xception", "--set", "separable=false", "--json")
    assert code == 0
    assert json.loads(out)["totals"] == count_costs(regular(XCEPTION)).totals
    code, out, _ = run_cli(capsys, "whatif", "xception", "--set", "separable=false")
    assert code == 0 and "nothing to compare" in out
