"""Which map to trust? The scorecard section of the Classify & Explain page.

The user picks images (the page's, the current one by default), methods, networks (the page's) and
measures, with light settings for the network's size, and presses **Score the maps**: one
:func:`explorer.explain.score` per network runs as a :class:`explorer.jobs.Job` on its own thread, a
fragment polls it (progress and Cancel) and reruns the page once it ends, so the page stays usable. The
job is heavy work: it first waits for a free place in the server's line (saying its place in line).

Cards are kept in a small LRU shared by the server's sessions (:class:`CardCache`, made once by
``st.cache_resource``), under everything that makes them: the images' bytes, the network and its weights,
the methods, the measures and the settings (the same seed gives the same card). The page draws a card
from there at once on any rerun; a job puts each card in it as soon as it is made.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from explorer.explain import default_layer, get_method, method_names
from explorer.explain.score_figures import BEST, cascade_caption, cascade_figure, curves_figure, scorecard_rows
from explorer.explain.scorecard import METRIC_ORDER, METRICS, Scorecard, score
from explorer.format import duration
from explorer.jobs import CANCELLED, DONE, FAILED, Job, Task, wait_message
from explorer.ui import widgets

POLL_S = 1.0  # how often a running scorecard's progress is redrawn
RECONNECT_GRACE_S = 30  # a session gone this long (tab closed) stops its scoring
CACHE_ENTRIES = 8  # cards kept per server (a 299-px card holds its cascade maps: a few MB)
DEFAULT_METHODS = ("saliency", "ig", "gradcam", "guided-backprop")  # a light set: one or two passes each, IG a few
LARGE_INPUT = 224  # px: from this input size on, the light defaults below
# (curve steps, noise draws, IG path points, SmoothGrad samples) for small and large inputs
LIGHT = {"small": (20, 4, 16, 16), "large": (10, 2, 8, 8)}
_RUN = "score_run"
OPTION_WORDS = {"steps": "path points", "nt_samples": "noisy samples", "window": "px patches", "stride": "px stride"}


def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


class CardCache:
    """The newest ``size`` scorecards by key; thread-safe (job threads put, script runs get)."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self.size = size
        self._cards: OrderedDict[tuple, Scorecard] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Scorecard | None:
        with self._lock:
            card = self._cards.get(key)
            if card is not None:
                self._cards.move_to_end(key)
            return card

    def put(self, key: tuple, card: Scorecard) -> None:
        with self._lock:
            self._cards[key] = card
            self._cards.move_to_end(key)
            while len(self._cards) > self.size:
                self._cards.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cards)


@st.cache_resource(show_spinner=False)
def cards() -> CardCache:
    """The server's scorecards (one cache for every session: a card depends only on its key)."""
    return CardCache()


@dataclass(frozen=True)
class Request:
    """One card to show or make: the network (label and loaded model) and everything the card depends on."""

    label: str
    loaded: Any
    images: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]]
    settings: Mapping[str, Any]
    key: tuple


@dataclass
class ScoreRun:
    """A scoring job: a task per network, each task's cache key, and what it scores in words."""

    job: Job
    keys: list[tuple]
    what: str


def _run() -> ScoreRun | None:
    return st.session_state.get(_RUN)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _size(networks) -> str:
    """``large`` when a network of the page takes inputs of LARGE_INPUT px or more (then the light defaults)."""
    return "large" if any(model.spec.input_size >= LARGE_INPUT for _, model in networks) else "small"


def _options(methods: list[str], model, label: str, page_options: Mapping[str, Mapping[str, Any]],
             layers: Mapping[str, str], ig_steps: int, sg_samples: int) -> dict[str, dict[str, Any]]:
    """Each chosen method's options: IG's and SmoothGrad's cost from this section, Occlusion's patch as the
    page has it, the page's Grad-CAM layer (else the default one). Only what changes the maps (no batch
    sizes), so the cache key holds nothing that does not change the card."""
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        opts: dict[str, Any] = {}
        if m == "ig":
            opts["steps"] = ig_steps
        elif m == "smoothgrad":
            opts["nt_samples"] = sg_samples
        elif m == "occlusion":
            opts.update({k: v for k, v in page_options.get("occlusion", {}).items() if k in ("window", "stride")})
        if get_method(m).uses_layer:
            opts["layer"] = layers.get(label) or default_layer(model.layers)
        if opts:
            out[m] = opts
    return out


def _settings_caption(chosen: list[Request], steps: int, samples: int, fold: bool, device: str,
                      target: int | None) -> str:
    first = chosen[0]
    n = len(first.images)
    parts = [f"{n} image{'s' * (n > 1)} × {len(first.methods)} method{'s' * (len(first.methods) > 1)} × "
             f"{len(first.metrics)} measure{'s' * (len(first.metrics) > 1)} on "
             + ", ".join(r.label for r in chosen)]
    curves = [m for m in ("deletion", "insertion") if m in first.metrics]
    if curves:
        parts.append(f"{' and '.join(curves)} in {steps} steps from the all-zero input")
    noisy = [METRICS[m].title.lower() for m in ("infidelity", "sensitivity") if m in first.metrics]
    if noisy:
        parts.append(f"{samples} noise draw{'s' * (samples > 1)} per image for {' and '.join(noisy)}")
    for m, opts in first.options.items():
        shown = [f"{v} {OPTION_WORDS.get(k, k)}" for k, v in opts.items() if k != "layer"]
        if shown:
            parts.append(f"{get_method(m).title} " + ", ".join(shown))
    if "occlusion" in first.methods and "window" not in first.options.get("occlusion", {}):
        parts.append("Occlusion patches of a tenth of the side (set them under the page's cost of the long methods)")
    layers = {r.label: o["layer"] for r in chosen for o in r.options.values() if "layer" in o}
    if layers:
        parts.append("Grad-CAM layer " + ", ".join(f"{v}" + (f" ({k})" if len(layers) > 1 else "")
                                                   for k, v in layers.items()))
    parts.append("gradient maps on the folded copy" if fold else "gradient maps on the model as built")
    parts.append("the predicted class" if target is None else f"class {target}")
    parts.append(f"device {device}, seed 0")
    return "Settings: " + "; ".join(parts) + "."


def _task(request: Request, images: list, device: str, target: int | None, cache: CardCache) -> Task:
    s = request.settings

    def work(report) -> Scorecard:
        card = score(images, request.loaded, methods=request.methods, metrics=request.metrics, target=target,
                     device=device, progress=report, steps=s["steps"], samples=s["samples"],
                     options=request.options, fold=s["fold"])
        cache.put(request.key, card)  # now, on this thread: the card outlives the session that asked
        return card

    return Task(f"Scorecard on {request.label}", work, key=request.key)


def section(networks: list, images: Mapping[str, tuple[bytes, Any]], current: str, *, device: str,
            target: int | None, options: Mapping[str, Mapping[str, Any]], layers: Mapping[str, str],
            fold: bool) -> None:
    """The "Which map to trust?" section: choices, **Score the maps**, the progress while it runs, and each
    chosen network's card (table, curves, cascade, notes, JSON).

    ``networks``: the page's ``(Choice, LoadedModel)`` pairs; ``images``: name → (bytes, decoded image) of
    the images that decoded; ``current``: the image the page explains; ``device``, ``target``, ``fold``,
    ``options`` (the page's method options) and ``layers`` (Grad-CAM's layer per network): as the page has them.
    """
    st.divider()
    st.header("Which map to trust?")
    st.caption("Scores each method's maps with seven standard measures: faithfulness (deletion, insertion, "
               "infidelity), robustness (max-sensitivity), randomization (the cascade, a random other class) "
               "and complexity (sparseness). The arrow in a column's header says which direction is better; "
               f"{BEST} marks the best method of each measure.")
    names, labels = list(images), [choice.label for choice, _ in networks]
    size = _size(networks)
    c1, c2 = st.columns(2)
    picked_images = c1.multiselect("Images to score", names, default=[current] if current in names else names[:1],
                                   key=f"score_images_{_digest(repr((names, current)))}",
                                   help="The page's images; the one explained above by default.")
    picked_networks = c2.multiselect("Networks to score", labels, default=labels[:1],
                                     key=f"score_networks_{_digest(repr(labels))}",
                                     help="The page's networks. Each one is scored on its own card.")
    c1, c2 = st.columns(2)
    methods = c1.multiselect("Methods to score", method_names(), default=list(DEFAULT_METHODS), key="score_methods",
                             format_func=lambda m: get_method(m).title,
                             help="A light set by default; Occlusion and SmoothGrad cost many passes per map.")
    metrics = c2.multiselect("Measures", list(METRIC_ORDER), default=list(METRIC_ORDER), key="score_metrics",
                             format_func=lambda m: METRICS[m].title)
    steps0, samples0, ig0, sg0 = LIGHT[size]
    row = st.container(horizontal=True, gap="small", vertical_alignment="bottom")
    steps = row.number_input("Curve steps", 2, 100, steps0, key=f"score_steps_{size}", width=140,
                             help="Deletion and insertion remove (insert) the pixels in this many equal steps.")
    samples = row.number_input("Noise draws", 1, 64, samples0, key=f"score_samples_{size}", width=140,
                               help="Noisy copies per image for infidelity and max-sensitivity (each copy costs "
                                    "sensitivity one more map).")
    ig_steps = row.number_input("IG path points", 2, 256, ig0, key=f"score_ig_{size}", width=140,
                                help="Integrated Gradients' steps for the scored maps.")
    sg_samples = row.number_input("SmoothGrad samples", 1, 256, sg0, key=f"score_sg_{size}", width=160,
                                  help="SmoothGrad's noisy copies for the scored maps.")
    if not picked_images or not picked_networks or not methods or not metrics:
        st.info("Choose at least one image, network, method and measure to score the maps.")
        _live(None)
        return

    image_key = tuple((name, _digest(images[name][0])) for name in picked_images)
    chosen: list[Request] = []
    by_label = {choice.label: (choice, model) for choice, model in networks}
    for label in picked_networks:
        choice, model = by_label[label]
        opts = _options(methods, model, label, options, layers, int(ig_steps), int(sg_samples))
        settings = {"steps": int(steps), "samples": int(samples), "fold": bool(fold), "device": device,
                    "target": target}
        network_key = (label, choice.spec_yaml and _digest(choice.spec_yaml), choice.weights, model.describe())
        key = (network_key, image_key, tuple(methods), tuple(metrics), _freeze(opts), _freeze(settings))
        chosen.append(Request(label, model, tuple(picked_images), tuple(methods), tuple(metrics), opts, settings,
                              key))
    st.caption(_settings_caption(chosen, int(steps), int(samples), fold, device, target))

    cache, run = cards(), _run()
    found: dict[tuple, Scorecard] = {}
    for request in chosen:
        card = cache.get(request.key)
        if card is None and run is not None:  # evicted by other sessions: this session's job still holds it
            card = next((s.result for s in run.job.snapshot() if s.status == DONE and s.key == request.key), None)
        if card is not None:
            found[request.key] = card
    missing = [r for r in chosen if r.key not in found]
    busy = run is not None and not run.job.finished
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button("Score the maps", type="primary", key="score_start", disabled=busy or not missing,
                  help="Runs in the background; you can cancel. Each network gets its card."):
        pictures = [images[name][1] for name in picked_images]
        tasks = [_task(r, pictures, device, target, cache) for r in missing]
        what = (f"{len(picked_images)} image{'s' * (len(picked_images) > 1)} × {len(methods)} "
                f"method{'s' * (len(methods) > 1)} × {len(metrics)} measure{'s' * (len(metrics) > 1)}")
        job = Job(tasks, name="score", alive=widgets.session_watch(RECONNECT_GRACE_S), heavy=True)
        st.session_state[_RUN] = ScoreRun(job, [r.key for r in missing], what)
        job.start()
        st.rerun()  # drawn again with the button off and the progress polled
    if busy:
        row.caption("Scoring in the background: the rest of the page stays usable.")
    elif not missing:
        row.caption("Scored: the card" + ("s are" if len(chosen) > 1 else " is") + " below (kept on this server "
                    "for these images, networks and settings).")
    _live({r.key for r in chosen})

    shown = [(r, found[r.key]) for r in chosen if r.key in found]
    if not shown:
        if not busy:
            st.info("Press **Score the maps** to measure the chosen methods on the chosen images.")
        return
    if len(shown) == 1:
        _card(*shown[0])
    else:
        for tab, (request, card) in zip(st.tabs([r.label for r, _ in shown]), shown):
            with tab:
                _card(request, card)


def _live(keys: set | None) -> None:
    """Progress and Cancel of this session's scoring, redrawn every POLL_S by a fragment; the whole page
    reruns when it ends. After it: what failed or was cancelled, for the cards now chosen."""
    run = _run()
    polling = run is not None and not run.job.finished

    def live() -> None:
        run = _run()
        if run is None:
            return
        if polling and run.job.finished:
            st.rerun()  # the whole page: the cards are drawn, and the polling stops
        states = run.job.snapshot()
        if not run.job.finished:
            current = next((s for s in states if s.status not in (DONE, FAILED, CANCELLED)), states[-1])
            c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
            done, position = run.job.progress(), run.job.position
            if position is not None:  # waiting in the server's line for heavy work
                c1.progress(0.0, text=f"{wait_message(position)}; waited {duration(run.job.elapsed)}")
            else:
                c1.progress(done, text=f"Scoring {run.what}: {current.label.removeprefix('Scorecard ')}, "
                                       f"{done:.0%}, {duration(run.job.elapsed)} so far")
            c2.button("Cancel", key="score_cancel", on_click=run.job.cancel, disabled=run.job.cancel_requested,
                      help="Stops at the next forward pass; a card already finished (another network) is kept.")
            return
        for state in states:
            if keys is None or state.key not in keys:
                continue
            if state.status == FAILED:
                st.error(f"{state.label} failed: {state.error}", icon=":material/warning:")
            elif state.status == CANCELLED:
                why = " (the browser tab was closed)" if run.job.abandoned else ""
                st.warning(f"{state.label} was cancelled after {duration(run.job.elapsed)}{why}.",
                           icon=":material/stop_circle:")

    st.fragment(run_every=POLL_S if polling else None)(live)()


def _card(request: Request, card: Scorecard) -> None:
    """One network's card: the table, how to read it, the curves, the cascade, the notes and the JSON."""
    tag = _digest(repr(request.key))
    targets = ", ".join(dict.fromkeys(str(label if label is not None else t)
                                      for t, label in zip(card.targets, card.target_labels)))
    st.markdown(f"**{request.label}** · {card.network} · class {targets} · {card.device} · "
                f"{duration(card.seconds)}")
    # a static table: a few rows, every cell read whole (the marks and spreads), nothing to sort
    st.table(pd.DataFrame(scorecard_rows(card)), hide_index=True)
    n = len(card.images)
    st.caption(f"{BEST} the best method of each measure; ↓ lower is better, ↑ higher is better. "
               + (f"Mean ± standard deviation over the {n} images. " if n > 1 else "One image: no spread. ")
               + ("Random order (chance): the area of random pixel orders, the level a faithful map must beat."
                  if card.chance else ""))
    with st.popover("What the measures mean"):
        for name in card.metrics:
            metric = METRICS[name]
            st.markdown(f"**{metric.title}** ({metric.family}, {metric.direction} is better): {metric.summary}. "
                        f"*{metric.source}*")
    if any(m in card.metrics for m in ("deletion", "insertion")) and card.curves:
        st.plotly_chart(curves_figure(card), width="stretch", key=f"score_curves_{tag}")
    if "randomization" in card.metrics and card.cascade_maps:
        st.plotly_chart(cascade_figure(card), width="stretch", key=f"score_cascade_{tag}", theme=None,
                        config={"displayModeBar": False})
        st.caption(cascade_caption(card))
    notes = list(card.notes)
    for method, said in card.method_notes.items():
        notes += [f"{get_method(method).title}: {note}" for note in said]
    notes += [f"{get_method(r.method).title}, {METRICS[r.metric].title}: {r.note}" for r in card.rows if r.note]
    for note in dict.fromkeys(notes):
        st.caption(note)
    maps = ", ".join(f"{get_method(m).title} {duration(s)}" for m, s in card.map_seconds.items())
    st.caption(f"Made in {duration(card.seconds)} on {card.device} (the maps: {maps}).")
    st.download_button("Download the scorecard (JSON)", json.dumps(card.to_dict(), indent=1, default=str),
                       file_name=f"scorecard_{card.network.split()[0]}.json", mime="application/json",
                       key=f"score_json_{tag}")
