"""Ablations: train every variant of a spec over several seeds and compare the curves.

The variants are the cartesian product of the ``--vary`` lists
(``residual=true,false`` × ``mid_activation=none,relu,elu`` is six variants),
each trained once per seed with the same recipe and the same data (all the
variants with the first seed, then all with the next, ...). The
results are kept as plain data (:class:`AblationResult`, JSON round-trips) and
handed to an ``on_run`` callback after every run, so a long ablation that is
stopped keeps what it finished. Writing and drawing them (files, tables, the
paper's Figures 9 and 10) is :mod:`explorer.lab.report`'s job; this module knows
no files.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

from explorer.errors import ExplorerError, UsageError
from explorer.lab.data import ImageData, load_data
from explorer.lab.train import EpochStats, Progress, TrainConfig, train
from explorer.spec import Spec
from explorer.spec.knobs import coerce_knob

FORMAT = "xception-explorer-ablation/1"


class AblationError(ExplorerError, ValueError):
    """Saved results that cannot be read, or data that does not fit a variant."""


def knob_text(value: Any) -> str:
    """A knob value as a variant's label and the CSV tables write it (``true``, ``relu``, ``0.5``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Variant:
    """One combination of knob values."""

    knobs: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        """``residual=true, mid_activation=none`` (``base`` when nothing varies)."""
        return ", ".join(f"{k}={knob_text(v)}" for k, v in self.knobs) or "base"

    def apply(self, spec: Spec) -> Spec:
        """The spec with this variant's knobs."""
        return spec.with_overrides(**dict(self.knobs)) if self.knobs else spec


def parse_vary(items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """Read ``["residual=true,false", "mid_activation=none,relu"]`` into knob names and their values."""
    vary: list[tuple[str, list[Any]]] = []
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise UsageError("vary", f"expected KNOB=V1,V2,..., got '{item}'")
        if name in (n for n, _ in vary):
            raise UsageError("vary", f"'{name}' is varied twice: give all its values in one --vary")
        parsed = [coerce_knob(name, v.strip()) for v in values.split(",") if v.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise UsageError("vary", f"'{name}' lists a value twice")
        vary.append((name, parsed))
    return vary


def make_variants(vary: Sequence[tuple[str, Sequence[Any]]]) -> list[Variant]:
    """The cartesian product of the varied knobs, in the order given (first knob slowest)."""
    names = [n for n, _ in vary]
    return [Variant(tuple(zip(names, combo))) for combo in itertools.product(*(v for _, v in vary))]


@dataclass
class RunRecord:
    """One variant trained with one seed."""

    variant: str
    knobs: dict[str, Any]
    seed: int
    history: list[EpochStats]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def final(self, metric: str = "test_acc") -> float:
        """The metric after the last epoch (NaN for an empty run)."""
        return getattr(self.history[-1], metric) if self.history else math.nan

    def to_dict(self) -> dict:
        """Plain data (JSON)."""
        return {"variant": self.variant, "knobs": self.knobs, "seed": self.seed, "seconds": self.seconds,
                "notes": self.notes, "history": [h.to_dict() for h in self.history]}

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        """Read :meth:`to_dict`'s output."""
        return cls(data["variant"], dict(data["knobs"]), int(data["seed"]),
                   [EpochStats(**h) for h in data["history"]], float(data["seconds"]), list(data.get("notes", [])))


@dataclass(frozen=True)
class SummaryRow:
    """A variant's final numbers over its seeds (std: sample standard deviation, 0 for one seed)."""

    variant: str
    knobs: dict[str, Any]
    seeds: int
    epochs: int
    test_acc_mean: float
    test_acc_std: float
    test_loss_mean: float
    test_loss_std: float
    train_loss_mean: float
    best_test_acc_mean: float
    seconds_mean: float


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class AblationResult:
    """Everything an ablation produced, as plain data (JSON round-trips)."""

    spec_name: str
    spec_yaml: str
    data: str
    vary: list[tuple[str, list[Any]]]
    seeds: list[int]
    config: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)
    command: str | None = None
    notes: list[str] = field(default_factory=list)
    stopped: bool = False

    def variants(self) -> list[str]:
        """Variant labels in the order they were planned (product order)."""
        planned = [v.label for v in make_variants(self.vary)]
        return planned + [r.variant for r in self.runs if r.variant not in planned]

    def runs_of(self, variant: str) -> list[RunRecord]:
        """The variant's finished runs (one per seed)."""
        return [r for r in self.runs if r.variant == variant and r.history]

    def summary(self) -> list[SummaryRow]:
        """One row per variant that has finished runs."""
        rows = []
        for label in self.variants():
            runs = self.runs_of(label)
            if not runs:
                continue
            acc = _mean_std([r.final("test_acc") for r in runs])
            loss = _mean_std([r.final("test_loss") for r in runs])
            rows.append(SummaryRow(
                label, runs[0].knobs, len(runs), min(len(r.history) for r in runs), *acc, *loss,
                statistics.fmean(r.final("train_loss") for r in runs),
                statistics.fmean(max(h.test_acc for h in r.history) for r in runs),
                statistics.fmean(r.seconds for r in runs)))
        return rows

    def mean_curve(self, variant: str, metric: str) -> tuple[list[int], list[float], list[float]]:
        """(epochs, mean, std) of ``metric`` over the variant's seeds, up to the shortest run."""
        runs = self.runs_of(variant)
        if not runs:
            return [], [], []
        n = min(len(r.history) for r in runs)
        columns = [[getattr(r.history[e], metric) for r in runs] for e in range(n)]
        stats = [_mean_std(c) for c in columns]
        return list(range(1, n + 1)), [m for m, _ in stats], [s for _, s in stats]

    def to_dict(self) -> dict:
        """Plain data (what ``ablation.json`` holds), the summary included."""
        return {"format": FORMAT, "spec_name": self.spec_name, "spec": self.spec_yaml, "data": self.data,
                "vary": [[k, v] for k, v in self.vary], "seeds": self.seeds, "config": self.config,
                "command": self.command, "notes": self.notes, "stopped": self.stopped,
                "summary": [asdict(r) for r in self.summary()], "runs": [r.to_dict() for r in self.runs]}

    @classmethod
    def from_dict(cls, data: Any) -> "AblationResult":
        """Read :meth:`to_dict`'s output; a one-line :class:`AblationError` if it is something else
        (another JSON value, a missing field, a field of the wrong shape)."""
        if not isinstance(data, dict):
            raise AblationError(f"not an ablation result (a JSON {type(data).__name__}, expected an object "
                                f"with format {FORMAT})")
        if data.get("format") != FORMAT:
            raise AblationError(f"not an ablation result (format {data.get('format')!r}, expected {FORMAT})")
        try:
            return cls(str(data["spec_name"]), str(data["spec"]), str(data["data"]),
                       [(str(k), list(v)) for k, v in data["vary"]], [int(s) for s in data["seeds"]],
                       dict(data["config"]), [RunRecord.from_dict(r) for r in data["runs"]],
                       data.get("command"), [str(n) for n in data.get("notes", [])], bool(data.get("stopped", False)))
        except KeyError as exc:
            raise AblationError(f"not an ablation result: the field {exc} is missing") from None
        except (TypeError, ValueError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AblationError(f"not an ablation result: a field has the wrong shape ({first})") from None


@dataclass(frozen=True)
class AblationProgress:
    """What the ablation's callback gets: the run in progress and its training progress."""

    run: int
    runs: int
    variant: str
    seed: int
    train: Progress
    result: AblationResult

    @property
    def fraction(self) -> float:
        """Share of the whole ablation done, 0..1."""
        return min(1.0, (self.run - 1 + self.train.fraction) / self.runs)


AblationProgressFn = Callable[[AblationProgress], "bool | None"]
RunFn = Callable[[AblationResult], None]


def run_ablation(spec: Spec, data: ImageData | str, vary: Sequence[tuple[str, Sequence[Any]]], *,
                 seeds: Sequence[int] = (0, 1, 2), config: TrainConfig = TrainConfig(),
                 on_progress: AblationProgressFn | None = None, on_run: RunFn | None = None,
                 limit: int | None = None, command: str | None = None) -> AblationResult:
    """Train each variant of ``spec`` once per seed and return the results.

    ``data`` is a loaded data set, or a source (``"digits"`` or a folder) loaded
    for each input size the variants need. Every variant's spec is validated
    before anything trains. ``on_progress`` returning ``False`` (or Ctrl-C) stops the ablation:
    the finished runs are kept, the unfinished one is dropped, ``result.stopped`` is set.
    ``on_run`` gets the result after every finished run and once more when it stops (to keep
    writing it: ``on_run=lambda r: write_tables(r, out_dir)`` from :mod:`explorer.lab.report`).
    """
    variants = make_variants(vary)
    specs = [(v, v.apply(spec)) for v in variants]  # a bad knob fails here, before any training
    cache: dict[tuple[int, int], ImageData] = {}

    def data_for(s: Spec) -> ImageData:
        if isinstance(data, ImageData):
            if data.input_size != s.input_size:
                raise AblationError(f"a variant takes {s.input_size} px but the data was loaded at "
                                              f"{data.input_size} px: pass the data source instead")
            return data
        key = (s.input_size, s.in_channels)
        if key not in cache:
            cache[key] = load_data(data, input_size=s.input_size, in_channels=s.in_channels, limit=limit)
        return cache[key]

    first = data_for(specs[0][1])
    result = AblationResult(spec.name, spec.to_yaml(), first.describe(), [(k, list(v)) for k, v in vary],
                            list(seeds), config.to_dict(), command=command, notes=list(first.notes))
    runs = len(specs) * len(seeds)
    index = 0
    stopped = False
    try:
        for seed in seeds:  # seeds outermost: an ablation stopped early still has every variant
            for variant, variant_spec in specs:
                index += 1

                def relay(p: Progress, run=index, label=variant.label, seed=seed) -> bool | None:
                    if on_progress is None:
                        return None
                    return on_progress(AblationProgress(run, runs, label, seed, p, result))

                trained = train(variant_spec, data_for(variant_spec), replace(config, seed=seed),
                                on_progress=relay)
                if trained.stopped:
                    stopped = True
                    break
                result.runs.append(RunRecord(variant.label, {k: v for k, v in variant.knobs}, seed,
                                             trained.history, trained.history[-1].elapsed, trained.notes))
                if on_run is not None:
                    on_run(result)
            if stopped:
                break
    except KeyboardInterrupt:  # Ctrl-C on the command line: keep what finished
        stopped = True
    if not stopped:
        return result
    result.stopped = True
    result.notes.append(f"stopped after {len(result.runs)} of {runs} runs (an unfinished run is dropped)")
    if on_run is not None:
        on_run(result)
    return result
