"""Measured time per layer of a spec network: :func:`profile` and the :class:`Profile` it returns.

The network is built with seeded random weights (the time of a layer does not
depend on its weights' values), put on the device in the dtype, channels_last
as the classifier runs it, and run two ways, taking turns after a warm-up:

* the **plain** forward, the network called as anyone calls it;
* the **instrumented** forward: the same walk over the layers as the network's
  own forward (same order, same tensors freed after their last reader), with a
  clock mark after every layer. On the CPU a mark is ``time.perf_counter()``;
  on a GPU it is a recorded CUDA event, and the events are read after one
  synchronization at the end of the forward (a synchronization per layer would
  change what is measured). Nothing is hooked and nothing is changed on the model.

A layer's time is the median over the repeats of the time between its marks;
its spread is the 10th to 90th percentile of those. The plain forward's median
is reported beside the sum of the layers' medians, and the instrumented
forward's median gives the cost of the marks (``overhead``).

FLOPs and bytes come from the cost model, not from the run: FLOPs = 2·MACs +
element-wise ops; bytes = every input read + the output written + the weights,
at the dtype (an eval-mode dropout passes its input on and moves none). With
``fast=True`` the inference copy (:mod:`explorer.build.fast`: batch norms
folded into their convs, on the CPU in fp32 ReLUs fused into their convs) is
profiled; a row names the layers it absorbed, and its counts include theirs.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from explorer.build import build_model
from explorer.build.fast import FastNet, fast_copy
from explorer.cost import CostReport, count_costs
from explorer.errors import UsageError, unknown
from explorer.format import mib
from explorer.infer.device import resolve_device
from explorer.measure.machine import Ceilings, cached, check_dtype, device_id, dtype_name, free_bytes
from explorer.measure.machine import ceilings as measure_ceilings
from explorer.spec import INPUT, Layer, Spec, kind_info
from explorer.spec.budget import check_budget
from explorer.weights.load import resolve_model_spec

ProgressFn = Callable[[float], None]
LEVELS: tuple[str, ...] = ("layer", "block", "flow", "kind")
# Of the free memory, the share a profile may plan to use (the rest: the allocator's slack, other work).
ROOM = 0.8


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class LayerTime:
    """One row of a profile: a layer (module path, as in the cost table), its measured time and its counts.

    ``seconds`` is the median over the repeats for one forward of the whole batch; ``spread`` the seconds
    between the 10th and the 90th percentile of those repeats; ``share`` its part of the sum of the layer
    times. ``flops`` (2·MACs + element-wise ops) and ``bytes`` (inputs read + output written + weights, at
    the dtype) are counted for the whole batch. ``absorbed``: in a fast profile, the layers folded or fused
    into this one (their counts and time are in this row).
    """

    name: str
    kind: str
    flow: str
    block: str
    seconds: float
    spread: float
    share: float
    flops: int
    bytes: int
    absorbed: tuple[str, ...] = ()
    macs: int = 0

    @property
    def intensity(self) -> float:
        """FLOP per byte (arithmetic intensity)."""
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def flops_per_s(self) -> float:
        """FLOP/s achieved."""
        return self.flops / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        """Bytes/s achieved."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def bound(self, ceilings: Ceilings) -> str:
        """``"memory"`` when the layer's intensity is below the ridge of ``ceilings``, else ``"compute"``."""
        return ceilings.bound(self.intensity)


@dataclass(frozen=True)
class Profile:
    """Measured times of a spec network's inference layers, in execution order, with the machine's ceilings."""

    spec_name: str
    spec_digest: str
    device: str
    dtype: str
    batch: int
    repeats: int
    fast: bool
    layers: tuple[LayerTime, ...]
    forward_seconds: float          # the plain forward's median
    instrumented_seconds: float     # the instrumented forward's median
    ceilings: Ceilings

    @property
    def layer_seconds(self) -> float:
        """The sum of the layers' medians."""
        return sum(layer.seconds for layer in self.layers)

    @property
    def overhead(self) -> float:
        """What the clock marks cost, as a fraction of the plain forward (instrumented / plain − 1)."""
        return self.instrumented_seconds / self.forward_seconds - 1 if self.forward_seconds > 0 else 0.0

    def layer(self, name: str) -> LayerTime:
        """The row of the layer with module path ``name`` (or of the row that absorbed it); a
        :class:`UsageError` with close names if none."""
        for row in self.layers:
            if row.name == name or name in row.absorbed:
                return row
        raise unknown("name", "layer", name, [n for row in self.layers for n in (row.name, *row.absorbed)])

    def by(self, level: str) -> list[dict]:
        """Rows per ``layer``, ``block``, ``flow`` or ``kind``, in first-seen order: ``seconds``, ``share``,
        ``flops``, ``bytes``, ``macs``, ``macs_share``, ``layers`` (rows), the achieved rates and intensity,
        and ``bound`` against the profile's ceilings. A fast profile's folded row counts under its own block,
        flow and kind."""
        if level not in LEVELS:
            raise UsageError("level", f"unknown level '{level}' (choose from {', '.join(LEVELS)})")
        total_macs = sum(row.macs for row in self.layers) or 1
        if level == "layer":
            return [_layer_row(row, self.ceilings, total_macs) for row in self.layers]
        total = self.layer_seconds or 1.0
        groups: dict[str, dict] = {}
        for row in self.layers:
            key = getattr(row, level)
            group = groups.setdefault(key, {level: key, **({"flow": row.flow} if level == "block" else {}),
                                            "layers": 0, "seconds": 0.0, "flops": 0, "bytes": 0, "macs": 0})
            group["layers"] += 1
            group["seconds"] += row.seconds
            for name in ("flops", "bytes", "macs"):
                group[name] += getattr(row, name)
        for group in groups.values():
            group["share"] = group["seconds"] / total
            group["macs_share"] = group["macs"] / total_macs
            _rates(group, self.ceilings)
        return list(groups.values())

    def to_dict(self) -> dict:
        """Plain data for JSON: the fields, the derived totals and every layer row (see :meth:`by`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("layers", "ceilings")}
        data.update(layer_seconds=self.layer_seconds, overhead=self.overhead, ceilings=self.ceilings.to_dict(),
                    layers=self.by("layer"))
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Profile:
        """The profile :meth:`to_dict` wrote."""
        names = {f.name for f in fields(LayerTime)}
        layers = tuple(LayerTime(**{**{k: v for k, v in row.items() if k in names},
                                    "absorbed": tuple(row.get("absorbed", ()))}) for row in data["layers"])
        own = {f.name for f in fields(cls)} - {"layers", "ceilings"}
        return cls(**{k: data[k] for k in own}, layers=layers, ceilings=Ceilings.from_dict(data["ceilings"]))


def _rates(row: dict, ceilings: Ceilings) -> dict:
    row["intensity"] = row["flops"] / row["bytes"] if row["bytes"] else 0.0
    row["flops_per_s"] = row["flops"] / row["seconds"] if row["seconds"] > 0 else 0.0
    row["bytes_per_s"] = row["bytes"] / row["seconds"] if row["seconds"] > 0 else 0.0
    row["bound"] = ceilings.bound(row["intensity"])
    return row


def _layer_row(row: LayerTime, ceilings: Ceilings, total_macs: int) -> dict:
    data = asdict(row)
    data.update(absorbed=list(row.absorbed), layers=1, macs_share=row.macs / total_macs)
    return _rates(data, ceilings)


# ---------------------------------------------------------------- the walk and its clocks


@dataclass(frozen=True)
class Plan:
    """A network's forward as the steps it walks: ``(callable, name, inputs)``, the tensors freed after
    each step, the name of the output, and the steps that only pass their input on (a ReLU fused into
    its conv in the fast copy)."""

    steps: tuple[tuple[Callable[..., torch.Tensor], str, tuple[str, ...]], ...]
    frees: tuple[tuple[str, ...], ...]
    output: str
    passes: frozenset[str] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name, _ in self.steps)


def plan_of(net: nn.Module) -> Plan:
    """The eval-mode walk of a spec network or of its :class:`~explorer.build.fast.FastNet`, as its own
    forward does it (read from the network, which is left as it is)."""
    if isinstance(net, FastNet):
        passes = frozenset(name for step, name in zip(net.steps, net.names) if isinstance(step.module, nn.Identity))
        return Plan(tuple((step, name, tuple(step.inputs)) for step, name in zip(net.steps, net.names)),
                    tuple(net.frees), net.output, passes)
    keep = {net._output, net._aux_output}
    steps, frees = [], []
    for (module, name, inputs, train_only), free in zip(net._run, net._frees[False]):
        if train_only:
            continue
        steps.append((module, name, tuple(inputs)))
        frees.append(tuple(n for n in free if n not in keep))
    return Plan(tuple(steps), tuple(frees), net._output)


class Clock(Protocol):
    """Marks times during a forward: :meth:`start` forgets the last marks, :meth:`intervals` gives the
    seconds between consecutive marks (waiting for the device once, if it must)."""

    def start(self) -> None: ...

    def mark(self) -> None: ...

    def intervals(self) -> list[float]: ...


class WallClock:
    """The host's clock (``time.perf_counter``): right for the CPU, where every op has finished when it
    returns. ``synchronize`` (called at every mark) serves a device without events (Apple's MPS);
    ``timer`` may be another clock (``time.thread_time``: the thread's CPU time, blind to the waits of a
    busy machine, when torch computes on the calling thread alone)."""

    def __init__(self, synchronize: Callable[[], None] | None = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self._marks: list[float] = []
        self._sync = synchronize
        self._timer = timer

    def start(self) -> None:
        self._marks = []

    def mark(self) -> None:
        if self._sync is not None:
            self._sync()
        self._marks.append(self._timer())

    def intervals(self) -> list[float]:
        marks = self._marks
        return [b - a for a, b in zip(marks, marks[1:])]


class EventClock:
    """A GPU's own clock: each mark records an event on the current stream; :meth:`intervals` synchronizes
    once and reads the events. ``event`` makes an event (called with ``enable_timing=True``, as
    ``torch.cuda.Event``), ``synchronize`` waits for the device; both may be stand-ins in tests."""

    def __init__(self, event: Callable[..., object] | None = None,
                 synchronize: Callable[[], None] | None = None) -> None:
        self._event = event if event is not None else torch.cuda.Event
        self._sync = synchronize if synchronize is not None else torch.cuda.synchronize
        self._events: list = []  # reused from forward to forward (read before they are recorded again)
        self._used = 0

    def start(self) -> None:
        self._used = 0

    def mark(self) -> None:
        if self._used == len(self._events):
            self._events.append(self._event(enable_timing=True))
        self._events[self._used].record()
        self._used += 1

    def intervals(self) -> list[float]:
        self._sync()
        events = self._events[:self._used]
        return [a.elapsed_time(b) / 1000 for a, b in zip(events, events[1:])]  # elapsed_time is in ms


def clock_for(device: torch.device) -> Clock:
    """Events on CUDA, the host's clock elsewhere (synchronized at every mark on MPS)."""
    if device.type == "cuda":
        return EventClock()
    if device.type == "mps":
        return WallClock(torch.mps.synchronize)
    return WallClock()


def timed_forward(plan: Plan, x: torch.Tensor, clock: Clock) -> torch.Tensor:
    """Run ``plan`` on ``x`` with a clock mark before the first step and after every step; returns the
    output (the same tensor values as the network's own forward)."""
    env: dict[str, torch.Tensor] = {INPUT: x}
    del x
    mark = clock.mark
    clock.start()
    mark()
    for (module, name, inputs), free in zip(plan.steps, plan.frees):
        env[name] = module(*[env[i] for i in inputs])
        for dead in free:
            env.pop(dead, None)
        mark()
    return env[plan.output]


@dataclass
class Runs:
    """Seconds per repeat: the plain forward, the instrumented forward, and each step (steps × repeats)."""

    plain: list[float] = field(default_factory=list)
    instrumented: list[float] = field(default_factory=list)
    steps: list[list[float]] = field(default_factory=list)


def measure_runs(net: nn.Module, plan: Plan, x: torch.Tensor, clock: Clock, *, warmup: int, repeats: int,
                 progress: ProgressFn | None = None) -> Runs:
    """Time ``net(x)`` and :func:`timed_forward` taking turns (which goes first alternates), ``warmup``
    untimed rounds then ``repeats`` timed ones, under ``no_grad``.
    ``progress(fraction)`` after every round; it may raise to stop."""
    runs = Runs(steps=[[] for _ in plan.steps])

    def plain(keep: bool) -> None:
        clock.start()
        clock.mark()
        net(x)
        clock.mark()
        seconds = clock.intervals()
        if keep:
            runs.plain.append(seconds[0])

    def instrumented(keep: bool) -> None:
        timed_forward(plan, x, clock)
        seconds = clock.intervals()
        if keep:
            runs.instrumented.append(sum(seconds))
            for samples, step in zip(runs.steps, seconds):
                samples.append(step)

    rounds = warmup + repeats
    gc.collect()  # not paused: the app profiles on a worker thread, and the collector is the process's
    with torch.no_grad():
        for i in range(rounds):
            for run in ((plain, instrumented) if i % 2 == 0 else (instrumented, plain)):
                run(i >= warmup)
            if progress is not None:
                progress((i + 1) / rounds)
    return runs


# ---------------------------------------------------------------- counts and rows


def layer_counts(layers: Sequence[Layer], report: CostReport, nbytes: int) -> dict[str, tuple[int, int, int]]:
    """(FLOPs, bytes, MACs) of every inference layer at the report's batch; ``nbytes`` per element.

    FLOPs = 2·MACs + element-wise ops; bytes = every input read + the output written + the weights
    (an eval-mode identity, dropout, moves nothing).
    """
    sizes = {layer.name: math.prod(layer.out_shape) for layer in layers}
    sizes[INPUT] = next((math.prod(layer.in_shape) for layer in layers if INPUT in layer.inputs), 0)
    costs = {row.name: row for row in report.layers}
    counts = {}
    for layer in layers:
        if layer.train_only:
            continue
        cost = costs[layer.name]
        moved = 0
        if not kind_info(layer.kind).eval_identity:
            moved = report.batch * nbytes * (sum(sizes[i] for i in layer.inputs) + sizes[layer.name])
            moved += cost.weight_bytes
        counts[layer.name] = (2 * cost.macs + cost.elementwise_ops, moved, cost.macs)
    return counts


def _spread(samples: list[float]) -> float:
    if len(samples) < 2:
        return 0.0
    cuts = statistics.quantiles(samples, n=10, method="inclusive")
    return cuts[-1] - cuts[0]


def _rows(layers: Sequence[Layer], counts: Mapping[str, tuple[int, int, int]], plan: Plan,
          runs: Runs) -> tuple[LayerTime, ...]:
    """One row per step that does its own work, in execution order; a layer that is no step (folded,
    left out) or a step that only passes its input on belongs to the row that made its input."""
    running = [layer for layer in layers if not layer.train_only]
    by_name = {layer.name: layer for layer in running}
    rows = [name for name in plan.names if name not in plan.passes]
    owner = {name: name for name in rows}
    for layer in running:
        if layer.name not in owner:
            source = layer.inputs[0]
            if source not in owner:
                raise RuntimeError(f"profile: cannot place layer '{layer.name}' (its input '{source}' has no row)")
            owner[layer.name] = owner[source]
    repeats = len(runs.plain)
    samples = {name: [0.0] * repeats for name in rows}
    for name, per_repeat in zip(plan.names, runs.steps):
        row = samples[owner[name]]
        for r, seconds in enumerate(per_repeat):
            row[r] += seconds
    medians = {name: statistics.median(s) if s else 0.0 for name, s in samples.items()}
    total = sum(medians.values()) or 1.0
    out = []
    for name in rows:
        members = [layer.name for layer in running if owner[layer.name] == name]
        flops, moved, macs = (sum(counts[m][k] for m in members) for k in range(3))
        layer = by_name[name]
        out.append(LayerTime(name=name, kind=str(layer.kind), flow=layer.flow, block=layer.block,
                             seconds=medians[name], spread=_spread(samples[name]), share=medians[name] / total,
                             flops=flops, bytes=moved, absorbed=tuple(m for m in members if m != name), macs=macs))
    return tuple(out)


# ---------------------------------------------------------------- the profile


def _count(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(name, f"must be a whole number of at least {least}, got {value!r}")
    return value


def check_room(report: CostReport, device: torch.device, nbytes: int, fast: bool) -> None:
    """Refuse a profile whose tensors would not fit on ``device``: the peak of the activations alive at once
    (from the cost model) plus the weights (built in fp32 on the CPU, converted, copied for ``fast``)."""
    free = free_bytes(device)
    if free is None:
        return
    weights32 = report.totals["params"] * 4
    weights = weights32 * (3 if fast else 2) if device.type == "cpu" else report.totals["params"] * nbytes
    need = report.totals["peak_activation_bytes"] + weights
    if need > ROOM * free:
        raise UsageError("batch", f"batch {report.batch} would need about {mib(need)} on {device.type} "
                                  f"({mib(report.totals['peak_activation_bytes'])} of activations at the peak, "
                                  f"{mib(weights)} of weights) but only {mib(free)} is free: use a smaller batch")


def prepare(model: nn.Module, device: torch.device, dtype: torch.dtype, fast: bool) -> nn.Module:
    """The network to time, as the classifier runs it: on ``device`` in ``dtype``, channels_last; with
    ``fast`` the inference copy (weights prepacked and ReLUs fused on the CPU in fp32)."""
    if fast and device.type == "cpu" and dtype == torch.float32:
        return fast_copy(model, pack=True)
    net = fast_copy(model) if fast else model
    return net.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)


def _phase(progress: ProgressFn | None, low: float, high: float) -> ProgressFn | None:
    """``progress`` for one phase of the work: its 0..1 mapped onto ``low``..``high``."""
    if progress is None:
        return None
    return lambda fraction: progress(low + (high - low) * fraction)


def profile(spec: Spec | str, *, batch: int = 1, device: str = "auto", dtype: str = "float32", warmup: int = 2,
            repeats: int = 10, fast: bool = False, knobs: Mapping | None = None,
            progress: ProgressFn | None = None, ceilings: Ceilings | None = None) -> Profile:
    """Measure the time of every inference layer of ``spec`` (a Spec, a preset name or a YAML path, with
    ``knobs`` applied) for one forward of ``batch`` seeded random images on ``device`` in ``dtype``.

    ``warmup`` untimed rounds, then ``repeats`` rounds, each one plain and one instrumented forward (see
    the module doc); ``fast`` profiles the inference copy. ``ceilings`` default to the cached (or newly
    measured) ones of the device. ``progress(fraction)`` may raise to cancel. A bad argument is a
    :class:`UsageError`, a device or dtype this machine cannot run a :class:`DeviceError`; a batch over
    the limits (a :class:`~explorer.resources.BudgetError`) or that would not fit in memory is refused
    before anything is built.
    """
    resolved = resolve_model_spec(spec, knobs)
    if resolved is None:
        raise UsageError("spec", "name a network: a Spec, a preset or a YAML file")
    warmup, repeats = _count(warmup, "warmup", 0), _count(repeats, "repeats", 1)
    target = resolve_device(device)
    name = dtype_name(dtype)
    torch_dtype = check_dtype(name, target)
    report = count_costs(resolved, batch, name)
    nbytes = torch.empty((), dtype=torch_dtype).element_size()
    check_room(report, target, nbytes, fast)
    # and the limits: layers, weights, the activations of one forward at this batch
    check_budget(resolved, batch=report.batch, dtype_bytes=nbytes, what=f"profiling '{resolved.name}'",
                 lower="the batch" if report.batch > 1 else None)
    start = 0.0
    if ceilings is None:
        ceilings = cached(target, name)
        if ceilings is None:
            start = 0.25
            ceilings = measure_ceilings(str(target), name, progress=_phase(progress, 0.0, start))
    model = build_model(resolved, seed=0)
    layers = model.layers
    net = prepare(model, target, torch_dtype, fast)
    if fast:
        del model
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *layers[0].in_shape, generator=generator).to(target, torch_dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    plan = plan_of(net)
    with torch.cuda.device(target) if target.type == "cuda" else contextlib.nullcontext():
        runs = measure_runs(net, plan, x, clock_for(target), warmup=warmup, repeats=repeats,
                            progress=_phase(progress, start, 1.0))
    rows = _rows(layers, layer_counts(layers, report, nbytes), plan, runs)
    return Profile(spec_name=resolved.name, spec_digest=resolved.digest(), device=device_id(target), dtype=name,
                   batch=report.batch, repeats=repeats, fast=bool(fast), layers=rows,
                   forward_seconds=statistics.median(runs.plain),
                   instrumented_seconds=statistics.median(runs.instrumented), ceilings=ceilings)
