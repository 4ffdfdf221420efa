"""The cost model against oracles: the built model under FlopCounterMode, the modules'
own parameters, the tensors a real forward keeps alive, and the seed's formula."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import weakref
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from explorer.build import build_model
from explorer.cli import main
from explorer.cost import count_costs, diff_specs, segment_choices, separable_groups, what_if
from explorer.errors import UsageError
from explorer.spec import SpecError, load_spec, spec_layers

# -- oracles --------------------------------------------------------------------------------------


def counted_macs(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, int], int]:
    """MACs per module path (FlopCounterMode's FLOPs / 2) and the total, from a real forward.

    FlopCounterMode names a module by its path below the root, prefixed with the
    root's class name (``SpecNet.entry.block2.sep1.depthwise``); the containers
    above a leaf get its FLOPs too, and "Global" holds the total.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    prefix = type(model).__name__ + "."
    per_module = {}
    for name, ops in counter.get_flop_counts().items():
        flops = sum(ops.values())
        assert flops % 2 == 0
        if name.startswith(prefix):
            per_module[name[len(prefix):]] = flops // 2
    total = counter.get_total_flops()
    assert total % 2 == 0
    return per_module, total // 2


def assert_costs_match_model(spec, batch: int = 1, training: bool = False) -> None:
    """Every layer's MACs and parameters equal the built model's, module by module."""
    report = count_costs(spec, batch)
    model = build_model(spec)
    model.train(training)
    macs, total = counted_macs(model, torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size))
    ran = [c for c in report.layers if training or not c.train_only]
    names = {c.name for c in ran}
    for c in ran:
        assert macs.get(c.name, 0) == c.macs, c.name
    for name in macs:  # nothing counted outside the leaves: only their containers repeat them
        assert name in names or any(n.startswith(name + ".") for n in names), name
    assert sum(c.macs for c in ran) == total
    if not training:
        assert report.totals["macs"] == total and report.totals["flops"] == 2 * total
    for c in report.layers:
        assert sum(p.numel() for p in model.get_submodule(c.name).parameters()) == c.params, c.name
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensors alive at once during a forward.

    Method: every tensor an ATen op produces is tracked through its storage;
    a ``weakref.finalize`` on each tensor object decrements the storage's
    count, and the storage's bytes leave the live total when its last tracked
    tensor dies (views share a storage and are counted once). The peak is read
    after every op, so an op's output counts while its inputs are still alive.
    Parameters and buffers are allocated before the forward and are not
    activations: their storages are ignored. The input is tracked from the
    start, since the caller holds it for the whole call.
    """

    def __init__(self, ignore: set[int]) -> None:
        super().__init__()
        self.ignore = ignore
        self.storages: dict[int, list[int]] = {}  # data_ptr -> [bytes, live tensors]
        self.live = self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if key in self.ignore or nbytes == 0:
            return
        if key not in self.storages:
            self.storages[key] = [nbytes, 0]
            self.live += nbytes
        self.storages[key][1] += 1
        weakref.finalize(t, self._release, key)
        self.peak = max(self.peak, self.live)

    def _release(self, key: int) -> None:
        entry = self.storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self.storages[key]
            self.live -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def measured_peak_bytes(spec, batch: int = 1) -> int:
    model = build_model(spec)
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    mode = LiveTensorBytes(own)
    x = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size)
    mode.track(x)
    with torch.no_grad(), mode:
        model(x)
    return mode.peak


# -- exactness against the built model --------------------------------------------------------------


@pytest.mark.parametrize("name, gmacs, params", [("xception", 8.357, 22_855_952), ("inception_v3", 5.713, 27_161_264)])
def test_presets_at_299_equal_the_built_model(name, gmacs, params):
    spec = load_spec(name)
    assert_costs_match_model(spec)
    totals = count_costs(spec).totals
    assert round(totals["macs"] / 1e9, 3) == gmacs  # REFERENCE.md
    assert totals["params"] == params


def test_totals_equal_the_reference_implementations(timm_xception, tv_inception):
    x = torch.randn(1, 3, 299, 299)
    for model, name in ((timm_xception, "xception"), (tv_inception, "inception_v3")):
        _, total = counted_macs(model, x)
        totals = count_costs(load_spec(name)).totals
        assert totals["macs"] == total
        assert totals["params"] == sum(p.numel() for p in model.parameters())


def test_the_auxiliary_head_rows_equal_a_training_forward():
    spec = load_spec("inception_v3").with_overrides(width=0.125, num_classes=10)
    assert_costs_match_model(spec, batch=2, training=True)
    report = count_costs(spec)
    aux = [c for c in report.layers if c.train_only]
    assert aux and report.totals["macs"] == sum(c.macs for c in report.layers if not c.train_only)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    residual=st.booleans(),
    separable=st.booleans(),
    mid=st.sampled_from(["none", "relu", "elu"]),
    repeats=st.integers(0, 3),
    width=st.sampled_from([0.125, 0.25]),
    segments=st.sampled_from(["depthwise", 1, 2, 4]),
    size=st.integers(32, 96),
    classes=st.integers(1, 20),
    batch=st.integers(1, 2),
)
def test_random_xception_knobs_equal_the_built_model(residual, separable, mid, repeats, width, segments, size,
                                                    classes, batch):
    try:
        spec = load_spec("xception").with_overrides(
            residual=residual, separable=separable, mid_activation=mid, middle_repeats=repeats, width=width,
            segments=segments, input_size=size, num_classes=classes)
    except SpecError as exc:
        assert "segments" in exc.path
        return
    assert_costs_match_model(spec, batch)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.sampled_from([0.125, 0.25]), size=st.integers(75, 140), classes=st.integers(1, 20),
       batch=st.integers(1, 2))
def test_random_inception_knobs_equal_the_built_model(width, size, classes, batch):
    spec = load_spec("inception_v3").with_overrides(width=width, input_size=size, num_classes=classes,
                                                     aux_logits=False)
    assert_costs_match_model(spec, batch)


# -- peak memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, knobs, batch", [
    ("xception", {}, 1),
    ("inception_v3", {}, 1),
    ("xception", {"residual": False, "mid_activation": "relu", "width": 0.5, "input_size": 160}, 2),
    ("xception", {"separable": False, "width": 0.5, "input_size": 96}, 1),
])
def test_peak_activation_memory_within_10_percent_of_a_real_forward(name, knobs, batch):
    spec = load_spec(name).with_overrides(**knobs) if knobs else load_spec(name)
    estimate = count_costs(spec, batch).peak_activation_bytes
    measured = measured_peak_bytes(spec, batch)
    assert abs(estimate - measured) <= 0.10 * measured, (estimate, measured)


# -- the seed's comparison ---------------------------------------------------------------------------


def regular_conv_macs(m: int, n: int, k: int, stride: int, padding: int, size: int) -> int:
    """MACs of a regular conv, counted by FlopCounterMode on the meta device (nothing computed)."""
    conv = torch.nn.Conv2d(m, n, k, stride, padding, bias=False, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        conv(torch.empty(1, m, size, size, device="meta"))
    return counter.get_total_flops() // 2


def test_separable_against_regular_conv_is_one_over_n_plus_one_over_dk_squared():
    spec = load_spec("xception")
    result = what_if(spec)
    model = build_model(spec)
    macs, _ = counted_macs(model, torch.randn(1, 3, 299, 299))
    layers = spec_layers(spec)
    assert len(result.separables) == len(separable_groups(layers)) == 34
    saved = 0
    for s in result.separables:
        depthwise = model.get_submodule(f"{s.name}.depthwise")
        pointwise = model.get_submodule(f"{s.name}.pointwise")
        m, n, k = depthwise.in_channels, pointwise.out_channels, depthwise.kernel_size[0]
        size = next(layer.in_shape[1] for layer in layers if layer.name == f"{s.name}.depthwise")
        regular = regular_conv_macs(m, n, k, depthwise.stride[0], depthwise.padding[0], size)
        separable = macs[f"{s.name}.depthwise"] + macs[f"{s.name}.pointwise"]
        assert (s.macs, s.regular_macs) == (separable, regular)
        assert Fraction(separable, regular) == Fraction(1, n) + Fraction(1, k * k)
        assert s.formula_ratio == Fraction(1, n) + Fraction(1, k * k)
        assert s.regular_params == m * n * k * k
        assert s.params == sum(p.numel() for p in [*depthwise.parameters(), *pointwise.parameters()])
        saved += regular - separable
    assert result.regular_totals["macs"] == result.totals["macs"] + saved
    assert result.regular_totals["macs"] > 8 * result.totals["macs"]


def test_segments_spectrum_spans_every_valid_value_and_equals_the_built_models():
    spec = load_spec("xception").with_overrides(width=0.25, input_size=48, middle_repeats=1)
    choices = segment_choices(spec_layers(spec))
    widest = max(layer.config["in_channels"] for layer in spec_layers(spec) if layer.kind == "depthwise")
    valid = []
    for g in range(1, widest + 1):  # the spec's own validation is the oracle of what is valid
        try:
            spec.with_overrides(segments=g)
            valid.append(g)
        except SpecError:
            pass
    assert choices == valid + ["depthwise"]
    result = what_if(spec)
    assert [p.segments for p in result.spectrum] == choices
    assert [p.current for p in result.spectrum] == [False] * len(valid) + [True]
    for point in result.spectrum:
        variant = spec.with_overrides(segments=point.segments)
        model = build_model(variant)
        _, total = counted_macs(model, torch.randn(1, 3, 48, 48))
        assert (point.macs, point.params) == (total, sum(p.numel() for p in model.parameters()))
    macs = [p.macs for p in result.spectrum]
    assert macs == sorted(macs, reverse=True)  # more groups, fewer MACs


def test_no_separable_convs_no_comparison():
    result = what_if(load_spec("inception_v3"))
    assert not result.separables and not result.spectrum
    assert result.regular_totals == result.totals


# -- diff -------------------------------------------------------------------------------------------


def leaf_outputs(model: torch.nn.Module, x: torch.Tensor, suffix: str) -> list[torch.Tensor]:
    outs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, args, out: outs.append(out))
               for n, m in model.named_modules() if n.endswith(suffix)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outs


def test_diff_residual_false_removes_the_projections():
    a = load_spec("xception").with_overrides(input_size=96)
    b = a.with_overrides(residual=False)
    diff = diff_specs(a, b)
    model_a, model_b = build_model(a), build_model(b)
    names_a = {n for n, _ in model_a.named_modules()}
    names_b = {n for n, _ in model_b.named_modules()}
    removed = {d.name for d in diff.of("removed")}
    assert removed == {n for n in names_a - names_b if n in {layer.name for layer in model_a.layers}}
    assert {n for n in removed if n.endswith(".skip.conv")} == {f"entry.block{i}.skip.conv" for i in (1, 2, 3)} | {
        "exit.block1.skip.conv"}
    assert not diff.of("added") and not diff.of("changed")
    x = torch.randn(1, 3, 96, 96)
    _, macs_a = counted_macs(model_a, x)
    _, macs_b = counted_macs(model_b, x)
    assert diff.totals["macs"] == macs_b - macs_a < 0
    assert diff.totals["params"] == sum(p.numel() for p in model_b.parameters()) - sum(
        p.numel() for p in model_a.parameters()) < 0
    assert sum(d.delta("macs") for d in diff.layers) == diff.totals["macs"]


def test_diff_mid_activation_costs_no_macs_but_element_wise_ops_and_memory():
    a = load_spec("xception").with_overrides(input_size=96)
    b = a.with_overrides(mid_activation="relu")
    diff = diff_specs(a, b)
    model_b = build_model(b)
    outs = leaf_outputs(model_b, torch.randn(1, 3, 96, 96), ".mid_act")
    assert len(outs) == len(diff.of("added")) == 34 and not diff.of("removed") and not diff.of("changed")
    assert all(d.name.endswith(".mid_act") and d.row.kind == "activation" for d in diff.of("added"))
    assert diff.totals["macs"] == diff.totals["params"] == 0
    assert diff.totals["elementwise_ops"] == sum(o.numel() for o in outs) > 0  # one op per ReLU output
    assert diff.totals["activation_bytes"] == sum(o.numel() * o.element_size() for o in outs) > 0


def test_diff_changed_layers_name_what_changed():
    a = load_spec("xception")
    diff = diff_specs(a, a.with_overrides(segments=8))
    changed = diff.of("changed")
    assert {d.name for d in changed} == {l.name for l in spec_layers(a) if l.name.endswith(".depthwise")}
    assert all("config.groups" in d.changes and d.delta("macs") > 0 for d in changed)
    assert not diff_specs(a, a).layers


# -- command line -----------------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_costs_json_schema(capsys):
    code, out, _ = run_cli(capsys, "costs", "xception", "--json", "--batch", "2")
    data = json.loads(out)
    assert code == 0
    assert set(data["totals"]) >= {"params", "macs", "flops", "elementwise_ops", "activation_bytes",
                                   "peak_activation_bytes"}
    layer_names = [layer.name for layer in spec_layers(load_spec("xception"))]
    assert [row["name"] for row in data["layers"]] == layer_names
    for row in data["layers"]:
        assert {"name", "kind", "flow", "block", "out_shape", "params", "macs"} <= set(row)
        assert isinstance(row["out_shape"], list)
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"] == 2 * sum(r["macs"] for r in data["layers"])
    assert data["totals"]["macs"] == 2 * count_costs(load_spec("xception")).totals["macs"]


@pytest.mark.parametrize("level", ["layer", "block", "flow", "kind"])
def test_costs_csv_and_table_by_level(capsys, level):
    code, out, _ = run_cli(capsys, "costs", "inception_v3", "--by", level, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    report = count_costs(load_spec("inception_v3"))
    assert code == 0 and rows
    key = "name" if level == "layer" else level
    assert [r[key] for r in rows] == [r[key] for r in report.by(level)]
    inference = [r for r in rows if r.get("train_only") != "True"]
    assert sum(int(r["macs"]) for r in inference) == report.totals["macs"]
    code, out, _ = run_cli(capsys, "costs", "inception_v3", "--by", level)
    assert code == 0 and "MACs (M)" in out and f"per {level}" in out.splitlines()[0]
    assert f"{report.totals['macs']:,}" in out and "5.713 GMACs" in out


def test_costs_set_overrides(capsys):
    code, out, _ = run_cli(capsys, "costs", "xception", "--set", "residual=false", "--json")
    assert json.loads(out)["totals"] == count_costs(load_spec("xception").with_overrides(residual=False)).totals


def test_diff_and_whatif_commands(capsys):
    code, out, _ = run_cli(capsys, "diff", "xception", "--set", "residual=false", "--json")
    data = json.loads(out)
    assert code == 0 and data["counts"] == {"added": 0, "removed": 20, "changed": 0}
    assert data["totals_delta"]["macs"] == data["totals_b"]["macs"] - data["totals_a"]["macs"] < 0
    code, out, _ = run_cli(capsys, "diff", "xception", "--set", "mid_activation=relu")
    assert code == 0 and "34 added" in out and "+  entry.block1.sep1.mid_act" in out
    code, out, _ = run_cli(capsys, "diff", "xception", "inception_v3")
    assert code == 0 and "removed" in out
    code, out, _ = run_cli(capsys, "whatif", "xception", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["separables"]) == 34
    assert [p["segments"] for p in data["segments"]] == [1, 2, 4, 8, "depthwise"]
    code, out, _ = run_cli(capsys, "whatif", "xception")
    assert code == 0 and "1/D_K²" in out


@pytest.mark.parametrize("args, needle", [
    (["costs", "xception", "--batch", "0"], "--batch"),
    (["costs", "xception", "--batch", "two"], "--batch"),
    (["costs", "xception", "--by", "module"], "unknown level 'module'"),
    (["costs", "xception", "--dtype", "int3"], "--dtype"),
    (["costs", "xception", "--set", "segments=5"], "not divisible by 5 segments"),
    (["costs", "xception", "--set", "depth=3"], "unknown knob"),
    (["costs", "no_such_spec"], "neither a preset"),
    (["diff", "xception", "--set", "aux_logits=false"], "does not apply"),
    (["diff", "xception", "--batch", "-1"], "--batch"),
    (["whatif", "xception", "--set", "width=0"], "width"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, needle):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and not out
    assert needle in err and len(err.strip().splitlines()) == 1


def test_errors_reach_the_shell_as_one_line():
    result = subprocess.run([sys.executable, "-m", "explorer", "costs", "xception", "--by", "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


HEAVY = {"torch", "torchvision", "pandas", "streamlit"}


def heavy_imports(code: str) -> list[str]:
    """Top-level heavy packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = code + f"\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r})))\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_spec_and_cost_import_no_torch():
    assert heavy_imports("import explorer, explorer.spec, explorer.cost, explorer.cost.cli, explorer.cost.tables\n"
                         "from explorer.spec import load_spec\n"
                         "explorer.count_costs(load_spec('xception'))") == []


def test_the_costs_command_imports_no_torch():
    """Every subcommand module is imported to build the parser, so one that imports torch at
    import time makes `costs` (and every command) pay torch's start-up."""
    assert heavy_imports("import contextlib, io\nfrom explorer.cli import main\n"
                         "with contextlib.redirect_stdout(io.StringIO()):\n"
                         "    assert main(['costs', 'xception', '--json']) == 0") == []


def test_an_unknown_layer_is_a_usage_error_with_the_close_names():
    report = count_costs(load_spec("xception"))
    with pytest.raises(UsageError, match=r"name: no layer named 'entry.block1.sep1.depthwis' \(close: "
                                         r"'entry.block1.sep1.depthwise'"):
        report.layer("entry.block1.sep1.depthwis")
