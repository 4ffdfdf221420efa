"""Which map to trust: ``score(images, network)`` measures each attribution method on the user's images.

Seven measures, the standard set for image attributions (Quantus and Xplique collect them), each
with the direction that is better:

* faithfulness: ``deletion`` (lower: the class's probability falls fast as the most-attributed
  pixels go) and ``insertion`` (higher: it rises fast as they come back), the area under the curve
  with ``steps`` steps (RISE); ``infidelity`` (lower), Captum's ``infidelity`` with Gaussian noise;
* robustness: ``sensitivity`` (lower), Captum's ``sensitivity_max``: the largest relative change of
  the map under small uniform noise;
* randomization: ``randomization`` (lower), cascading model-parameter randomization by flow (the
  exit flow, then the middle, then the entry flow for Xception; the head, Mixed_7, Mixed_6, ... for
  Inception V3), the mean rank correlation of the map with the original one over the cascade, on a
  private re-initialized copy; ``random_logit`` (lower): the map for a random other class against the
  map for the target;
* complexity: ``sparseness`` (higher), the Gini index of |attribution|.

Every random draw comes from generators seeded by ``seed`` and the method, measure and image, so a
rerun gives the same card and a card for fewer methods gives the same numbers for those it keeps.
Forward-only work (the curves, infidelity) runs on the inference copy of the network; the maps
come from :func:`~explorer.explain.core.explain_tensor` (the folded copy for the gradient methods
unless ``fold=False``). No Streamlit here.
"""

from __future__ import annotations

import copy
import difflib
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from explorer.explain.base import get_method
from explorer.explain.core import check_explain_budget, explain_tensor, resolve_target
from explorer.explain.errors import ExplainError
from explorer.explain.estimate import count_passes
from explorer.explain.metrics import (
    DEFAULT_BASELINE,
    CurveJob,
    area,
    baseline_image,
    cascade_stages,
    check_baseline,
    gaussian_perturb,
    gini,
    perturbation_curves,
    random_ranking,
    randomize,
    rank_correlation,
    ranking,
    step_counts,
    uniform_perturb,
)
from explorer.explain.options import resolve_options
from explorer.explain.progress import ProgressFn
from explorer.explain.safety import ReplicaPool
from explorer.explain.views import to_map

LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class Metric:
    """One measure: its name, what it says, and which direction is better."""

    name: str
    title: str
    direction: str     # LOWER or HIGHER is better
    family: str        # faithfulness, robustness, randomization, complexity
    summary: str
    source: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("deletion", "Deletion AUC", LOWER, "faithfulness",
           "area under the target probability as the most-attributed pixels are replaced by the baseline",
           "Petsiuk et al., 2018 (RISE)"),
    Metric("insertion", "Insertion AUC", HIGHER, "faithfulness",
           "area under the target probability as the most-attributed pixels are put back into the baseline",
           "Petsiuk et al., 2018 (RISE)"),
    Metric("infidelity", "Infidelity", LOWER, "faithfulness",
           "mean squared error between the map's prediction of the logit change under Gaussian noise and "
           "the real change (scale-normalized; Captum's infidelity)",
           "Yeh et al., 2019"),
    Metric("sensitivity", "Max-sensitivity", LOWER, "robustness",
           "largest relative change of the map under small uniform input noise (Captum's sensitivity_max)",
           "Yeh et al., 2019"),
    Metric("randomization", "Randomization", LOWER, "randomization",
           "mean rank correlation with the original map as the flows are re-initialized from the top down",
           "Adebayo et al., 2018"),
    Metric("random_logit", "Random logit", LOWER, "randomization",
           "rank correlation between the map for the target class and the map for a random other class",
           "Sixt et al., 2020"),
    Metric("sparseness", "Sparseness", HIGHER, "complexity",
           "Gini index of |attribution| per pixel (1: all in one pixel, 0: spread evenly)",
           "Chalasani et al., 2020"),
)}
METRIC_ORDER: tuple[str, ...] = tuple(METRICS)
CURVES: tuple[str, ...] = ("deletion", "insertion")

DEFAULT_STEPS = 20         # 5 % of the pixels per step
DEFAULT_SAMPLES = 8        # noise draws per image for infidelity and sensitivity (Captum's default: 10)
DEFAULT_RADIUS = 0.02      # sensitivity's noise, in the network's input units (Captum's default)
NOISE_FRACTION = 0.1       # infidelity's noise std: a tenth of the input's value range
DEFAULT_BATCH = 32         # perturbed images per forward pass
TIE = 1e-6                 # means this close (relative) are a tie: no best method
FLAT_CURVE = 1e-3          # a curve whose probability moves less than this measures nothing


def metric_names() -> list[str]:
    return list(METRIC_ORDER)


def get_metric(name: str) -> Metric:
    """The measure called ``name``; an :class:`ExplainError` with the close names if none."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key in METRICS:
        return METRICS[key]
    close = difflib.get_close_matches(key, list(METRICS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ExplainError(f"unknown metric '{name}'{hint}; choose from {', '.join(METRIC_ORDER)}")


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v)]


def _plain(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class Row:
    """One method on one measure: a value per image (NaN where it could not be computed), their mean and
    spread, how many counted, the seconds the measure took (the maps themselves are in
    :attr:`Scorecard.map_seconds`), and a note when something could not apply."""

    method: str
    metric: str
    values: tuple[float, ...]
    seconds: float = 0.0
    note: str | None = None

    @property
    def n(self) -> int:
        return int(_finite(self.values).size)

    @property
    def mean(self) -> float:
        v = _finite(self.values)
        return float(v.mean()) if v.size else float("nan")

    @property
    def spread(self) -> float:
        """The standard deviation over the images (0 for one image, NaN for none)."""
        v = _finite(self.values)
        return float(v.std()) if v.size else float("nan")

    @property
    def direction(self) -> str:
        return METRICS[self.metric].direction

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "metric": self.metric, "direction": self.direction,
                "mean": _plain(self.mean), "spread": _plain(self.spread), "n": self.n,
                "values": [_plain(v) for v in self.values], "seconds": round(self.seconds, 4), "note": self.note}


@dataclass
class Scorecard:
    """The measures of several methods on the same images and network (see the module docstring)."""

    network: str
    images: tuple[str, ...]
    targets: tuple[int, ...]
    target_labels: tuple[str | None, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: list[Row]
    settings: dict[str, Any]
    device: str
    seconds: float = 0.0
    map_seconds: dict[str, float] = field(default_factory=dict)
    method_notes: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # for the figures: the mean curves per measure and method (fractions 0..1 in settings["steps"] steps),
    # the mean area of random orders (chance), the cascade (stage labels; per method the mean rank
    # correlation after each stage, and the first image's maps: the original, then one per stage)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    fractions: np.ndarray | None = None  # where each curve's points are: the fraction of pixels after each step
    chance: dict[str, float] = field(default_factory=dict)
    chance_curves: dict[str, np.ndarray] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    cascade: dict[str, list[float]] = field(default_factory=dict)
    cascade_maps: dict[str, list[np.ndarray | None]] = field(default_factory=dict)
    picture: np.ndarray | None = None

    def row(self, method: str, metric: str) -> Row:
        name, key = get_method(method).name, get_metric(metric).name
        for row in self.rows:
            if row.method == name and row.metric == key:
                return row
        raise ExplainError(f"the scorecard has no row for {name} x {key}")

    def best(self, metric: str) -> str | None:
        """The method with the best mean on ``metric`` (its direction decides); None if none has a value or
        several share the best one (to within :data:`TIE`)."""
        key = get_metric(metric).name
        scored = [(row.mean, row.method) for row in self.rows if row.metric == key and row.n]
        if not scored:
            return None
        pick = min if METRICS[key].direction == LOWER else max
        value, method = pick(scored)
        tied = [m for v, m in scored if math.isclose(v, value, rel_tol=TIE, abs_tol=1e-12)]
        return method if len(tied) == 1 else None  # a tie (e.g. random weights, flat curves) has no best

    def table(self) -> list[dict[str, Any]]:
        """One dict per method: its title and each measure's mean (None where it has no value)."""
        out = []
        for method in self.methods:
            entry: dict[str, Any] = {"method": method, "title": get_method(method).title}
            for metric in self.metrics:
                entry[metric] = _plain(self.row(method, metric).mean)
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: what was scored, the settings, every row, the best per measure with its
        direction, the curves and the cascade (numbers only, no maps)."""
        return {
            "network": self.network, "device": self.device, "images": list(self.images),
            "targets": list(self.targets), "target_labels": list(self.target_labels),
            "methods": list(self.methods),
            "metrics": {name: {"title": METRICS[name].title, "direction": METRICS[name].direction,
                               "better": f"{METRICS[name].direction} is better",
                               "family": METRICS[name].family, "what": METRICS[name].summary,
                               "source": METRICS[name].source} for name in self.metrics},
            "settings": dict(self.settings),
            "rows": [row.to_dict() for row in self.rows],
            "best": {name: {"method": self.best(name), "direction": METRICS[name].direction}
                     for name in self.metrics},
            "chance": {k: _plain(v) for k, v in self.chance.items()},
            "curves": {metric: {m: [float(v) for v in c] for m, c in by.items()} for metric, by in self.curves.items()},
            "fractions": None if self.fractions is None else [float(f) for f in self.fractions],
            "cascade": {"stages": list(self.stages),
                        "correlation": {m: [_plain(v) for v in vs] for m, vs in self.cascade.items()}},
            "seconds": round(self.seconds, 3), "map_seconds": {k: round(v, 4) for k, v in self.map_seconds.items()},
            "method_notes": {k: list(v) for k, v in self.method_notes.items()}, "notes": list(self.notes),
        }


class _Meter:
    """Overall progress in cost units (forward passes of one image), reported as a fraction."""

    def __init__(self, total: float, progress: ProgressFn | None) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.progress = progress

    def part(self, units: float) -> ProgressFn:
        """A callback for a piece of work worth ``units``: its own fraction moves the overall one."""
        start = self.done

        def report(fraction: float) -> None:
            self.done = start + units * min(max(fraction, 0.0), 1.0)
            self._report()

        return report

    def advance(self, units: float) -> None:
        self.done += units
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(min(self.done / self.total, 0.999))


def _seed(seed: int, *parts: object) -> int:
    """A seed for one (measure, method, image): independent of which other methods and measures run."""
    words = [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence([int(seed) % 2**63, *words]).generate_state(1)[0])


def _names(given: Sequence[str] | str | None, every: Sequence[str], parse: Callable[[str], Any], what: str) -> list[str]:
    if given is None:
        return list(every)
    if isinstance(given, str):
        given = [g for g in given.replace(",", " ").split() if g]
    names = list(dict.fromkeys(parse(g).name for g in given))
    if not names:
        raise ExplainError(f"no {what} chosen: choose from {', '.join(every)}")
    return names


def _flat(map2d: np.ndarray) -> bool:
    return bool(np.ptp(map2d) == 0)


class _Scorer:
    """One scoring run on one device (re-created for the CPU after an accelerator ran out of memory)."""

    def __init__(self, loaded: Any, xs: torch.Tensor, names: Sequence[str], methods: Sequence[str],
                 metrics: Sequence[str], target: Any, seed: int, steps: int, baselines: dict[str, str],
                 samples: int, radius: float, batch: int, options: Mapping[str, Mapping[str, Any]],
                 layers: Mapping[str, str], fold: bool, progress: ProgressFn | None) -> None:
        self.loaded, self.xs, self.names = loaded, xs, list(names)
        self.methods, self.metrics = list(methods), list(metrics)
        self.target, self.seed, self.steps, self.baselines = target, seed, steps, baselines
        self.samples, self.radius, self.batch = samples, radius, batch
        self.options, self.layers, self.fold, self.progress = options, layers, fold, progress
        self._baselines: dict[tuple[int, str], torch.Tensor] = {}

    def run(self, device: torch.device) -> Scorecard:
        start = time.perf_counter()
        loaded, xs = self.loaded, self.xs
        self.device = device
        self.model = loaded.on(device)
        self.runner = loaded.runner(device)
        self.fmt = torch.channels_last if loaded.channels_last else torch.contiguous_format
        n = len(xs)
        targets = self._targets()
        self.targets = targets
        units = {m: count_passes(m, xs[0], target=0, **self.options.get(m, {})).units for m in self.methods}
        stages = cascade_stages(self.model) if "randomization" in self.metrics else []
        meter = _Meter(self._total(units, len(stages)), self.progress)
        values: dict[tuple[str, str], list[float]] = {}
        seconds: dict[tuple[str, str], float] = {}
        notes: dict[tuple[str, str], list[str]] = {}
        card = Scorecard(network=loaded.describe(), images=tuple(self.names), targets=tuple(targets),
                         target_labels=tuple(_label(loaded.classes, t) for t in targets),
                         methods=tuple(self.methods), metrics=tuple(self.metrics), rows=[], settings={},
                         device=str(device), stages=tuple(s.label for s in stages))
        self._chance(card, meter)
        maps: dict[str, list[np.ndarray | None]] = {}
        for method in self.methods:
            m = get_method(method)
            began = time.perf_counter()
            maps[method], failed = self._maps(method, targets, meter, units[method], card)
            card.map_seconds[method] = time.perf_counter() - began
            for metric in self.metrics:
                key = (method, metric)
                values[key], notes[key] = [float("nan")] * n, []
                if failed:
                    notes[key].append(failed)
            if failed:
                continue
            for metric in self.metrics:
                if metric == "randomization":
                    continue  # below, for every method at once: one randomized copy per stage
                began = time.perf_counter()
                getattr(self, f"_{metric}")(m, maps[method], values[(method, metric)], notes[(method, metric)],
                                            meter, units[method], card)
                seconds[(method, metric)] = time.perf_counter() - began
        if stages:
            live = [m for m in self.methods if not notes[(m, "randomization")]]
            self._randomization(stages, live, maps, values, notes, seconds, meter, units, card)
        for method in self.methods:
            for metric in self.metrics:
                key = (method, metric)
                card.rows.append(Row(method, metric, tuple(values[key]), seconds.get(key, 0.0),
                                     "; ".join(dict.fromkeys(notes[key])) or None))
        card.seconds = time.perf_counter() - start
        return card

    # -- what it costs, in forward passes of one image (for the progress bar) --------------------------

    def _total(self, units: dict[str, float], stages: int) -> float:
        n, curve = len(self.xs), len(self.xs) * (self.steps + 1)
        total = sum(curve for metric in self.metrics if metric in CURVES)  # the chance curves
        for method in self.methods:
            u = units[method]
            total += n * u
            total += sum({"deletion": curve, "insertion": curve, "infidelity": n * self.samples,
                          "sensitivity": n * self.samples * u, "randomization": stages * n * u,
                          "random_logit": n * u, "sparseness": 0}[metric] for metric in self.metrics)
        return total

    # -- the network's own outputs --------------------------------------------------------------------

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.runner(batch)

    def _targets(self) -> list[int]:
        classes = self.loaded.classes
        if self.target is not None:
            chosen = resolve_target(self.target, len(classes), classes)
            return [chosen] * len(self.xs)
        out: list[int] = []
        with torch.inference_mode():
            for start in range(0, len(self.xs), self.batch):
                x = self.xs[start:start + self.batch].to(self.device, memory_format=self.fmt)
                out += [int(i) for i in self._forward(x).argmax(dim=1).cpu()]
        return out

    def _explain(self, model: torch.nn.Module, method: str, i: int, target: int, progress: ProgressFn | None,
                 pool: ReplicaPool | None = None, x: torch.Tensor | None = None):
        """``method``'s map of image ``i`` (or of ``x``, a perturbed copy of it) for ``target``."""
        pre = self.loaded.preprocess
        return explain_tensor(model, x if x is not None else self.xs[i], method, target=target,
                              layer=self.layers.get(method), classes=self.loaded.classes, mean=pre.mean,
                              std=pre.std, progress=progress, pool=pool, fold=self.fold,
                              **self.options.get(method, {}))

    def _maps(self, method: str, targets: list[int], meter: _Meter, units: float,
              card: Scorecard) -> tuple[list[np.ndarray | None], str | None]:
        """Each image's map (C x H x W values), or the reason the method cannot run at all."""
        out: list[np.ndarray | None] = []
        for i, target in enumerate(targets):
            try:
                result = self._explain(self.model, method, i, target, meter.part(units))
            except ExplainError as exc:
                meter.advance(units * (len(targets) - i))
                return [None] * len(targets), f"{get_method(method).title} cannot run here: {exc}"
            if i == 0:
                card.method_notes[method] = list(result.notes)
            out.append(result.values)
        return out, None

    def _ok(self, values: np.ndarray | None, i: int, note: list[str]) -> np.ndarray | None:
        """The image's 2-D map (summed over channels, absolute), or None with a note when it is flat."""
        if values is None:
            return None
        flat = to_map(values, "absolute")
        if not np.isfinite(flat).all():
            note.append(f"image {i + 1}: the map is not finite")
            return None
        if _flat(flat):
            note.append(f"image {i + 1}: the map is flat (constant), so it ranks no pixel above another")
            return None
        return flat

    # -- faithfulness ---------------------------------------------------------------------------------

    def _chance(self, card: Scorecard, meter: _Meter) -> None:
        """Deletion and insertion with random pixel orders: the level a map must beat."""
        pixels = self.xs.shape[-2] * self.xs.shape[-1]
        card.fractions = step_counts(pixels, self.steps) / pixels
        for metric in (m for m in self.metrics if m in CURVES):
            orders = [random_ranking(pixels, np.random.default_rng(_seed(self.seed, "chance", metric, i)))
                      for i in range(len(self.xs))]
            curves = self._perturbation_curves(orders, range(len(orders)), metric, meter)
            card.chance[metric] = float(area(curves, pixels).mean())
            card.chance_curves[metric] = curves.mean(axis=0)

    def _perturbation(self, metric: str, m, maps, values, note, meter, card) -> None:
        keep, orders = [], []
        for i, v in enumerate(maps):
            if self._ok(v, i, note) is None:
                meter.advance(self.steps + 1)
                continue
            relevance = to_map(v, m.default_sign)  # the view the method is read in: IG's positive evidence first
            orders.append(ranking(relevance, np.random.default_rng(_seed(self.seed, metric, m.name, i))))
            keep.append(i)
        if not keep:
            return
        curves = self._perturbation_curves(orders, keep, metric, meter)
        for row, i in enumerate(keep):
            values[i] = float(area(curves[row], self.xs.shape[-2] * self.xs.shape[-1]))
            if np.ptp(curves[row]) < FLAT_CURVE:
                note.append(f"image {i + 1}: the target's probability moves by less than {FLAT_CURVE:g} along the "
                            f"curve: the output hardly depends on the pixels (random weights?), so the area "
                            f"says nothing")
        card.curves.setdefault(metric, {})[m.name] = curves.mean(axis=0)

    def _baseline(self, i: int, kind: str) -> torch.Tensor:
        """Image ``i``'s baseline of ``kind``, made once per run (every method's curves use it)."""
        key = (i, kind)
        if key not in self._baselines:
            self._baselines[key] = baseline_image(self.xs[i], kind)
        return self._baselines[key]

    def _perturbation_curves(self, orders, keep, metric, meter) -> np.ndarray:
        """The curves of the images ``keep`` (in that order) for their pixel ``orders``."""
        kind = self.baselines[metric]
        jobs = [CurveJob(self.xs[i], order, self._baseline(i, kind), self.targets[i], metric == "deletion")
                for i, order in zip(keep, orders)]
        return perturbation_curves(self._forward, jobs, self.steps, batch=self.batch, device=self.device,
                                   memory_format=self.fmt, progress=meter.advance)

    def _deletion(self, m, maps, values, note, meter, units, card) -> None:
        self._perturbation("deletion", m, maps, values, note, meter, card)

    def _insertion(self, m, maps, values, note, meter, units, card) -> None:
        self._perturbation("insertion", m, maps, values, note, meter, card)

    def _infidelity(self, m, maps, values, note, meter, units, card) -> None:
        from captum.metrics import infidelity

        for i, v in enumerate(maps):
            if self._ok(v, i, note) is None:
                meter.advance(self.samples)
                continue
            x = self.xs[i:i + 1].to(self.device, memory_format=self.fmt)
            attribution = _like_input(v, x)
            spread = float(x.max() - x.min()) or 1.0
            generator = torch.Generator().manual_seed(_seed(self.seed, "infidelity", m.name, i))
            with torch.inference_mode():
                value = infidelity(self._forward, gaussian_perturb(generator, NOISE_FRACTION * spread), x,
                                   attribution, target=self.targets[i], n_perturb_samples=self.samples,
                                   max_examples_per_batch=min(self.batch, self.samples), normalize=True)
            values[i] = float(value.reshape(-1)[0])
            meter.advance(self.samples)

    # -- robustness -----------------------------------------------------------------------------------

    def _sensitivity(self, m, maps, values, note, meter, units, card) -> None:
        from captum.metrics import sensitivity_max

        for i, v in enumerate(maps):
            if self._ok(v, i, note) is None:
                meter.advance(self.samples * units)
                continue
            original = torch.from_numpy(np.ascontiguousarray(v)).unsqueeze(0)
            calls = [0]

            def explanation(inputs: torch.Tensor, i=i, original=original, calls=calls) -> tuple[torch.Tensor]:
                calls[0] += 1
                if calls[0] == 1:  # Captum explains the unperturbed input first: that map is known
                    return (original,)
                rows = []
                for row in inputs:
                    result = self._explain(self.model, m.name, i, self.targets[i], meter.part(units), x=row)
                    rows.append(torch.from_numpy(np.ascontiguousarray(result.values)))
                return (torch.stack(rows),)

            generator = torch.Generator().manual_seed(_seed(self.seed, "sensitivity", m.name, i))
            value = sensitivity_max(explanation, self.xs[i:i + 1].clone(), perturb_func=uniform_perturb(generator),
                                    perturb_radius=self.radius, n_perturb_samples=self.samples)
            values[i] = float(value.reshape(-1)[0])

    # -- randomization --------------------------------------------------------------------------------

    def _random_logit(self, m, maps, values, note, meter, units, card) -> None:
        classes = len(self.loaded.classes)
        if classes < 2:
            note.append("a network with one class has no other class to compare with")
            meter.advance(units * len(maps))
            return
        for i, v in enumerate(maps):
            own = self._ok(v, i, note)
            if own is None:
                meter.advance(units)
                continue
            rng = np.random.default_rng(_seed(self.seed, "random_logit", m.name, i))
            other = int(rng.integers(classes - 1))
            other += other >= self.targets[i]  # any class but the target
            result = self._explain(self.model, m.name, i, other, meter.part(units))
            values[i] = rank_correlation(own, to_map(result.values, "absolute"))

    def _sparseness(self, m, maps, values, note, meter, units, card) -> None:
        for i, v in enumerate(maps):
            if v is None:
                continue
            flat = to_map(v, "absolute")
            if not np.any(flat):
                note.append(f"image {i + 1}: the map is all zeros")
                continue
            values[i] = gini(flat)

    def _randomization(self, stages, methods, maps, values, notes, seconds, meter, units, card) -> None:
        """Re-initialize the flows from the top down on one private copy (cumulatively), and after each
        stage explain every image again with every method; the value is the mean rank correlation over
        the stages (per image), the cascade keeps the correlation after each stage."""
        n = len(self.xs)
        originals = {m: [self._ok(v, i, notes[(m, "randomization")]) for i, v in enumerate(maps[m])]
                     for m in methods}
        rhos = {m: np.full((len(stages), n), np.nan) for m in methods}
        card.cascade_maps = {m: [originals[m][0]] for m in methods}
        replica = copy.deepcopy(self.model).eval()
        generator = torch.Generator().manual_seed(_seed(self.seed, "randomization"))
        pool = ReplicaPool(max_idle=1)
        done: set[str] = set()
        try:
            for s, stage in enumerate(stages):
                randomize(replica, [name for name in stage.layers if name not in done], generator)
                done.update(stage.layers)
                pool.clear()  # the copy's weights changed: its replicas are stale
                for method in methods:
                    began = time.perf_counter()
                    for i in range(n):
                        if originals[method][i] is None:
                            meter.advance(units[method])
                            continue
                        result = self._explain(replica, method, i, self.targets[i], meter.part(units[method]), pool)
                        after = to_map(result.values, "absolute")
                        rhos[method][s, i] = rank_correlation(originals[method][i], after)
                        if i == 0:
                            card.cascade_maps[method].append(after)
                    seconds[(method, "randomization")] = (seconds.get((method, "randomization"), 0.0)
                                                          + time.perf_counter() - began)
        finally:
            pool.clear()
            del replica
        for method in methods:
            r = rhos[method]
            with np.errstate(invalid="ignore"):
                per_image = [float(np.nanmean(r[:, i])) if np.isfinite(r[:, i]).any() else float("nan")
                             for i in range(n)]
            values[(method, "randomization")][:] = per_image
            card.cascade[method] = [float(np.nanmean(row)) if np.isfinite(row).any() else float("nan") for row in r]


def _like_input(values: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """The map shaped like the input (1 x C x H x W): a one-channel map (Grad-CAM) is spread evenly over
    the channels, so its sum over channels is the map."""
    a = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).unsqueeze(0)
    if a.shape[1] == 1 and x.shape[1] > 1:
        a = a.expand(-1, x.shape[1], -1, -1) / x.shape[1]
    return a.to(device=x.device, memory_format=torch.contiguous_format).contiguous()


def _label(classes: Sequence[str], index: int) -> str | None:
    return str(classes[index]) if 0 <= index < len(classes) else None


def score(images: Sequence[Any], spec_or_loaded: Any = None, *, weights: str = "imagenet",
          methods: Sequence[str] | str | None = None, metrics: Sequence[str] | str | None = None,
          target: int | str | None = None, device: str | torch.device = "auto", seed: int = 0,
          progress: ProgressFn | None = None, steps: int = DEFAULT_STEPS, baseline: str | None = None,
          samples: int = DEFAULT_SAMPLES, radius: float = DEFAULT_RADIUS, batch: int = DEFAULT_BATCH,
          options: Mapping[str, Mapping[str, Any]] | None = None, fold: bool = True,
          knobs: Mapping[str, object] | None = None, download: bool | None = None) -> Scorecard:
    """Measure ``methods`` (default: all seven) on ``metrics`` (default: all seven) for ``images``.

    ``images``: paths, bytes, uploads, PIL images or decoded images (at least one).
    ``spec_or_loaded``: a preset name, YAML path, :class:`~explorer.spec.Spec` or a loaded network
    (:class:`explorer.weights.LoadedModel`; then ``weights``, ``knobs`` are ignored); None when
    ``weights`` is a checkpoint that carries its spec. ``target``: one class (index or name) for every
    image; None explains each image's predicted class. ``seed`` seeds every random draw (and random
    weights). ``steps``: deletion/insertion steps; ``baseline``: ``blur``, ``mean`` or ``zero`` for both
    curves (default: zero, the all-zero input); ``samples``: noise draws per image
    for infidelity and sensitivity; ``radius``: sensitivity's noise; ``batch``: perturbed images per
    forward pass; ``options``: each method's options (``{"ig": {"steps": 8}}``; a ``layer`` for Grad-CAM's); ``fold``: the gradient
    methods on the folded copy (False: on the model as built). ``progress`` gets a fraction in [0, 1]
    and may raise to stop the run. Errors are one-line :class:`ExplainError` s (bad method, metric,
    option, target, no image).
    """
    from explorer.explain.api import load_for_explain
    from explorer.infer import DecodedImage, decode_image, resolve_device, with_cpu_fallback

    method_list = _names(methods, [m for m in _method_order()], get_method, "method")
    metric_list = _names(metrics, METRIC_ORDER, get_metric, "metric")
    given = dict(options or {})
    chosen_options: dict[str, dict[str, Any]] = {}
    layers: dict[str, str] = {}
    for name, opts in given.items():
        method = get_method(name)
        if not isinstance(opts, Mapping):
            raise ExplainError(f"options of {method.name} must be a mapping of option names to values")
        opts = dict(opts)
        if "layer" in opts:
            if not method.uses_layer:
                raise ExplainError(f"{method.title} does not use a layer")
            layers[method.name] = str(opts.pop("layer"))
        resolve_options(method.name, method.options, opts)  # checked now, not after loading the weights
        chosen_options[method.name] = opts
    steps, samples, batch = _count("steps", steps, 1, 1000), _count("samples", samples, 1, 1000), \
        _count("batch", batch, 1, 4096)
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ExplainError(f"radius must be a positive number, got {radius!r}")
    baselines = {metric: check_baseline(baseline if baseline is not None else DEFAULT_BASELINE) for metric in CURVES}
    images = list(images) if not isinstance(images, (str, bytes)) else [images]
    if not images:
        raise ExplainError("no images to score: give at least one")
    loaded = load_for_explain(spec_or_loaded, weights, knobs=knobs, seed=seed, download=download)
    decoded = [image if isinstance(image, DecodedImage) else decode_image(image) for image in images]
    _check_budget(loaded, batch, method_list, chosen_options, decoded)
    xs = loaded.inputs([d.image for d in decoded])
    if target is not None:
        resolve_target(target, len(loaded.classes), loaded.classes)  # before any work
    scorer = _Scorer(loaded, xs, [d.name for d in decoded], method_list, metric_list, target, int(seed), steps,
                     baselines, samples, float(radius), batch, chosen_options, layers, fold, progress)
    card, fallback = with_cpu_fallback(scorer.run, resolve_device(device))
    crop = loaded.preprocess.crop_image(decoded[0].image)
    card.picture = np.asarray(crop.convert("RGB"), dtype=np.uint8)
    card.settings = {"steps": steps, "baselines": baselines, "samples": samples, "radius": float(radius),
                     "infidelity_noise": f"{NOISE_FRACTION:g} x the input's value range", "batch": batch,
                     "seed": int(seed), "fold": fold, "target": "predicted class" if target is None else target,
                     "options": {m: dict(o) for m, o in chosen_options.items()}, "layers": dict(layers),
                     "randomization": "each layer's own initialization (Kaiming uniform; batch norms reset), "
                                      "flows from the top down, cumulative; Spearman rank correlation of |map|"}
    card.notes = list(loaded.notes) + [note for d in decoded for note in d.notes] + ([fallback] if fallback else [])
    return card


def _check_budget(loaded: Any, batch: int, methods: Sequence[str], options: Mapping[str, Mapping[str, Any]],
                  decoded: Sequence[Any]) -> None:
    """Refuse a card whose passes would hold more activations than ``max_activation_bytes``, before any
    work: the batched forward passes (curves, infidelity) at ``batch``, and each method's maps."""
    from explorer.spec.budget import check_budget

    check_budget(loaded.spec, batch=batch, what=f"the scorecard's forward passes of '{loaded.spec.name}'",
                 lower="the images per forward pass (batch)", layers=loaded.layers)
    x = loaded.inputs([decoded[0].image])  # one image: the methods' "auto" options depend on it
    for name in methods:
        method = get_method(name)
        try:
            resolved = method.resolve(dict(options.get(name, {})), x)
        except ExplainError:
            continue  # the card notes it for this method alone
        check_explain_budget(loaded.model, method, resolved, x)


def _method_order() -> list[str]:
    from explorer.explain.base import method_names

    return method_names()


def _count(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ExplainError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)
