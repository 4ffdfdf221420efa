"""Budgets checked from the spec before anything is allocated, and one-line errors for hostile specs and inputs.

The bombs (a huge ``repeat``, a huge ``input_size``, a YAML alias bomb, the same inside a checkpoint's
metadata) run in a subprocess that reports its peak memory: the refusal must come before the memory
is taken. The estimates are checked against what the built network really holds.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import weakref
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from reference import tiny_spec_data

from explorer.build import SpecNet, build_model
from explorer.build.modules import Container
from explorer.errors import ExplorerError, SpecError, UsageError
from explorer.resources import BudgetError, limit
from explorer.spec import load_spec, parse_spec, spec_layers
from explorer.spec.budget import check_budget, gradient_activation_bytes, peak_activation_bytes
from explorer.spec.io import MAX_YAML_NODES
from explorer.spec.schema import RESERVED_NAMES, SpecBudgetError
from explorer.weights.io import save_checkpoint
from explorer.weights.preprocess import Preprocess

ROOT = Path(__file__).resolve().parents[1]
MiB, GiB = 2**20, 2**30
RESERVED_EXAMPLES = ["forward", "__class__", "training", "_modules", "spec", "layers", "eval", "state_dict", "cuda"]


def spec_yaml(**changes) -> str:
    """The tiny spec as YAML, with its size fields or the separable block's fields (its name too) changed."""
    data = tiny_spec_data()
    for key, value in changes.items():
        if key in ("input_size", "num_classes", "in_channels"):
            data[key] = value
        else:
            data["blocks"][1][key] = value
    return yaml.safe_dump(data, sort_keys=False)


REPEAT_BOMB = spec_yaml(repeat=1_000_000_000)
INPUT_BOMB = spec_yaml(input_size=1_000_000)


def alias_bomb() -> str:
    """A billion laughs for the schema: 100 blocks of 100 branches, each a split into 100 paths of 100
    convs, every level an alias: 10^8 conv steps once expanded (what validation would walk and build),
    from a text of 2 KB."""
    def refs(anchor: str) -> str:
        return "[" + ", ".join([f"*{anchor}"] * 100) + "]"

    return (f"name: laughs\nconv: &c {{op: conv, name: c, out: 1}}\npath: &p {refs('c')}\n"
            f"split: &s [{{op: split, paths: {refs('p')}}}]\nbranches: &h {refs('s')}\n"
            f"block: &b {{name: mix, type: inception, flow: entry, branches: *h}}\nblocks: {refs('b')}\n")


# Runs a command (``-m module ...`` or ``-c code ...``) and writes its peak resident memory to argv[1]:
# VmHWM counts this process's memory since exec, not what a parent that forked it held
# (getrusage's ru_maxrss does count that: a child of a big pytest process would read as big).
PEAK = textwrap.dedent("""
    import atexit, runpy, sys

    def report(path=sys.argv[1]):
        with open("/proc/self/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        with open(path, "w") as out:
            out.write(str(kb * 1024))

    atexit.register(report)
    how, what, *rest = sys.argv[2:]
    if how == "-m":
        sys.argv = [what, *rest]
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *rest]
        exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
""")


def _cap_memory(limit_bytes: int):
    def cap() -> None:  # in the child: a bomb that got through fails there, not on the machine
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return cap


def run_measured(args: list[str], env: dict[str, str] | None = None,
                 address_space: int | None = None) -> tuple[int, str, str, int]:
    """Run ``python -m ...`` or ``python -c ...`` (``args`` without the interpreter): its exit code, stdout,
    stderr and peak resident memory in bytes. ``address_space`` caps its memory (for commands that never
    import torch)."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        proc = subprocess.run([sys.executable, "-c", PEAK, peak.name, *args], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300,
                              preexec_fn=_cap_memory(address_space) if address_space else None)
        written = Path(peak.name).read_text()
    return proc.returncode, proc.stdout, proc.stderr, int(written or 0)


def cli(*args: str, env: dict[str, str] | None = None, address_space: int | None = None
        ) -> tuple[int, str, str, int]:
    return run_measured(["-m", "explorer", *args], env, address_space)


def fill(args: list[str], files: dict[str, Path]) -> list[str]:
    """``{name}`` in ``args`` replaced by the path of that file."""
    return [str(files[a[1:-1]]) if a.startswith("{") else a for a in args]


def assert_one_error_line(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def torch_baseline() -> int:
    """Peak memory of a process that only imports what classify imports (torch included)."""
    code, _, err, peak = run_measured(["-c", "import explorer.infer.classify, explorer.weights"])
    assert code == 0, err
    return peak


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The bombs as files: specs, checkpoints with tiny tensors whose metadata is hostile, and an image."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("bombs")
    paths = {"repeat.yaml": REPEAT_BOMB, "input.yaml": INPUT_BOMB, "laughs.yaml": alias_bomb()}
    out = {}
    for name, text in paths.items():
        out[name] = root / name
        out[name].write_text(text)
    for name, meta in (("repeat.safetensors", {"spec": REPEAT_BOMB}), ("input.safetensors", {"spec": INPUT_BOMB})):
        out[name] = root / name
        save_file({"w": torch.zeros(1)}, str(out[name]), metadata={"format": "xception-explorer/1", **meta})
    out["resize.safetensors"] = root / "resize.safetensors"  # weights that fit; a resize of 10^9 px
    spec = parse_spec(spec_yaml())
    save_checkpoint(out["resize.safetensors"], build_model(spec), spec,
                    metadata={"preprocess": json.dumps({"resize": 10**9, "crop": 32})})
    out["image"] = root / "cat.png"
    Image.new("RGB", (48, 40), (180, 90, 30)).save(out["image"])
    return out


# -- the bombs: refused before the memory is taken ----------------------------------------------------


def test_a_repeat_bomb_is_refused_while_validating_in_microseconds_of_memory():
    with pytest.raises(SpecBudgetError) as error:
        parse_spec(REPEAT_BOMB)
    text = str(error.value)
    assert text.startswith("blocks[1] (sep).repeat: ") and "max_layers = 5,000 layers" in text
    assert "EXPLORER_MAX_LAYERS" in text and error.value.limit == "max_layers"
    assert isinstance(error.value, SpecError) and isinstance(error.value, BudgetError)


@pytest.mark.parametrize("args, needle", [
    (["costs", "{repeat.yaml}"], "blocks[1] (sep).repeat: 1,000,000,000 copies"),
    (["costs", "{input.yaml}"], "input_size: the input would need 1,000,000 px, over the limit max_input_size"),
    (["costs", "{laughs.yaml}"], f"more than {MAX_YAML_NODES:,} values with its aliases expanded"),
])
def test_spec_bombs_on_the_command_line_are_one_line_and_take_no_memory(files, args, needle):
    code, _, err, peak = cli(*fill(args, files), address_space=2 * GiB)
    assert_one_error_line(code, err, needle)
    assert peak < 256 * MiB  # costs never imports torch: the refusal costs what Python costs


@pytest.mark.parametrize("args, needle", [
    (["classify", "{image}", "--model", "xception", "--set", "input_size=4096", "--weights", "random"],
     "input_size: the input would need 4,096 px, over the limit max_input_size = 2,048 px"),
    (["classify", "{image}", "--weights", "{repeat.safetensors}"], "repeat: 1,000,000,000 copies would need"),
    (["classify", "{image}", "--weights", "{input.safetensors}"], "input_size: the input would need 1,000,000 px"),
    (["classify", "{image}", "--weights", "{resize.safetensors}"], "resize: 1,000,000,000 px is over twice the limit"),
])
def test_bombs_when_classifying_are_one_line_and_take_no_memory(files, torch_baseline, args, needle):
    code, _, err, peak = cli(*fill(args, files))
    assert_one_error_line(code, err, needle)
    assert peak < torch_baseline + 200 * MiB, (peak / MiB, torch_baseline / MiB)


LOAD = textwrap.dedent("""
    import json, sys
    from explorer.errors import ExplorerError
    from explorer.weights import load_model
    try:
        load_model(None, sys.argv[1])
        error = None
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc), "explorer": isinstance(exc, ExplorerError)}
    print(json.dumps(error))
""")


@pytest.mark.parametrize("name, needle", [("repeat.safetensors", "max_layers"),
                                          ("input.safetensors", "max_input_size")])
def test_a_checkpoint_whose_spec_is_a_bomb_is_refused_by_load_model(files, torch_baseline, name, needle):
    code, out, err, peak = run_measured(["-c", LOAD, str(files[name])])
    assert code == 0, err
    error = json.loads(out.strip().splitlines()[-1])
    assert error and error["explorer"] and needle in error["message"] and "\n" not in error["message"]
    assert peak < torch_baseline + 200 * MiB


PARSE = textwrap.dedent("""
    import sys
    from explorer.spec import parse_spec
    try:
        parse_spec(open(sys.argv[1]).read())
    except Exception as exc:
        print(type(exc).__name__, exc)
""")


def test_the_alias_bomb_is_refused_by_its_node_count_not_walked(files):
    """The document is 2 KB but 10^8 conv steps expanded; it is refused on the composed graph (the child
    is capped at 1 GiB: the old code, which walked them, fails there)."""
    assert files["laughs.yaml"].stat().st_size < 4096
    code, out, err, peak = run_measured(["-c", PARSE, str(files["laughs.yaml"])], address_space=GiB)
    assert code == 0 and out.startswith("SpecError line ") and "YAML too large: more than" in out, (out, err)
    assert peak < 256 * MiB
    fine = spec_yaml().replace("out: 8", "out: &width 8").replace("out: 16", "out: *width")  # a few aliases
    assert parse_spec(fine).blocks[1].out == 8


# -- the medium items: one line each ----------------------------------------------------------------


NESTED = "name: x\ndescription: " + "[" * 50_000 + "]" * 50_000 + "\nblocks: []\n"
DIGITS = spec_yaml().replace("num_classes: 4", "num_classes: " + "9" * 5000)
SELF = "name: x\nblocks: &b [*b]\n"


@pytest.mark.parametrize("text, needle", [
    (NESTED, "YAML nested more than 32 levels deep"),
    (DIGITS, "number too large (5,000 digits)"),
    (SELF, "alias refers to the node that holds it"),
    (spec_yaml(out=2**40), "less than or equal to 2147483647"),
    (spec_yaml(num_classes=10**9), "num_classes: Input should be less than or equal to 1048576"),
])
def test_hostile_yaml_is_one_spec_error(text, needle):
    with pytest.raises(SpecError) as error:
        parse_spec(text)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_hostile_yaml_on_the_command_line_is_one_line(tmp_path):
    for text, needle in ((NESTED, "nested more than 32 levels"), (DIGITS, "number too large")):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        code, _, err, _ = cli("costs", str(path))
        assert_one_error_line(code, err, needle)
    code, _, err, _ = cli("show", "xception", "--set", "num_classes=" + "9" * 5000)
    assert_one_error_line(code, err, "num_classes: bad value: number too large")


def test_a_checkpoint_whose_spec_nests_deeply_is_one_weights_or_spec_error(tmp_path):
    from safetensors.torch import save_file

    from explorer.weights import load_model

    path = tmp_path / "deep.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": "xception-explorer/1", "spec": NESTED})
    with pytest.raises(ExplorerError, match="nested more than 32 levels deep"):
        load_model(None, path)


@pytest.mark.parametrize("name", RESERVED_EXAMPLES)
def test_a_block_named_like_a_module_attribute_is_refused_with_its_path(name):
    with pytest.raises(SpecError) as error:
        parse_spec(spec_yaml(name=f"middle.{name}"))
    assert str(error.value).startswith(f"blocks[1] (middle.{name}).name: '{name}'")
    step = load_spec("inception_v3").model_dump(mode="json")
    step["blocks"][8]["branches"][0][0]["name"] = name
    with pytest.raises(SpecError, match=rf"^blocks\[8\] \(Mixed_5b\)\.branches\[0\]\[0\]\.name: '{name}'"):
        parse_spec(step)


def test_a_reserved_block_name_on_the_command_line_is_one_line(tmp_path, files):
    path = tmp_path / "forward.yaml"
    path.write_text(spec_yaml(name="forward"))
    code, _, err, _ = cli("classify", str(files["image"]), "--model", str(path), "--weights", "random")
    assert_one_error_line(code, err, "blocks[1] (forward).name: 'forward' is an attribute of the built modules")


def test_the_reserved_names_are_every_attribute_of_the_built_modules():
    """The oracle: what a built SpecNet and a container of its tree answer to, besides their children."""
    net = build_model(load_spec("mini_xception"))
    container = next(m for m in net.modules() if isinstance(m, Container))
    taken: set[str] = set()
    for module in (net, container, Container()):
        taken |= (set(dir(module)) - set(module._modules)) | set(vars(module))
    names = {n for n in taken if n.isidentifier()}
    assert names, "nothing read"
    missing = sorted(n for n in names if n not in RESERVED_NAMES and not n.startswith("_"))
    assert not missing, f"attributes a block could still take: {missing}"
    assert {"forward", "training", "spec", "layers", "state_dict", "cuda", "eval"} <= RESERVED_NAMES
    # a repeated block's copies (name1..nameN) too: 'bfloat' repeated 16 times would make 'bfloat16'
    numbered = sorted(n for n in RESERVED_NAMES if n[-1].isdigit())
    assert numbered == sorted(n for n in names if n[-1].isdigit() and not n.startswith("_"))
    for name in numbered:
        stem = name.rstrip("0123456789")
        number = int(name[len(stem):])
        with pytest.raises(SpecError, match=rf"^blocks\[1\] \({stem}\): repeat: copy '{name}'"):
            parse_spec(spec_yaml(name=stem, repeat=number))
        assert parse_spec(spec_yaml(name=stem, repeat=number - 1)).blocks[1].repeat == number - 1
    for name in RESERVED_NAMES:  # each one refused, and a name that is none of them builds
        with pytest.raises(SpecError):
            parse_spec(spec_yaml(name=name))
    assert isinstance(build_model(parse_spec(spec_yaml(name="weight"))), SpecNet)


@pytest.mark.parametrize("command", ["classify", "explain", "score"])
def test_a_seed_out_of_range_is_one_line(files, command):
    code, _, err, _ = cli(command, str(files["image"]), "--model", "mini_xception", "--weights", "random",
                          "--seed", str(10**23))
    assert_one_error_line(code, err, "argument --seed: must be a whole number from 0 to 4,294,967,295")


def test_smoothgrads_own_seed_option_reaches_it_on_the_command_line(files, tmp_path):
    """``-o seed=N`` is SmoothGrad's noise seed, beside ``--seed`` (the random weights'): once a TypeError."""
    maps = []
    for seed in ("1", "1", "2"):
        out = tmp_path / seed
        code, _, err, _ = cli("explain", str(files["image"]), "--model", "mini_xception", "--weights", "random",
                              "--method", "smoothgrad", "-o", f"seed={seed}", "--seed", "3", "--quiet", "--out",
                              str(out))
        assert code == 0, err
        maps.append(next(out.glob("*.npy")).read_bytes())
    assert maps[0] == maps[1] != maps[2]


@pytest.mark.parametrize("data, error, needle", [
    ({"resize": 10**9, "crop": 299}, BudgetError, "resize: 1,000,000,000 px is over twice the limit max_input_size"),
    ({"resize": 333, "crop": 4096}, BudgetError, "crop: the crop would need 4,096 px"),
    ({"resize": "big", "crop": 299}, UsageError, "resize: must be a whole number"),
    ({"resize": 333}, UsageError, "preprocess: cannot read the settings"),
    ('{"resize": ' + "9" * 5000 + "}", UsageError, "preprocess: cannot read the settings"),
    ("[" * 100_000, UsageError, "preprocess:"),
    ({"resize": 333, "crop": 299, "channels": 10**9}, UsageError, "channels: must be 1 (gray) or 3 (RGB)"),
    ({"resize": 333, "crop": 299, "std": [0, 1, 1]}, UsageError, "std not zero"),
    ([1, 2], UsageError, "expected a mapping"),
])
def test_junk_preprocess_metadata_is_one_line(data, error, needle):
    with pytest.raises(error) as raised:
        Preprocess.from_dict(data)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_a_resize_is_refused_before_pillow_allocates_it():
    pre = Preprocess(333, 299)
    with pytest.raises(UsageError, match="too elongated"):
        pre.crop_image(Image.new("RGB", (100_000, 2)))  # 333 x 16.6 M pixels once resized
    assert pre.crop_image(Image.new("RGB", (640, 480))).size == (299, 299)
    assert pre.resized_size((640, 480)) == (444, 333)


# -- the estimates against the built network ---------------------------------------------------------


SMALL = [("mini_xception", {}), ("xception", {"width": 0.25, "input_size": 96})]


def live_peak(model: SpecNet, x: torch.Tensor) -> int:
    """The most bytes of layer outputs (and the input) alive at once in a real forward, tracked per tensor."""
    state = {"live": 0, "peak": 0}

    def track(t: torch.Tensor) -> None:
        state["live"] += t.nbytes
        state["peak"] = max(state["peak"], state["live"])
        weakref.finalize(t, lambda n=t.nbytes: state.__setitem__("live", state["live"] - n))

    names = {layer.name for layer in model.layers}
    hooks = [m.register_forward_hook(lambda m, a, out: track(out)) for n, m in model.named_modules() if n in names]
    track(x)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return state["peak"]


def saved_for_backward(model: SpecNet, x: torch.Tensor) -> int:
    """Bytes autograd saves for the backward in a real forward and backward (each storage once, the
    weights and buffers left out), measured with ``saved_tensors_hooks``."""
    own = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in own:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = x.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out[:, 0].sum().backward()
    assert x.grad is not None
    return sum(saved.values())


@pytest.mark.parametrize("name, knobs", SMALL)
def test_the_inference_peak_is_what_a_real_forward_holds(name, knobs):
    spec = load_spec(name).with_overrides(**knobs) if knobs else load_spec(name)
    model = build_model(spec)
    x = torch.randn(3, spec.in_channels, spec.input_size, spec.input_size)
    measured = live_peak(model, x)
    assert measured <= peak_activation_bytes(model.layers, batch=3) < 3 * measured


@pytest.mark.parametrize("name, knobs", SMALL)
def test_the_gradient_estimate_bounds_what_autograd_saves(name, knobs):
    spec = load_spec(name).with_overrides(**knobs) if knobs else load_spec(name)
    model = build_model(spec)
    x = torch.randn(2, spec.in_channels, spec.input_size, spec.input_size)
    measured = saved_for_backward(model, x)
    assert measured <= gradient_activation_bytes(model.layers, batch=2) < 3 * measured


# -- the limits, from the environment and the config file ---------------------------------------------


def test_the_layer_limit_comes_from_the_environment_and_stops_unrolling(monkeypatch):
    layers = len(spec_layers(load_spec("xception")))
    monkeypatch.setenv("EXPLORER_MAX_LAYERS", str(layers - 1))
    with pytest.raises(SpecBudgetError) as error:
        load_spec("xception")
    assert error.value.limit == "max_layers" and str(error.value).startswith("blocks[")
    assert f"max_layers = {layers - 1:,} layers" in str(error.value)
    monkeypatch.setenv("EXPLORER_MAX_LAYERS", str(layers))
    assert len(spec_layers(load_spec("xception"))) == layers
    monkeypatch.setenv("EXPLORER_MAX_LAYERS", "3")  # the copies are counted before any is unrolled
    with pytest.raises(SpecBudgetError, match=r"^spec: the blocks with their repeats \(4 copies\)"):
        parse_spec(spec_yaml())


def test_the_input_size_limit_comes_from_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "limits.toml"
    config.write_text("[limits]\nmax_input_size = 64\n")
    monkeypatch.setenv("EXPLORER_CONFIG", str(config))
    with pytest.raises(SpecBudgetError, match=rf"input_size: .* max_input_size = 64 px .*{config}"):
        parse_spec(spec_yaml(input_size=65))
    assert parse_spec(spec_yaml(input_size=64)).input_size == 64
    with pytest.raises(SpecBudgetError, match="max_input_size = 64 px"):
        load_spec("mini_xception").with_overrides(input_size=128)
    with pytest.raises(BudgetError, match="crop: the crop would need 299 px"):
        Preprocess(342, 299)


# -- activations: checked where a run allocates, with the batch it uses --------------------------------


@pytest.fixture
def tiny_activations(monkeypatch):
    """mini_xception with max_activation_bytes just above one image's gradient pass."""
    spec = load_spec("mini_xception")
    one = gradient_activation_bytes(spec_layers(spec), batch=1)
    monkeypatch.setenv("EXPLORER_MAX_ACTIVATION_BYTES", str(int(one * 1.5)))
    return spec


def test_explanations_are_held_to_their_internal_batch(tiny_activations, files):
    from explorer.explain.api import explain_image
    from explorer.weights import load_model

    loaded = load_model(tiny_activations, "random", cache=False)
    assert explain_image(files["image"], loaded, method="saliency").values.shape[-1] == 32
    with pytest.raises(BudgetError) as error:
        explain_image(files["image"], loaded, method="ig", internal_batch_size=8)
    assert "Integrated Gradients on 'mini_xception' at 8 images per pass, with gradients" in str(error.value)
    assert "or lower the path points per pass (internal_batch_size)" in str(error.value)
    assert explain_image(files["image"], loaded, method="ig", steps=4, internal_batch_size=1).values is not None
    with pytest.raises(BudgetError, match=r"or lower the noisy copies per pass \(nt_samples_batch_size\)"):
        explain_image(files["image"], loaded, method="smoothgrad")
    with pytest.raises(BudgetError, match=r"Occlusion on 'mini_xception' at 900 images per pass would need .* "
                                          r"or lower the patches per pass \(perturbations_per_eval\)"):
        # a 3 px patch (a tenth of 32) at stride 1: 30 x 30 positions, all in one pass
        explain_image(files["image"], loaded, method="occlusion", perturbations_per_eval=4096)


def test_classify_score_and_profile_are_held_to_their_batch(tiny_activations, files):
    from explorer.explain.scorecard import score
    from explorer.infer import classify
    from explorer.measure.timing import profile
    from explorer.weights import load_model

    loaded = load_model(tiny_activations, "random", cache=False)
    images = [files["image"]] * 40
    with pytest.raises(BudgetError, match=r"classifying with 'mini_xception' \(fp32\) at batch 32 .*or lower the batch "
                                          r"size \(batch_size\)"):
        classify(images, loaded)
    assert len(classify(images, loaded, batch_size=4).results) == 40
    with pytest.raises(BudgetError, match=r"the scorecard's forward passes .* or lower the images per forward pass"):
        score([files["image"]], loaded, methods=["saliency"], metrics=["sparseness"])
    with pytest.raises(BudgetError, match=r"profiling 'mini_xception' at batch 64 .*or lower the batch"):
        profile(tiny_activations, batch=64, device="cpu", repeats=1, warmup=0)


def test_the_default_presets_fit_the_default_limits():
    """Xception and Inception V3 at 299 px with the default options: classify at batch 32, the scorecard's
    forward passes at 32, every explanation method (IG at 4 path points per pass) with gradients."""
    from torch import nn

    from explorer.explain import get_method, method_names
    from explorer.explain.core import check_explain_budget

    assert int(limit("max_activation_bytes")) == 4 * GiB
    for name in ("xception", "inception_v3"):
        spec = load_spec(name)
        check_budget(spec, batch=32)
        check_budget(spec, batch=4, gradients=True)
        stand_in = nn.Module()  # what the check reads of a built network: its spec and layers
        stand_in.spec, stand_in.layers = spec, tuple(spec_layers(spec))
        x = torch.zeros(1, 3, spec.input_size, spec.input_size)
        for method in method_names():
            m = get_method(method)
            check_explain_budget(stand_in, m, m.resolve({}, x), x)


def test_mini_xception_builds_classifies_and_explains_with_the_defaults(files):
    from explorer.explain import method_names
    from explorer.explain.api import explain_image
    from explorer.infer import classify
    from explorer.weights import load_model

    loaded = load_model("mini_xception", "random")
    assert classify([files["image"]], loaded).results[0].ok
    for method in method_names():
        assert explain_image(files["image"], loaded, method=method).values.size
