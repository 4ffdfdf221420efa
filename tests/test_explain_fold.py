"""The hook-free methods (Saliency, Integrated Gradients, SmoothGrad, Occlusion) run by default on the folded
inference copy of a spec network (explorer.build.fast.FastNet with ``autograd=True``); their maps must equal
plain Captum's on the model as built.

The oracle is Captum itself, called here on the model as built (SmoothGrad through the seeded NoiseTunnel,
the one documented change to Captum's). The tolerance:

* ``FOLD_RTOL`` (float64 runs): folding a batch norm into its conv is exact algebra and the in-place steps
  change no value, so all that remains is rounding: in double precision the folded map equals the as-built
  map to ``FOLD_RTOL x max |map|`` (observed: 0 to 5e-8, which is the map's cast to float32). Then the pixel
  ranking is the same up to ties narrower than ``2 x FOLD_RTOL x max |map|`` (it follows from the bound;
  checked too). Every network, knob variant and hook-free method is held to this.
* ``FOLD_RTOL_F32`` (float32, what users run): the two copies round differently (about 1e-7 of each value),
  so the maps agree to ``FOLD_RTOL_F32 x max |map|`` (observed up to 2e-5, Occlusion, which subtracts close
  logits) except where the gradient is not defined: a max-pool window whose two largest inputs are within
  rounding of each other, or a ReLU input within rounding of 0. There the copies may take different,
  equally valid one-sided gradients and the map moves locally. A single gradient rarely meets one; IG and
  SmoothGrad evaluate 16 points each and sometimes do (the shipped digits network: IG 4 of 20 digits, worst
  3e-3 of the maximum, from one max-pool window whose picks differ by 5e-7; SmoothGrad 1 of 10, 1.4e-2).
  So in float32: every map within ``FOLD_TIE_RTOL``, and most within ``FOLD_RTOL_F32``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from conftest import randomize_
from torch import nn

from explorer.build import build_model
from explorer.build.fast import KEEPS_NO_OUTPUT, FastNet, fast_copy
from explorer.build.modules import Add, GlobalAvgPool
from explorer.explain import (
    ExplainError,
    ReplicaPool,
    explain_tensor,
    get_method,
    installed_hooks,
    method_names,
    safety,
)
from explorer.explain.smoothgrad import SeededNoiseTunnel
from explorer.spec import INPUT, Kind, Layer, load_spec
from explorer.weights import get_weights

FOLD_RTOL = 1e-6          # float64: max |folded - as built| / max |as built|
FOLD_RTOL_F32 = 1e-4      # float32, away from a max-pool near-tie or a ReLU input at 0
FOLD_TIE_RTOL = 3e-2      # float32, any map: a near-tie moves a little of the gradient, never the map
F32_CLEAN_SHARE = 0.75    # float32: at least this share of the maps free of near-ties (observed 80 % to 100 %)

HOOK_FREE = ("saliency", "ig", "smoothgrad", "occlusion")
DIGITS_CHECKPOINT = get_weights("mini_xception.digits").path
ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "assets" / "samples" / "cat.jpg"
# a few forward passes each (the float64 runs on random weights)
FAST = {"ig": {"steps": 4, "internal_batch_size": 2},
        "smoothgrad": {"nt_samples": 4, "nt_samples_batch_size": 2},
        "occlusion": {"window": 8, "stride": 8}}
# the digits runs: the defaults, but Occlusion's (a 3 px patch, stride 1: 900 patches) coarser for time
F32_OPTIONS = {"occlusion": {"window": 6, "stride": 3}}
NETWORKS = {
    "xception": ("xception", {"width": 0.125, "input_size": 48}),
    "inception_v3": ("inception_v3", {"width": 0.125, "input_size": 80, "aux_logits": False}),
    "mini": ("mini_xception", {}),
    "residual=false": ("mini_xception", {"residual": False}),
    "mid_activation=elu": ("mini_xception", {"mid_activation": "elu"}),
    "mid_activation=relu": ("mini_xception", {"mid_activation": "relu"}),
    "mid_activation=none": ("mini_xception", {"mid_activation": "none"}),
    "separable=false": ("mini_xception", {"separable": False}),
}

pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
              pytest.mark.usefixtures("one_thread")]


def _network(key: str) -> nn.Module:
    name, knobs = NETWORKS[key]
    return randomize_(build_model(load_spec(name).with_overrides(**knobs)), seed=3)


@pytest.fixture(scope="module")
def digits():
    """The shipped digits network (as load_model gives it: channels_last) and eight test digits."""
    from explorer.infer import load_model
    from explorer.lab.data import digits_samples

    loaded = load_model(None, DIGITS_CHECKPOINT, cache=False)
    xs = torch.stack([loaded.preprocess(image.convert("RGB")) for image, _ in digits_samples(8)])
    return loaded.model, xs


@pytest.fixture(scope="module")
def small_xception():
    return _network("xception")


def oracle(model: nn.Module, x: torch.Tensor, method: str, target: int, options: dict) -> np.ndarray:
    """Captum on the model as built, as a Captum user calls it, with the options ``explain_tensor`` resolved."""
    x = x.detach().clone()[None]
    o = options
    if method == "saliency":
        out = Saliency(model).attribute(x, target=target, abs=o["abs"])
    elif method == "ig":
        out = IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=o["steps"],
                                                   method=o["integration"],
                                                   internal_batch_size=o["internal_batch_size"])
    elif method == "smoothgrad":
        # Captum's NoiseTunnel with the noise from our seeded generator (its only change to Captum)
        tunnel = SeededNoiseTunnel(Saliency(model), torch.Generator().manual_seed(o["seed"]))
        out = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=o["nt_samples"],
                               nt_samples_batch_size=o["nt_samples_batch_size"], stdevs=o["stdevs"],
                               target=target, abs=o["abs"])
    else:
        c, w, s = x.shape[1], o["window"], o["stride"]
        out = Occlusion(model).attribute(x, sliding_window_shapes=(c, w, w), strides=(c, s, s), baselines=0.0,
                                         target=target, perturbations_per_eval=o["perturbations_per_eval"])
    return out[0].detach().double().numpy()


def relative_gap(ours: np.ndarray, plain: np.ndarray) -> float:
    """max |ours - plain| / max |plain|."""
    return float(np.abs(ours.astype(np.float64) - plain).max() / max(np.abs(plain).max(), 1e-300))


def assert_same_ranking(ours: np.ndarray, plain: np.ndarray, tie: float) -> None:
    """Pixels ranked by ``ours``: no pixel ranked lower has a ``plain`` value above a higher one by > ``tie``."""
    order = np.argsort(-ours.ravel(), kind="stable")
    ranked = plain.ravel()[order]
    below_max = np.maximum.accumulate(ranked[::-1])[::-1]  # the largest plain value at or below each rank
    assert np.all(below_max[1:] <= ranked[:-1] + tie)


def _hookless(model: nn.Module, pool: ReplicaPool | None = None) -> None:
    assert installed_hooks(model) == []
    for replica in (pool or safety.POOL).idle_replicas(model):
        assert installed_hooks(replica) == []


# -- the maps equal plain Captum's -------------------------------------------------------------------------


@pytest.mark.parametrize("network", list(NETWORKS))
def test_folded_maps_equal_plain_captum_on_the_model_as_built_in_double(network):
    """The folding is exact: in float64 every hook-free map equals Captum's on the model as built."""
    model = _network(network).double()
    side = model.spec.input_size
    x = torch.randn(3, side, side, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for method in HOOK_FREE:
        result = explain_tensor(model, x, method, target=1, **FAST.get(method, {}))
        assert result.folded, method
        plain = oracle(model, x, method, 1, result.options)
        scale = np.abs(plain).max()
        assert scale > 0
        assert relative_gap(result.values, plain) <= FOLD_RTOL, (network, method)
        assert_same_ranking(result.values, plain, 2 * FOLD_RTOL * scale)
    _hookless(model)


def test_the_shipped_digits_network_folds_exactly_in_double(digits):
    model, xs = digits
    model = copy.deepcopy(model).double()
    for method in HOOK_FREE:
        for x in xs[:2].double():
            result = explain_tensor(model, x, method, **F32_OPTIONS.get(method, {}))
            assert result.folded
            plain = oracle(model, x, method, result.target, result.options)
            assert relative_gap(result.values, plain) <= FOLD_RTOL, method
            assert_same_ranking(result.values, plain, 2 * FOLD_RTOL * np.abs(plain).max())


@pytest.mark.parametrize("method", HOOK_FREE)
def test_float32_default_maps_of_the_digits_match_plain_captum(method, digits):
    """What users run (float32, default options, the predicted class): see the module docstring."""
    model, xs = digits
    gaps = []
    for x in xs:
        result = explain_tensor(model, x, method, **F32_OPTIONS.get(method, {}))
        assert result.folded
        plain = oracle(model, x, method, result.target, result.options)
        gaps.append(relative_gap(result.values, plain))
    gaps = np.array(gaps)
    assert gaps.max() <= FOLD_TIE_RTOL, gaps
    assert (gaps <= FOLD_RTOL_F32).mean() >= F32_CLEAN_SHARE, gaps
    if method in ("saliency", "occlusion"):  # one clean input (Occlusion: no gradient at all)
        assert gaps.max() <= FOLD_RTOL_F32, gaps


def test_fold_false_reproduces_the_as_built_path(digits):
    """``fold=False`` runs on the plain replica: Captum's map on the model as built, to the last bit here."""
    model, xs = digits
    for method in HOOK_FREE:
        result = explain_tensor(model, xs[0], method, fold=False)
        assert not result.folded and result.summary()["folded"] is False
        plain = oracle(model, xs[0], method, result.target, result.options)
        assert relative_gap(result.values, plain) <= FOLD_RTOL, method
    _hookless(model)


def test_hooking_methods_never_fold_and_the_result_says_which_ran(small_xception):
    x = torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(1))
    for method in method_names():
        result = explain_tensor(small_xception, x, method, target=0, **FAST.get(method, {}))
        assert result.folded == get_method(method).hook_free == (method in HOOK_FREE), method
        assert result.summary()["folded"] is result.folded
    assert {m for m in method_names() if get_method(m).hook_free} == set(HOOK_FREE)


def test_a_module_without_layers_is_explained_as_built():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), GlobalAvgPool(), nn.Linear(4, 3)).eval()
    pool = ReplicaPool()
    result = explain_tensor(model, torch.randn(3, 8, 8), "saliency", target=1, pool=pool)
    assert not result.folded
    assert [type(r) for r in pool.idle_replicas(model)] == [nn.Sequential]


# -- the pool: made once, reused, renewed when the weights change ------------------------------------------


def test_the_folded_replica_is_made_once_and_reused(small_xception, monkeypatch):
    made = []
    make = safety.make_folded_replica
    monkeypatch.setattr(safety, "make_folded_replica", lambda m: made.append(1) or make(m))
    pool = ReplicaPool()
    x = torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(2))
    first = explain_tensor(small_xception, x, "saliency", target=0, pool=pool)
    (replica,) = pool.idle_replicas(small_xception, folded=True)
    for method in HOOK_FREE:
        explain_tensor(small_xception, x, method, target=0, pool=pool, **FAST.get(method, {}))
    explain_tensor(small_xception, x, "gradcam", target=0, pool=pool)  # a plain replica beside it
    assert len(made) == 1
    assert pool.idle_replicas(small_xception, folded=True) == [replica]
    assert [type(r).__name__ for r in pool.idle_replicas(small_xception, folded=False)] == ["SpecNet"]
    np.testing.assert_array_equal(explain_tensor(small_xception, x, "saliency", target=0, pool=pool).values,
                                  first.values)
    # what it is: the gradient-safe FastNet, eval, frozen, in the model's memory format
    assert isinstance(replica, FastNet) and replica.autograd and not replica.training
    assert not any(p.requires_grad for p in replica.parameters())
    assert safety.prefers_channels_last(replica) == safety.prefers_channels_last(small_xception)
    with pytest.raises(RuntimeError, match="inference only"):
        replica.train()


def test_a_model_loaded_channels_last_gets_a_channels_last_folded_replica(digits):
    model, xs = digits
    pool = ReplicaPool()
    explain_tensor(model, xs[0], "saliency", pool=pool)
    (replica,) = pool.idle_replicas(model, folded=True)
    assert safety.prefers_channels_last(model) and safety.prefers_channels_last(replica)


def test_weights_changed_in_place_get_a_fresh_folded_replica():
    model = _network("mini")
    pool = ReplicaPool()
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(4))
    before = explain_tensor(model, x, "saliency", target=0, abs=False, pool=pool)
    (old,) = pool.idle_replicas(model, folded=True)
    with torch.no_grad():
        model.get_submodule("exit.fc").weight.mul_(-1)
    after = explain_tensor(model, x, "saliency", target=0, abs=False, pool=pool)
    (new,) = pool.idle_replicas(model, folded=True)
    assert new is not old and after.folded
    np.testing.assert_allclose(after.values, -before.values, rtol=1e-5, atol=1e-7)  # linear in the fc weights


# -- no hook left behind ------------------------------------------------------------------------------------


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("method", HOOK_FREE)
def test_no_hook_remains_after_success_or_failure(method, small_xception, monkeypatch):
    model = small_xception
    x = torch.randn(3, 48, 48, generator=torch.Generator().manual_seed(5))
    options = FAST.get(method, {})
    assert explain_tensor(model, x, method, target=1, **options).folded
    _hookless(model)
    with pytest.raises(ExplainError, match="out of range"):
        explain_tensor(model, x, method, target=10_000, **options)
    _hookless(model)
    if method == "occlusion":
        with pytest.raises(RuntimeError, match="injected"):
            explain_tensor(model, x, method, target=1, progress=lambda f: _boom() if f > 0 else None, **options)
    else:
        with monkeypatch.context() as patch:
            patch.setattr(torch.autograd, "grad", _boom)
            with pytest.raises(RuntimeError, match="injected"):
                explain_tensor(model, x, method, target=1, **options)
    _hookless(model)
    # a failed run's replica is dropped; the next run makes a fresh one and keeps it
    assert explain_tensor(model, x, method, target=1, **options).folded
    _hookless(model)
    assert len(safety.POOL.idle_replicas(model, folded=True)) == 1


# -- the gradient-safe copy ---------------------------------------------------------------------------------


def _saved_tensors(node) -> list[torch.Tensor]:
    """The tensors an autograd node keeps for its backward pass (its ``_saved_*`` attributes)."""
    saved = []
    for name in dir(node):
        if name.startswith("_saved_"):
            value = getattr(node, name)
            saved += [v for v in (value if isinstance(value, (tuple, list)) else (value,))
                      if isinstance(v, torch.Tensor)]
    return saved


@pytest.mark.parametrize("module", [nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                                    nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4).eval(), nn.MaxPool2d(3, 2, 1),
                                    nn.AvgPool2d(3, 1, 1), Add()], ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("channels_last", [False, True])
def test_keeps_no_output_is_true_of_its_modules(module, channels_last):
    """The fact the gradient-safe copy rests on: these modules' backward keeps no tensor sharing the output's
    storage (a ReLU does, which is why it is not among them)."""
    assert isinstance(module, KEEPS_NO_OUTPUT) and not isinstance(nn.ReLU(), KEEPS_NO_OUTPUT)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 4, 9, 9).to(memory_format=fmt).requires_grad_(True)
    module = module.to(memory_format=fmt).requires_grad_(False)
    out = module(x, x * 2) if isinstance(module, Add) else module(x * 1)
    storage = out.untyped_storage().data_ptr()
    assert all(t.untyped_storage().data_ptr() != storage for t in _saved_tensors(out.grad_fn))
    relu_out = torch.relu(x * 1)
    assert any(t.untyped_storage().data_ptr() == relu_out.untyped_storage().data_ptr()
               for t in _saved_tensors(relu_out.grad_fn))


class _AddOverReLU(nn.Module):
    """A tiny spec-like network where the inference copy's in-place add would overwrite a tensor that
    backward needs: ``a = relu(conv1(x)); b = conv2(a); add(a, b)`` (the add is ``a``'s last reader)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.act, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1)
        self.add, self.pool, self.fc = Add(), GlobalAvgPool(), nn.Linear(4, 2)
        shape = (4, 6, 6)

        def layer(name, kind, inputs, in_shape=shape, out_shape=shape):
            return Layer(name, kind, "entry", "b", inputs, in_shape, out_shape)

        self.layers = (layer("conv1", Kind.CONV, (INPUT,), (3, 6, 6)), layer("act", Kind.ACTIVATION, ("conv1",)),
                       layer("conv2", Kind.POINTWISE, ("act",)), layer("add", Kind.ADD, ("act", "conv2")),
                       layer("pool", Kind.POOL, ("add",), out_shape=(4,)),
                       layer("fc", Kind.LINEAR, ("pool",), (4,), (2,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv1(x))
        return self.fc(self.pool(self.add(a, self.conv2(a))))


def test_the_gradient_copy_overwrites_nothing_backward_needs():
    net = randomize_(_AddOverReLU(), seed=1)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    inference, gradient = FastNet(net), FastNet(net, autograd=True)
    overwrites = {name: step.inplace for name, step in zip(inference.names, inference.steps)}
    assert overwrites["add"] and overwrites["act"]  # the inference copy: both in place
    overwrites = {name: step.inplace for name, step in zip(gradient.names, gradient.steps)}
    assert not overwrites["add"] and overwrites["act"]  # the add would clobber the ReLU's saved output
    with torch.no_grad():
        np.testing.assert_allclose(inference(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="inplace operation"):
        inference(x.clone().requires_grad_(True))[:, 0].sum().backward()
    expected = Saliency(net).attribute(x.clone(), target=0, abs=False)
    got = Saliency(gradient).attribute(x.clone(), target=0, abs=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not FastNet(net, inplace=False, autograd=True).steps[1].inplace


def test_the_inference_copy_is_unchanged_and_a_packed_copy_cannot_be_differentiated(small_xception):
    # on the presets the safe rule keeps every in-place step the inference rule makes
    assert [s.inplace for s in FastNet(small_xception).steps] == \
        [s.inplace for s in FastNet(small_xception, autograd=True).steps]
    assert not FastNet(small_xception).autograd
    with pytest.raises(ValueError, match="inference only"):
        fast_copy(small_xception, pack=True, autograd=True)
    with pytest.raises(RuntimeError, match="inference only"):
        FastNet(small_xception, autograd=True).train(True)


# -- the switch in the API and the CLI ----------------------------------------------------------------------


def test_explain_image_and_the_cli_switch_to_the_model_as_built(tmp_path, capsys):
    import explorer
    from explorer.cli import main

    folded = explorer.explain_image(CAT, None, DIGITS_CHECKPOINT, "saliency")
    built = explorer.explain_image(CAT, None, DIGITS_CHECKPOINT, "saliency", fold=False)
    assert folded.folded and not built.folded
    assert relative_gap(folded.values, built.values.astype(np.float64)) <= FOLD_TIE_RTOL
    for flags, expected in (([], True), (["--as-built"], False)):
        out = tmp_path / str(expected)
        code = main(["explain", str(CAT), "--weights", str(DIGITS_CHECKPOINT), "--method", "ig", "-o", "steps=4",
                     "--out", str(out), "--quiet", *flags])
        assert code == 0
        assert json.loads((out / "cat_mini_xception_ig.json").read_text())["folded"] is expected
    capsys.readouterr()
