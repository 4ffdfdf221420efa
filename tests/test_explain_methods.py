"""Every attribution method on both presets and on the shipped digits checkpoint: the maps' shape and
finiteness, no hook left on any model (after success and after failures), progress, and two threads
explaining at once getting exactly what each gets alone.

The presets are narrowed (``width=0.25``) and shrunk to the smallest inputs that still leave a 2 x 2 map
at the last spatial layer (so Grad-CAM defaults to a finer block output): these tests are about mechanics,
and the full-size presets only appear where the size matters (the default layers and Grad-CAM's upsampling from the real 10 x 10 / 8 x 8).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from conftest import randomize_

from explorer.build import build_model
from explorer.explain import (
    POOL,
    ExplainError,
    explain_tensor,
    get_method,
    installed_hooks,
    method_names,
    resolve_layer,
)
from explorer.spec import load_spec
from explorer.weights import get_weights

# Captum warns on every guided call that it sets hooks (the package filters it; pytest resets filters)
pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.usefixtures("one_thread")]

DIGITS_CHECKPOINT = get_weights("mini_xception.digits").path  # the shipped model, where the registry says

# small settings: a couple of forward passes each, so every method runs in well under a second
FAST = {
    "ig": {"steps": 4, "internal_batch_size": 2},
    "smoothgrad": {"nt_samples": 4, "nt_samples_batch_size": 2},
    "occlusion": {"window": 16, "stride": 16},
}
SMALL = {
    "xception": {"width": 0.25, "input_size": 64},
    "inception_v3": {"width": 0.25, "input_size": 107, "aux_logits": False},
}


def _small_model(name: str) -> torch.nn.Module:
    return randomize_(build_model(load_spec(name).with_overrides(**SMALL[name])), seed=3)


@pytest.fixture(scope="module")
def small_models() -> dict[str, torch.nn.Module]:
    return {name: _small_model(name) for name in SMALL}


@pytest.fixture(scope="module")
def digits():
    """The shipped digits checkpoint (the lab's mini Xception) and a few test digits, preprocessed."""
    from explorer.infer import load_model
    from explorer.lab.data import digits_samples

    loaded = load_model(None, DIGITS_CHECKPOINT, cache=False)
    xs = torch.stack([loaded.preprocess(image.convert("RGB")) for image, _ in digits_samples(4)])
    return loaded, xs


def _cases(small_models, digits):
    cases = {}
    for name, model in small_models.items():
        size = model.spec.input_size
        cases[name] = (model, torch.randn(3, size, size, generator=torch.Generator().manual_seed(7)))
    cases["digits"] = (digits[0].model, digits[1][0])
    return cases


def _hookless(*models: torch.nn.Module) -> None:
    for model in models:
        assert installed_hooks(model) == []
        for replica in POOL.idle_replicas(model):
            assert installed_hooks(replica) == []


NETWORKS = ("xception", "inception_v3", "digits")


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("method", method_names())
def test_every_method_gives_a_finite_map_of_the_input_shape_and_leaves_no_hook(network, method, small_models,
                                                                                 digits):
    model, x = _cases(small_models, digits)[network]
    state = [(p.requires_grad, p.data_ptr()) for p in model.parameters()]
    fractions: list[float] = []
    result = explain_tensor(model, x, method, progress=fractions.append, **FAST.get(method, {}))
    m = get_method(method)
    channels = 1 if method == "gradcam" else x.shape[0]
    assert result.values.shape == (channels, *x.shape[1:])
    assert result.values.dtype == np.float32
    assert np.isfinite(result.values).all()
    assert not result.is_zero
    if m.uses_layer:
        # the default layer: the last spatial map, or (these small inputs leave it 2 x 2, too coarse)
        # the finer block output that the last map's note names
        last = "exit.sep2.act" if network != "inception_v3" else "Mixed_7c.concat"
        note = resolve_layer(model, last)[1]
        assert note and "too coarse" in note
        assert result.layer == note.split("a finer one: '")[1].split("'")[0]
        assert not any("too coarse" in n for n in result.notes)
    else:
        assert result.layer is None
    with torch.no_grad():
        logits = model(x[None])
    assert result.predicted == int(logits.argmax()) == result.target  # default target: the prediction
    np.testing.assert_allclose(result.probabilities, torch.softmax(logits[0], 0).numpy(), rtol=1e-4, atol=1e-6)
    # progress: from 0 to 1, never backwards; the long methods move once per forward pass
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    if m.reports_progress:
        assert len(fractions) == m.expected_calls(result.options, x[None]) + 2
    _hookless(model)
    assert not model.training
    assert [(p.requires_grad, p.data_ptr()) for p in model.parameters()] == state


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("method", method_names())
def test_no_hook_is_left_after_a_failure(network, method, small_models, digits, monkeypatch):
    model, x = _cases(small_models, digits)[network]
    options = FAST.get(method, {})
    with pytest.raises(ExplainError, match="out of range"):
        explain_tensor(model, x, method, target=10_000, **options)
    _hookless(model)
    # a failure in the middle of Captum's work, after its hooks are on: the backward pass raises
    # (Occlusion has none: its progress callback raises after a forward pass instead)
    if method == "occlusion":
        with pytest.raises(RuntimeError, match="injected"):
            explain_tensor(model, x, method, target=1, progress=lambda f: _boom() if f > 0 else None, **options)
    else:
        with monkeypatch.context() as patch:
            patch.setattr(torch.autograd, "grad", _boom)
            with pytest.raises(RuntimeError, match="injected"):
                explain_tensor(model, x, method, target=1, **options)
    _hookless(model)
    # and the model still explains
    assert np.isfinite(explain_tensor(model, x, method, target=1, **options).values).all()
    _hookless(model)


def _in_threads(jobs):
    """Run the callables at the same moment, one thread each; their results (or the first error)."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list = []

    def run(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("method", method_names())
def test_two_threads_at_once_get_what_each_gets_alone(network, method, small_models, digits):
    model, x = _cases(small_models, digits)[network]
    options = FAST.get(method, {})
    # two sessions on one shared model: this method for two classes, and guided backprop (which hooks
    # every ReLU) at the same time; each must get exactly its single-threaded answer
    jobs = [lambda: explain_tensor(model, x, method, target=1, **options),
            lambda: explain_tensor(model, x, method, target=2, **options),
            lambda: explain_tensor(model, x, "guided-backprop", target=1)]
    alone = [job().values for job in jobs]
    together = [r.values for r in _in_threads(jobs)]
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    if alone[0].any() or alone[1].any():  # (Guided Grad-CAM is all zeros for a class with no positive evidence)
        assert not np.array_equal(alone[0], alone[1])
    _hookless(model)


def test_hooks_methods_match_plain_captum(small_models):
    """Oracle: the same Captum call on the model itself (no replica, no wrapper) gives the same maps.

    On the model as built (``fold=False``): the replica and the wrapper change nothing. The folded copy,
    the default for Saliency and IG, is held to its own tolerance in tests/test_explain_fold.py."""
    model = small_models["xception"]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours = explain_tensor(model, x, "saliency", target=3, fold=False).values
    np.testing.assert_allclose(ours, Saliency(model).attribute(x.clone(), target=3)[0].numpy(), rtol=1e-4, atol=1e-7)
    ours = explain_tensor(model, x, "ig", target=3, steps=8, internal_batch_size=3, fold=False).values
    plain = IntegratedGradients(model).attribute(x.clone(), target=3, n_steps=8, internal_batch_size=3)[0]
    np.testing.assert_allclose(ours, plain.numpy(), rtol=1e-4, atol=1e-6)
    layer = model.get_submodule("exit.sep2.act")
    ours = explain_tensor(model, x, "gradcam", target=3, layer="exit.sep2.act").values
    cam = LayerAttribution.interpolate(LayerGradCam(model, layer).attribute(x.clone(), target=3), (64, 64),
                                       interpolate_mode="bilinear")
    np.testing.assert_allclose(ours, cam[0].detach().numpy(), rtol=1e-4, atol=1e-7)
    assert installed_hooks(model) == []


@pytest.mark.parametrize("name, layer, side", [("xception", "exit.sep2.act", 10), ("inception_v3", "Mixed_7c.concat", 8)])
def test_full_size_gradcam_is_upsampled_from_the_default_layer(name, layer, side):
    """At 299 px the default layers hold 10 x 10 (Xception) and 8 x 8 (Inception) maps; the result is 299 x 299
    and constant over no more than one input cell's worth of pixels per map cell."""
    spec = load_spec(name)
    model = build_model(spec)
    x = torch.randn(3, 299, 299, generator=torch.Generator().manual_seed(0))
    result = explain_tensor(model, x, "gradcam", target=0, interpolate="nearest")
    assert result.layer == layer
    assert result.values.shape == (1, 299, 299)
    # nearest upsampling of a side x side map: exactly side distinct rows of values
    rows = {tuple(row) for row in result.values[0]}
    assert len(rows) <= side
    assert installed_hooks(model) == []


def test_caller_model_in_training_mode_is_explained_in_eval_and_left_as_it_was(small_models):
    model = _small_model("xception")
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    expected = explain_tensor(model, x, "saliency", target=0).values
    model.train()
    frozen = model.get_submodule("entry.conv1.conv").weight
    frozen.requires_grad_(False)
    got = explain_tensor(model, x, "saliency", target=0).values
    np.testing.assert_array_equal(got, expected)
    assert model.training and all(m.training for m in model.modules())
    assert not frozen.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "entry.conv1.conv.weight")
    assert all(p.grad is None for p in model.parameters())


def test_inference_mode_input_is_accepted_and_not_changed(small_models):
    model = small_models["xception"]
    with torch.inference_mode():
        x = torch.randn(3, 64, 64)
    result = explain_tensor(model, x, "ig", target=0, **FAST["ig"])
    assert np.isfinite(result.values).all()
    assert x.is_inference() and not x.requires_grad


def test_weights_changed_in_place_are_seen_by_the_next_explanation(small_models):
    """The pooled replica must follow the caller's model (it is dropped when the weights change)."""
    model = _small_model("xception")
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(4))
    before = explain_tensor(model, x, "gradcam", target=0).values
    with torch.no_grad():
        model.get_submodule("exit.fc").weight.mul_(-1)
    after = explain_tensor(model, x, "gradcam", target=0).values
    np.testing.assert_allclose(after, -before, rtol=1e-5, atol=1e-7)  # Grad-CAM is linear in the fc weights


def test_smoothgrad_is_seeded_and_ig_memory_knob_does_not_change_the_result(small_models):
    model = small_models["xception"]
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(5))
    a = explain_tensor(model, x, "smoothgrad", target=0, nt_samples=4, seed=1).values
    b = explain_tensor(model, x, "smoothgrad", target=0, nt_samples=4, seed=1).values
    c = explain_tensor(model, x, "smoothgrad", target=0, nt_samples=4, seed=2).values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    one = explain_tensor(model, x, "ig", target=0, steps=6, internal_batch_size=1).values
    all_ = explain_tensor(model, x, "ig", target=0, steps=6, internal_batch_size=6).values
    # the same sum in another order: float32 rounding only
    np.testing.assert_allclose(one, all_, rtol=1e-3, atol=1e-5 * np.abs(all_).max())


def test_ig_completeness(digits):
    """Integrated gradients add up to the score difference between the input and the baseline
    (Sundararajan et al.'s completeness axiom), up to the quadrature error."""
    loaded, xs = digits
    model = loaded.model
    x = xs[1]
    result = explain_tensor(model, x, "ig", steps=128)
    with torch.no_grad():
        gap = model(x[None])[0, result.target] - model(torch.zeros_like(x)[None])[0, result.target]
    assert result.values.sum() == pytest.approx(float(gap), rel=0.02, abs=0.02)


def test_prediction_costs_no_extra_pass_when_it_comes_free(small_models):
    """Methods whose first forward pass sees the clean input read the prediction from it; IG and SmoothGrad
    run one no-grad pass only when the prediction is the target, else report no probabilities."""
    model = small_models["xception"]
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        predicted = int(model(x[None]).argmax())
    saliency = explain_tensor(model, x, "saliency")
    assert saliency.target == saliency.predicted == predicted and saliency.forward_passes == 1
    ig = explain_tensor(model, x, "ig", **FAST["ig"])
    assert ig.target == ig.predicted == predicted and ig.forward_passes == 2 + 1
    given = explain_tensor(model, x, "ig", target=predicted, **FAST["ig"])
    assert given.probabilities is None and given.predicted is None and given.forward_passes == 2
    np.testing.assert_array_equal(given.values, ig.values)
    assert given.summary()["predicted_probability"] is None
