"""The kinds table (explorer/spec/kinds.py) and the builder's factories: every kind has an entry and a
factory, and the entry agrees with the module the factory builds.

Per layer of the presets and their knob variants, the table's learnable tensors
equal the module's ``named_parameters`` (suffixes, shapes and order: the weight
keys depend on them), and its MACs equal ``FlopCounterMode`` / 2 on that module
(nothing is computed: the modules live on the meta device). Whole built models
against the same oracles are tests/test_cost.py's (``assert_costs_match_model``).
"""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch
from reference import tiny_spec_data
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from explorer.build import make_module
from explorer.build.modules import FACTORIES, Add, Concat, GlobalAvgPool, InputAffine
from explorer.spec import INPUT, KINDS, Kind, Layer, Spec, kind_info, load_spec, param_count, parse_spec, spec_layers
from explorer.spec.layers import iter_params


def variants() -> list[Spec]:
    """The presets, their knob variants, and a spec whose conv and classifier flip the presets' biases."""
    xception = load_spec("xception")
    biases = tiny_spec_data()
    biases["blocks"][0]["bn"] = False  # a conv with a bias
    biases["blocks"][-1]["bias"] = False
    return [xception, load_spec("inception_v3"), parse_spec(biases),
            *(xception.with_overrides(**knobs) for knobs in (
                {"segments": 1}, {"segments": 2}, {"mid_activation": "relu"}, {"mid_activation": "elu"},
                {"residual": False}))]


LAYERS = [layer for spec in variants() for layer in spec_layers(spec)]


def expected_module(layer: Layer) -> type[nn.Module]:
    """The torch class a layer's module must be: the oracle, spelled apart from the table."""
    cfg = layer.config
    if layer.kind == Kind.ACTIVATION:
        return {"relu": nn.ReLU, "elu": nn.ELU}[cfg["fn"]]
    if layer.kind == Kind.POOL:
        return {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "global_avg": GlobalAvgPool}[cfg["mode"]]
    return {Kind.CONV: nn.Conv2d, Kind.DEPTHWISE: nn.Conv2d, Kind.POINTWISE: nn.Conv2d, Kind.GROUPED_CONV: nn.Conv2d,
            Kind.BATCHNORM: nn.BatchNorm2d, Kind.ADD: Add, Kind.CONCAT: Concat, Kind.LINEAR: nn.Linear,
            Kind.DROPOUT: nn.Dropout, Kind.AFFINE: InputAffine}[layer.kind]


def test_every_kind_has_a_complete_entry_and_a_factory():
    assert set(KINDS) == set(Kind)
    assert set(FACTORIES) == set(Kind)  # the one fact that lives with torch, in the builder
    for kind in Kind:
        info = kind_info(kind)
        assert kind_info(kind.value) is info
        assert info.label, kind
        go.scatter.Marker(color=info.style.color, symbol=info.style.symbol, size=info.style.size)  # valid for plotly
    with pytest.raises(ValueError):
        kind_info("conv3d")


def test_the_variants_reach_every_kind():
    """So the oracle test below sees every entry: a new kind needs a variant that builds it."""
    assert {layer.kind for layer in LAYERS} == set(Kind)


def test_layer_kinds_are_the_enum_and_read_as_their_names():
    layer = next(layer for layer in LAYERS if layer.kind == "depthwise")
    assert layer.kind is Kind.DEPTHWISE and f"{layer.kind}" == str(layer.kind) == "depthwise"


def test_the_table_agrees_with_every_module_it_builds():
    shapes: dict[str, tuple[int, ...]] = {}  # each variant's layers come in execution order: producers first
    for layer in LAYERS:
        info = kind_info(layer.kind)
        with torch.device("meta"):
            module = make_module(layer).eval()
        where = f"{layer.name} ({layer.kind})"
        assert type(module) is expected_module(layer), where
        assert list(iter_params(layer)) == [(n, tuple(p.shape)) for n, p in module.named_parameters()], where
        assert param_count(layer) == sum(p.numel() for p in module.parameters()), where
        assert info.conv == isinstance(module, nn.Conv2d), where
        if info.conv:
            cfg, groups = layer.config, layer.config["groups"]
            assert {Kind.CONV: groups == 1, Kind.DEPTHWISE: groups == cfg["in_channels"] > 1,
                    Kind.POINTWISE: groups == 1 and cfg["kernel"] == (1, 1),
                    Kind.GROUPED_CONV: 1 < groups < cfg["in_channels"]}[layer.kind], where
        assert info.join == (len(layer.inputs) > 1), where
        inputs = [torch.empty(1, *(layer.in_shape if name == INPUT else shapes[name]), device="meta")
                  for name in layer.inputs]
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            out = module(*inputs)
        assert tuple(out.shape[1:]) == layer.out_shape, where
        if info.inplace_ok:  # its output can take its first input's place
            assert out.shape == inputs[0].shape, where
        assert counter.get_total_flops() == 2 * info.macs(layer), where
        shapes[layer.name] = layer.out_shape


def test_eval_identity_is_what_a_module_does_in_eval():
    """Exactly the kinds flagged ``eval_identity`` hand back their input unchanged (one layer of each kind)."""
    firsts = {layer.kind: layer for layer in reversed(LAYERS) if len(layer.inputs) == 1}
    for kind, layer in firsts.items():
        x = torch.randn(1, *layer.in_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = make_module(layer).eval()(x)
        assert kind_info(kind).eval_identity == (out.shape == x.shape and torch.equal(out, x)), kind
