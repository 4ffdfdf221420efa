"""The profiler (explorer.measure): rows like the cost table, counts by hand, times that add up, no hooks left,
the fast copy's folded rows, the ceilings' cache, the CUDA event path on a stand-in clock, the command line."""

from __future__ import annotations

import importlib
import json
import time

import pytest
import torch
from torch import nn

from explorer.build import build_model
from explorer.cli import main
from explorer.cost import count_costs
from explorer.errors import UsageError
from explorer.measure import Ceilings, LayerTime, Profile, ceilings, profile
from explorer.spec import INPUT, load_spec

timing = importlib.import_module("explorer.measure.timing")
machine = importlib.import_module("explorer.measure.machine")

pytestmark = pytest.mark.usefixtures("one_thread")

FIXED = Ceilings(device="cpu", device_name="test CPU", dtype="float32", peak_flops=200e9, bandwidth=40e9,
                 measured_at="2026-01-01T00:00:00+00:00")


@pytest.fixture(scope="module")
def small():
    return load_spec("xception").with_overrides(middle_repeats=1, input_size=71)


def cpu_time_profile(spec, **kwargs) -> Profile:
    """A profile timed by the thread's CPU time (torch runs on this thread alone here, see ``one_thread``).

    On a machine that other work keeps busy, a wall-clock forward of tens of milliseconds is nearly always
    interrupted, while the median of each short layer is not: the sum of the layers' medians then falls
    well short of the forward's median. CPU time leaves the waits out of both, so what the comparison
    tests is the walk itself (the same work as the forward, nothing missed, nothing counted twice)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timing, "clock_for", lambda device: timing.WallClock(timer=time.thread_time))
        return profile(spec, ceilings=FIXED, **kwargs)


@pytest.fixture(scope="module")
def plain(small, one_thread):
    return cpu_time_profile(small, repeats=9)


@pytest.fixture(scope="module")
def fast(small, one_thread):
    return cpu_time_profile(small, repeats=9, fast=True)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty ceilings cache, and measurements short enough for a test."""
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(machine, "BUDGET_S", 0.01)
    monkeypatch.setattr(machine, "MIN_RUN_S", 0.002)
    return tmp_path


def inference_rows(spec, batch=1):
    return [c for c in count_costs(spec, batch).layers if not c.train_only]


# ---------------------------------------------------------------- rows and counts


def test_rows_are_the_cost_models_inference_layers(small, plain):
    assert [(r.name, r.kind, r.flow, r.block) for r in plain.layers] == \
        [(c.name, c.kind, c.flow, c.block) for c in inference_rows(small)]
    assert all(r.seconds > 0 and r.spread >= 0 and r.absorbed == () for r in plain.layers)
    assert sum(r.share for r in plain.layers) == pytest.approx(1.0)
    assert (plain.spec_name, plain.spec_digest, plain.batch, plain.repeats) == ("xception", small.digest(), 1, 9)


def test_inceptions_aux_head_is_left_out():
    spec = load_spec("inception_v3")
    result = profile(spec, repeats=1, warmup=0, ceilings=FIXED)
    rows = inference_rows(spec)
    assert len(rows) < len(count_costs(spec).layers)  # the aux head is there, and does not run
    assert [(r.name, r.kind) for r in result.layers] == [(c.name, c.kind) for c in rows]


def test_bytes_and_intensity_by_hand(small):
    result = profile(small, batch=2, repeats=1, warmup=0, ceilings=FIXED)
    four = 4  # bytes per float32; every activation count below is per image, the batch is 2
    dw = result.layer("entry.block1.sep1.depthwise")  # 64×33×33 in and out, 64 3×3 filters
    assert dw.bytes == four * (2 * 64 * 33 * 33 + 2 * 64 * 33 * 33 + 64 * 9)
    assert dw.flops == 2 * 2 * 64 * 33 * 33 * 9 and dw.macs == 2 * 64 * 33 * 33 * 9
    assert dw.intensity == pytest.approx(dw.flops / dw.bytes) and 2.2 < dw.intensity < 2.3
    pw = result.layer("entry.block1.sep1.pointwise")  # 64 → 128 channels at 33×33
    assert pw.bytes == four * (2 * 64 * 33 * 33 + 2 * 128 * 33 * 33 + 128 * 64)
    assert pw.flops == 2 * 2 * 128 * 33 * 33 * 64
    bn = result.layer("entry.block1.bn1")  # 128×33×33; scale and shift: 2 ops per element, 2 × 128 weights
    assert bn.bytes == four * (2 * 2 * 128 * 33 * 33 + 2 * 128) and bn.flops == 2 * 2 * 128 * 33 * 33
    assert bn.intensity == pytest.approx(0.25, rel=1e-3)
    add = result.layer("entry.block1.add")  # two 128×17×17 inputs, one output
    assert add.bytes == four * 2 * 3 * 128 * 17 * 17 and add.flops == 2 * 128 * 17 * 17
    assert add.bound(FIXED) == "memory" and pw.bound(FIXED) == "compute"  # ridge 5 FLOP/byte
    assert dw.flops_per_s == pytest.approx(dw.flops / dw.seconds)
    assert dw.bytes_per_s == pytest.approx(dw.bytes / dw.seconds)


def test_bfloat16_halves_the_bytes(small):
    half = profile(small, dtype="bf16", repeats=1, warmup=0, ceilings=FIXED)
    full = profile(small, repeats=1, warmup=0, ceilings=FIXED)
    assert half.dtype == "bfloat16"
    for a, b in zip(half.layers, full.layers):
        assert (a.name, a.flops, 2 * a.bytes) == (b.name, b.flops, b.bytes)


# ---------------------------------------------------------------- time


def test_the_layers_add_up_to_the_forward(plain, fast):
    for result in (plain, fast):
        assert 0.85 <= result.layer_seconds / result.forward_seconds <= 1.15
        assert result.instrumented_seconds > 0 and abs(result.overhead) < 0.5
        assert result.layer_seconds == pytest.approx(sum(r.seconds for r in result.layers))


def _hooks(model: nn.Module) -> int:
    return sum(len(getattr(m, name)) for m in model.modules() for name in
               ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                "_forward_hooks_with_kwargs", "_state_dict_hooks", "_load_state_dict_pre_hooks"))


def _global_hooks() -> int:
    from torch.nn.modules import module

    return sum(len(getattr(module, name)) for name in
               ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"))


def test_profiling_leaves_no_hook_and_changes_nothing(small, monkeypatch):
    built = []

    def keep(spec, **kwargs):
        built.append(build_model(spec, **kwargs))
        return built[-1]

    monkeypatch.setattr(timing, "build_model", keep)
    before = _global_hooks()
    profile(small, repeats=1, warmup=0, ceilings=FIXED)
    model, fresh = built[0], build_model(small, seed=0)
    assert _hooks(model) == 0 and _global_hooks() == before and not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert {n: type(m) for n, m in model.named_modules()} == {n: type(m) for n, m in fresh.named_modules()}


def test_the_instrumented_walk_gives_the_models_output(small):
    model = build_model(small, seed=0).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 71, 71).contiguous(memory_format=torch.channels_last)
    copy = x.clone()
    for net in (model, timing.prepare(model, torch.device("cpu"), torch.float32, fast=True)):
        with torch.no_grad():
            out = timing.timed_forward(timing.plan_of(net), x, timing.WallClock())
            assert torch.equal(out, net(x))
        assert torch.equal(x, copy)  # the in-place steps of the fast copy never touch the caller's input
    assert _hooks(model) == 0


def test_the_fast_copy_names_what_it_absorbed(small, fast):
    rows = inference_rows(small)
    counted = {c.name: c for c in rows}
    placed = [name for r in fast.layers for name in (r.name, *r.absorbed)]
    assert sorted(placed) == sorted(counted)  # every layer once: a row, or absorbed by one
    assert len(fast.layers) < len(rows)
    pw = fast.layer("entry.block1.sep1.pointwise")
    assert "entry.block1.bn1" in pw.absorbed and fast.layer("entry.block1.bn1") is pw
    members = [counted[n] for n in (pw.name, *pw.absorbed)]
    assert pw.flops == sum(2 * c.macs + c.elementwise_ops for c in members)
    assert pw.macs == sum(c.macs for c in members)
    batch_norms = [c.name for c in rows if c.kind == "batchnorm"]
    assert all(any(name in r.absorbed for r in fast.layers) for name in batch_norms)
    assert fast.fast and sum(r.flops for r in fast.layers) == sum(2 * c.macs + c.elementwise_ops for c in rows)


def test_groups_add_up_and_a_bad_level_is_refused(plain, fast):
    for result in (plain, fast):
        layers = result.by("layer")
        for level in ("block", "flow", "kind"):
            groups = result.by(level)
            for key in ("seconds", "flops", "bytes", "macs", "layers", "share", "macs_share"):
                assert sum(g[key] for g in groups) == pytest.approx(sum(r[key] for r in layers))
            assert all(g["bound"] in ("memory", "compute") for g in groups)
        assert [g["flow"] for g in result.by("flow")] == ["entry", "middle", "exit"]
    with pytest.raises(UsageError) as error:
        plain.by("module")
    assert error.value.argument == "level"


def test_the_plain_data_round_trips(plain):
    data = json.loads(json.dumps(plain.to_dict()))
    assert data["layers"][0]["name"] == plain.layers[0].name and data["ceilings"]["ridge"] == FIXED.ridge
    again = Profile.from_dict(data)
    assert again == plain and isinstance(again.layers[0], LayerTime)


def test_progress_reaches_one_and_may_cancel(small):
    seen = []
    profile(small, repeats=2, warmup=1, ceilings=FIXED, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0

    def stop(fraction):
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        profile(small, repeats=2, ceilings=FIXED, progress=stop)


def test_bad_arguments_are_refused_before_anything_is_built(small, monkeypatch):
    monkeypatch.setattr(timing, "build_model", lambda *a, **k: pytest.fail("built"))
    for kwargs, argument in (({"batch": 10**7}, "batch"), ({"batch": 0}, "batch"), ({"dtype": "int8"}, "dtype"),
                             ({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup")):
        with pytest.raises(UsageError) as error:
            profile(small, ceilings=FIXED, **kwargs)
        assert error.value.argument == argument and "\n" not in str(error.value)
    assert "GiB" in str(pytest.raises(UsageError, profile, small, batch=10**7, ceilings=FIXED).value)


# ---------------------------------------------------------------- the GPU's clock, on a stand-in


class FakeGPU:
    """A device whose clock moves only when a 'kernel' runs."""

    now_ms = 0.0
    synchronized = 0
    events = 0


class FakeEvent:
    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        FakeGPU.events += 1
        self.at: float | None = None

    def record(self) -> None:
        self.at = FakeGPU.now_ms

    def elapsed_time(self, other: FakeEvent) -> float:
        return other.at - self.at


def fake_sync() -> None:
    FakeGPU.synchronized += 1


class Kernel(nn.Module):
    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FakeGPU.now_ms += self.ms
        return x + 1


class Chain(nn.Module):
    def __init__(self, kernels: list[Kernel]) -> None:
        super().__init__()
        self.kernels = nn.ModuleList(kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for kernel in self.kernels:
            x = kernel(x)
        return x


def test_the_event_clock_reads_the_devices_time_with_one_sync_per_forward():
    FakeGPU.now_ms, FakeGPU.synchronized, FakeGPU.events = 0.0, 0, 0
    kernels = [Kernel(1.0), Kernel(2.5), Kernel(0.5)]
    plan = timing.Plan(steps=((kernels[0], "a", (INPUT,)), (kernels[1], "b", ("a",)), (kernels[2], "c", ("b",))),
                       frees=((INPUT,), ("a",), ("b",)), output="c")
    clock = timing.EventClock(event=FakeEvent, synchronize=fake_sync)
    out = timing.timed_forward(plan, torch.zeros(2), clock)
    assert torch.equal(out, torch.full((2,), 3.0))
    assert clock.intervals() == pytest.approx([0.001, 0.0025, 0.0005]) and FakeGPU.synchronized == 1
    runs = timing.measure_runs(Chain(kernels), plan, torch.zeros(2), clock, warmup=1, repeats=3)
    assert runs.plain == pytest.approx([0.004] * 3) and runs.instrumented == pytest.approx([0.004] * 3)
    assert runs.steps == [pytest.approx([s] * 3) for s in (0.001, 0.0025, 0.0005)]
    assert FakeGPU.synchronized == 1 + 2 * 4  # once per forward, plain or instrumented: never per layer
    assert FakeGPU.events == 4  # one per mark of the longest forward, reused from forward to forward


class CPUTimeEvent(FakeEvent):
    """Events that read this thread's CPU time: the event path end to end on the CPU."""

    def record(self) -> None:
        self.at = time.thread_time() * 1000


def test_a_profile_through_the_event_path(small, monkeypatch):
    FakeGPU.synchronized = 0
    monkeypatch.setattr(timing, "clock_for", lambda device: timing.EventClock(CPUTimeEvent, fake_sync))
    result = profile(small, repeats=3, warmup=1, ceilings=FIXED)
    assert FakeGPU.synchronized == 2 * 4
    assert [r.name for r in result.layers] == [c.name for c in inference_rows(small)]
    assert all(r.seconds >= 0 for r in result.layers) and 0.5 < result.layer_seconds / result.forward_seconds < 2


# ---------------------------------------------------------------- ceilings


def test_ceilings_are_measured_once_then_read_from_the_cache(cache, monkeypatch):
    first = ceilings("cpu")
    assert (cache / machine.CACHE_FILE).exists()
    assert first.device == "cpu" and first.dtype == "float32" and first.peak_flops > 1e8 and first.bandwidth > 1e8
    assert first.ridge == pytest.approx(first.peak_flops / first.bandwidth)
    assert first.datasheet_flops is None and "threads" in first.device_name
    real = machine.measure
    monkeypatch.setattr(machine, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert ceilings("cpu") == first and ceilings("auto" if not torch.cuda.is_available() else "cpu") == first
    monkeypatch.setattr(machine, "measure", real)
    time.sleep(0.002)
    again = ceilings("cpu", remeasure=True)
    assert again.measured_at != first.measured_at and ceilings("cpu").measured_at == again.measured_at
    other = ceilings("cpu", "bf16")  # another dtype: its own entry
    assert other.dtype == "bfloat16" and ceilings("cpu", "float32") == again
    assert Ceilings.from_dict(json.loads(json.dumps(other.to_dict()))) == other


def test_the_datasheet_is_shown_beside_the_measurement_never_instead(cache, monkeypatch):
    monkeypatch.setattr(machine, "device_label", lambda device: "NVIDIA H200")
    measured = ceilings("cpu")
    assert measured.datasheet_flops == 67e12 and measured.datasheet_bandwidth == 4.8e12
    assert "H200" in measured.datasheet_source
    assert measured.peak_flops < 1e13 and measured.bandwidth < 1e12  # this CPU's own numbers
    assert measured.ridge == pytest.approx(measured.peak_flops / measured.bandwidth)
    assert machine.datasheet("NVIDIA H100 PCIe", "bfloat16")[0] == 756e12
    assert machine.datasheet("Tesla T4", "bfloat16")[0] is None and machine.datasheet("AMD EPYC", "float32")[0] is None


def test_a_cache_that_cannot_be_read_is_measured_again(cache):
    (cache / machine.CACHE_FILE).write_text("{not json")
    assert ceilings("cpu").peak_flops > 0
    assert json.loads((cache / machine.CACHE_FILE).read_text())


# ---------------------------------------------------------------- the command line


@pytest.fixture()
def cached_cpu(tmp_path, monkeypatch):
    """A ceilings cache that already holds this CPU, so the commands measure nothing."""
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path))
    cpu = torch.device("cpu")
    entry = Ceilings.from_dict({**FIXED.to_dict(), "device_name": machine.device_label(cpu)})
    machine._write_cache(entry)
    return entry


SMALL = ["--set", "middle_repeats=1", "--set", "input_size=71", "--repeats", "2", "--warmup", "0", "--quiet",
         "--device", "cpu"]


def test_the_profile_command_prints_units(cached_cpu, capsys):
    assert main(["profile", "xception", *SMALL]) == 0
    out = capsys.readouterr().out
    for label in ("time (ms)", "p10–p90 (ms)", "time (%)", "MACs (%)", "FLOPs (M)", "bytes (MiB)", "FLOP/byte",
                  "GFLOP/s", "GB/s", "entry.block1.sep1.depthwise", "peak compute, measured (GFLOP/s)",
                  "ridge (FLOP/byte)", "overhead"):
        assert label in out
    assert main(["profile", "xception", *SMALL, "--by", "kind", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "depthwise" in out and "layers" in out and "fast copy" in out
    assert main(["profile", "xception", *SMALL, "--csv", "--by", "block"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("block,flow,layers,seconds")


def test_the_commands_print_json(cached_cpu, capsys):
    assert main(["profile", "xception", *SMALL, "--json", "--by", "flow"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec_name"] == "xception" and data["layers"][0]["name"] == "entry.conv1.conv"
    assert [g["flow"] for g in data["groups"]] == ["entry", "middle", "exit"]
    assert main(["ceilings", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_flops"] == FIXED.peak_flops
    assert main(["ceilings", "--device", "cpu"]) == 0
    assert "memory bandwidth, measured (GB/s)" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["profile", "nope.yaml"], "neither a preset"),
    (["profile", "xception", "--device", "tpu"], "unknown device"),
    (["profile", "xception", "--dtype", "float64"], "--dtype: unknown dtype"),
    (["profile", "xception", "--by", "module"], "--by: unknown level"),
    (["profile", "xception", "--repeats", "none"], "--repeats"),
    (["profile", "xception", "--batch", "0"], "--batch"),
    (["ceilings", "--dtype", "int8"], "--dtype: unknown dtype"),
] + ([] if torch.cuda.is_available() else [(["profile", "xception", "--device", "cuda"], "not available here"),
                                           (["ceilings", "--device", "cuda"], "not available here")]))
def test_errors_are_one_line_and_exit_2(args, needle, cached_cpu, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
