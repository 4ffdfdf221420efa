"""Spec → module: house rules, knobs, and shapes that equal the spec's own propagation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.build import build_model, weight_bytes
from explorer.errors import UsageError
from explorer.resources import BudgetError, limit
from explorer.spec import INPUT, SpecError, load_spec, param_count, spec_layers


def module_names(model: torch.nn.Module, kind: type) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, kind)}


def record_shapes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Run ``model`` and record each layer's output shape (batch axis dropped) and call count."""
    seen: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    names = {layer.name for layer in model.layers}
    handles = []
    for name, module in model.named_modules():
        if name in names:
            def hook(mod, args, out, name=name):
                seen[name] = tuple(out.shape[1:])
                calls[name] = calls.get(name, 0) + 1
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    assert all(c == 1 for c in calls.values()), "a module ran twice"
    return seen


@pytest.mark.parametrize("name", ["xception", "inception_v3"])
def test_house_rules(name):
    model = build_model(load_spec(name))
    assert not model.training
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and all(not r.inplace for r in relus)
    assert len({id(r) for r in relus}) == len(relus)
    for layer in model.layers:  # every layer name is a module path
        assert model.get_submodule(layer.name) is not None
    activations = [l for l in model.layers if l.kind == "activation"]
    assert len(activations) == len(relus)


@pytest.mark.parametrize("name", ["xception", "inception_v3"])
def test_layer_shapes_equal_propagation_on_the_presets(name):
    spec = load_spec(name)
    model = build_model(spec)
    seen = record_shapes(model, torch.randn(1, 3, 299, 299))
    expected = {l.name: l.out_shape for l in spec_layers(spec) if not l.train_only}
    assert seen == expected


def test_residual_false_removes_exactly_the_projections_and_adds():
    spec = load_spec("xception")
    on, off = build_model(spec), build_model(spec.with_overrides(residual=False))
    on_names = {n for n, _ in on.named_modules()}
    off_names = {n for n, _ in off.named_modules()}
    removed = on_names - off_names
    assert not off_names - on_names
    assert removed == {n for n in on_names if n.endswith((".skip", ".skip.conv", ".skip.bn", ".add"))}
    assert sum(n.endswith(".add") for n in removed) == 12
    assert sum(n.endswith(".skip.conv") for n in removed) == 4
    lost = sum(p.numel() for n, p in on.named_parameters() if ".skip." in n)
    assert sum(p.numel() for p in on.parameters()) - sum(p.numel() for p in off.parameters()) == lost


@pytest.mark.parametrize("act, cls", [("relu", torch.nn.ReLU), ("elu", torch.nn.ELU)])
def test_mid_activation_adds_modules_and_no_parameters(act, cls):
    spec = load_spec("xception")
    base, mid = build_model(spec), build_model(spec.with_overrides(mid_activation=act))
    added = {n for n, _ in mid.named_modules()} - {n for n, _ in base.named_modules()}
    separables = [n for n, _ in base.named_modules() if n.endswith(".pointwise")]
    assert len(added) == len(separables) == 34
    assert all(n.endswith(".mid_act") and isinstance(mid.get_submodule(n), cls) for n in added)
    assert sum(p.numel() for p in mid.parameters()) == sum(p.numel() for p in base.parameters())


@pytest.mark.parametrize("segments", [1, 4, 8])
def test_segments_set_groups_of_every_spatial_conv(segments):
    model = build_model(load_spec("xception").with_overrides(segments=segments, input_size=64))
    spatial = [m for n, m in model.named_modules() if n.endswith(".depthwise")]
    assert spatial and all(m.groups == segments for m in spatial)


def test_middle_repeats_and_every_knob_run():
    spec = load_spec("xception").with_overrides(middle_repeats=2, width=0.25, input_size=71, num_classes=7,
                                                 mid_activation="elu", segments=2, residual=False)
    model = build_model(spec)
    assert [n for n, _ in model.middle.named_children()] == ["block1", "block2"]
    assert model(torch.randn(2, 3, 71, 71)).shape == (2, 7)
    inc = load_spec("inception_v3").with_overrides(width=0.25, input_size=139, num_classes=5, aux_logits=False)
    assert build_model(inc)(torch.randn(1, 3, 139, 139)).shape == (1, 5)


def test_training_mode_returns_aux_logits():
    model = build_model(load_spec("inception_v3").with_overrides(width=0.25, num_classes=3)).train()
    logits, aux = model(torch.randn(2, 3, 299, 299))
    assert logits.shape == aux.shape == (2, 3)


def test_build_is_seeded():
    spec = load_spec("xception").with_overrides(width=0.25, input_size=64)
    a, b = build_model(spec), build_model(spec)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_memory_limit_is_checked_before_allocating(monkeypatch):
    spec = load_spec("xception").with_overrides(width=8)
    need = weight_bytes(spec)
    assert need == 4 * sum(param_count(l) for l in spec_layers(spec)) > int(limit("max_weight_bytes"))
    with pytest.raises(BudgetError, match="weights of 'xception' would need .* over the limit max_weight_bytes") as e:
        build_model(spec)
    assert e.value.limit == "max_weight_bytes" and "EXPLORER_MAX_WEIGHT_BYTES" in str(e.value)
    with pytest.raises(BudgetError, match=r"over the 1\.0 MiB this build allows"):
        build_model(load_spec("xception"), max_weight_bytes=2**20)
    monkeypatch.setenv("EXPLORER_MAX_WEIGHT_BYTES", "1MiB")  # the environment, read on every build
    with pytest.raises(BudgetError, match=r"max_weight_bytes = 1\.0 MiB"):
        build_model(load_spec("mini_xception").with_overrides(width=4))


def test_build_refuses_a_seed_out_of_range():
    spec = load_spec("mini_xception")
    for seed in (-1, 2**32, 10**23, 1.5, "3"):
        with pytest.raises(UsageError, match="seed: must be a whole number from 0 to 4,294,967,295"):
            build_model(spec, seed=seed)
    assert build_model(spec, seed=2**32 - 1) is not None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    residual=st.booleans(),
    mid=st.sampled_from(["none", "relu", "elu"]),
    repeats=st.integers(0, 3),
    width=st.sampled_from([0.125, 0.25, 0.5]),
    segments=st.sampled_from(["depthwise", 1, 2, 4, 8]),
    size=st.integers(40, 120),
    classes=st.integers(1, 20),
)
def test_random_knob_combinations_build_and_match_propagation(residual, mid, repeats, width, segments, size, classes):
    try:
        spec = load_spec("xception").with_overrides(
            residual=residual, mid_activation=mid, middle_repeats=repeats, width=width,
            segments=segments, input_size=size, num_classes=classes)
    except SpecError as exc:  # only divisibility can fail for these ranges
        assert "segments" in exc.path
        return
    model = build_model(spec)
    seen = record_shapes(model, torch.randn(1, 3, size, size))
    assert seen == {l.name: l.out_shape for l in spec_layers(spec)}
    assert sum(p.numel() for p in model.parameters()) == sum(param_count(l) for l in spec_layers(spec))
    assert all(l.inputs for l in spec_layers(spec)) and spec_layers(spec)[0].inputs == (INPUT,)
