"""Classify & Explain: top-5 of both networks on your images, and why, with Captum.

The explanations run off the script run, on a job thread (:mod:`explorer.jobs`); a fragment polls the
job, draws each map as it finishes and offers Cancel, so the page stays usable. The job is heavy work: it
first waits for a free place in the server's line (:func:`explorer.jobs.heavy_line`), saying its place. The
job and its maps belong to the session and are dropped when the mode, the networks or the image they were
made for change. The networks themselves are not the page's: see :func:`_let_go`.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import plotly.graph_objects as go
import streamlit as st
import torch

from explorer.devices import DEVICE_LABELS, PRECISION_NAMES
from explorer.errors import ExplorerError
from explorer.explain import (
    SCALES,
    SIGNS,
    EmptyMapError,
    comparison_figure,
    default_layer,
    get_method,
    heatmap_image,
    layer_choices,
    method_names,
    npy_bytes,
    overlay_image,
    png_bytes,
    render,
    resolve_target,
    scale_maps,
)
from explorer.explain.api import explain_decoded
from explorer.explain.estimate import Passes, count_passes, estimate_seconds, seconds_per_unit
from explorer.explain.views import DEFAULT_SCALE, SCALE_LABELS, Placeholder, default_sign, scale_note
from explorer.format import duration
from explorer.infer import (
    DecodedImage,
    ImageError,
    available_devices,
    classify,
    decode_image,
    list_samples,
    predict,
)
from explorer.infer.images import EXTENSIONS
from explorer.jobs import CANCELLED, DONE, FAILED, PENDING, RUNNING, Job, Task, wait_message
from explorer.lab import digits_samples
from explorer.ui import graphs, models, scorecard, session, widgets

POLL_S = 1.0  # how often the running explanation's progress is redrawn
RECONNECT_GRACE_S = 30  # a session gone this long (tab closed, not a network blip) stops its explanation
SIGN_LABELS = {"default": "Each method's usual view", "signed": "Signed: for (red) and against (blue) the class",
               "absolute": "Magnitude: how much, either way", "positive": "Positive: for the class only"}
# method options offered on the page (the long methods' cost knobs); defaults come from the methods
PAGE_OPTIONS = {"ig": ("steps", "internal_batch_size"), "smoothgrad": ("nt_samples", "nt_samples_batch_size"),
                "occlusion": ("window", "stride", "perturbations_per_eval")}
OPTION_LABELS = {"steps": "path points (steps)", "internal_batch_size": "points per pass",
                 "nt_samples": "noisy samples", "nt_samples_batch_size": "samples per pass",
                 "window": "patch side (px, empty: auto)", "stride": "stride (px, empty: auto)",
                 "perturbations_per_eval": "patches per pass"}


@dataclass
class Cell:
    """One map of the grid: which network and method, its layer, and the time it should take."""

    network: str
    weights: str
    method: str
    title: str
    layer: str | None
    passes: Passes
    estimate_s: float | None


@dataclass
class ExplainRun:
    """An explanation job and what it was made for (``context``: mode, networks, image, device) and with
    (``settings``: methods, layers, target, options)."""

    job: Job
    cells: list[Cell]
    context: tuple
    settings: tuple
    image: str
    device: str
    calibrated: set = field(default_factory=set)
    figure: tuple | None = None  # (what it shows, the plotly figure): made again only when that changes
    preview: tuple | None = None  # (what it shows, PNG bytes per finished map) for the running view


def _about(s: float) -> str:
    """An estimated duration: "under a second", else as :func:`_seconds`."""
    return "under a second" if s < 1 else duration(s)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


st.title("Classify & Explain")
current = session.current_spec()

# -- networks --------------------------------------------------------------------------------------
default_mode, why_default = models.default_mode()
mode = st.segmented_control("Weights", models.MODES, default=default_mode, key="cls_mode", required=True) \
    or default_mode
if why_default and mode == models.DIGITS:
    st.caption(why_default)
choices: list[models.Choice] = []
if mode in (models.IMAGENET, models.RANDOM):
    options = models.imagenet_networks(current)
    picked = st.multiselect("Networks", list(options), default=list(options)[:2], key="cls_networks")
    weights = "imagenet" if mode == models.IMAGENET else "random"
    choices = [models.Choice(name, options[name], weights) for name in picked]
elif mode == models.DIGITS:
    choices = [models.digits_choice()]
    st.caption(models.shipped_caption())
else:
    upload = st.file_uploader("Checkpoint (.safetensors from the Lab or the CLI, or a .pth/.pt state dict)",
                              type=["safetensors", "pth", "pt"], key="cls_ckpt")
    if upload is not None:
        try:
            path = models.saved_upload(upload.getvalue(), upload.name)
        except ExplorerError as exc:
            st.error(f"{upload.name}: {exc}", icon=":material/warning:")
        else:
            spec_yaml = None if upload.name.endswith(".safetensors") else current.to_yaml()
            choices = [models.Choice(upload.name, spec_yaml, path)]
            if spec_yaml:
                st.caption(f"A .pth file carries no spec: it is loaded into the sidebar's network "
                           f"({models.network_name(current.name)}).")

loaded = []


def _let_go() -> None:
    """Drop the page's references to its networks; called wherever the run ends. The networks live in
    explorer.weights' byte-bounded cache, and this page's globals outlive the run (its fragment and its
    widgets' functions keep them, as long as the session lasts): a network a global still named would stay
    loaded past its eviction, once per session."""
    loaded.clear()
    for name in ("model", "first_model"):
        globals().pop(name, None)


for choice in choices:
    try:
        model, missing = models.load(choice)
    except ExplorerError as exc:
        st.error(f"{choice.label}: {exc}", icon=":material/warning:")
        continue
    if missing:
        st.warning(f"**{choice.label} runs with random weights** (its predictions mean nothing). {missing}",
                   icon=":material/inventory_2:")
    for note in model.notes:
        if not (missing and model.is_random):  # the warning above already says it
            st.caption(f"{choice.label}: {note}")
    loaded.append((choice, model))

with st.expander("Preprocessing and device"):
    for choice, model in loaded:
        st.markdown(f"**{choice.label}** ({model.weights} weights): {model.preprocess.describe()}")
    c1, c2 = st.columns(2)
    device = c1.selectbox("Device", ["auto", *available_devices()], key="cls_device",
                          format_func=lambda d: DEVICE_LABELS.get(d, d),
                          help="Automatic: CUDA, then MPS, then the CPU. A GPU out of memory falls back to the CPU.")
    gpu = device != "cpu" and available_devices()[0] != "cpu"
    precision = c2.selectbox("Precision", list(PRECISION_NAMES) if gpu else ["fp32"], key="cls_precision",
                             help="bf16/fp16 autocast needs a GPU.")
    top = st.number_input("Top classes", 1, 20, 5, key="cls_top")

# -- images ----------------------------------------------------------------------------------------
uploads = st.file_uploader("Images", type=list(EXTENSIONS), accept_multiple_files=True,
                           key="cls_images", help="JPEG, PNG, WebP, BMP, GIF or TIFF; several at once.")
if mode == models.DIGITS:
    samples = {f"digit {label} (#{i})": image for i, (image, label) in enumerate(digits_samples(10))}
else:
    samples = {s.name: s.path for s in list_samples()}
chosen = st.pills("Or samples", list(samples), selection_mode="multi", key=f"cls_samples_{mode}")
images: list[tuple[str, bytes]] = [(u.name, u.getvalue()) for u in uploads or []]
for name in chosen or []:
    sample = samples[name]
    if hasattr(sample, "save"):  # a PIL image (digits)
        buffer = io.BytesIO()
        sample.save(buffer, format="PNG")
        images.append((f"{name}.png", buffer.getvalue()))
    else:
        images.append((name, sample.read_bytes()))


def _drop_run(reason: str | None = None) -> None:
    """Cancel and forget the explanation job (its maps were made for something no longer on the page)."""
    run = st.session_state.pop("exp_run", None)
    if run is not None:
        run.job.cancel()
        if reason and run.job.results():
            st.toast(reason)


if not loaded or not images:
    _drop_run()
    st.info("Choose at least one network and one image (upload, or click a sample).")
    _let_go()
    st.stop()


# ``_model``: the network the page loaded for ``choice`` (not hashed: ``choice`` names it). Passed in rather
# than loaded again, so that two networks too large to be cached together are not loaded a third time.
@st.cache_data(max_entries=64, show_spinner="Classifying…")
def _classify(choice: models.Choice, data: bytes, name: str, device: str, precision: str, top: int, _model):
    return classify([data], _model, device=device, precision=precision, top=top, errors="collect")


@st.cache_data(max_entries=32, show_spinner=False)
def _forward_seconds(choice: models.Choice, device: str, _model) -> float:
    """One image's forward pass through this network on this device in fp32 (as attribution runs),
    measured warm: the best of three, since a first call pays one-off set-up the many passes of an
    explanation do not."""
    model = _model
    size = model.spec.input_size
    x = torch.zeros(1, model.spec.in_channels, size, size)
    return min(predict(model, x, device=device, precision="fp32")[1].seconds for _ in range(3))


def _top_chart(labels: list[str], probabilities: list[float]) -> go.Figure:
    """Horizontal bars, best first. Class names are categories (the digits' "0"-"9" too), never numbers."""
    fig = go.Figure(go.Bar(x=probabilities, y=labels, orientation="h", text=[f"{p:.1%}" for p in probabilities],
                           textposition="auto", hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(height=70 + 30 * len(labels), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], tickformat=".0%", title=None),
                      yaxis=dict(type="category", categoryorder="array", categoryarray=labels,
                                 autorange="reversed", title=None, automargin=True))
    return fig


def _unique(labels: list[str], indices: list[int]) -> list[str]:
    """Class names as bar labels; a name two classes share (ImageNet has a few) gets its index."""
    return [f"{label} (class {i})" if labels.count(label) > 1 else label for label, i in zip(labels, indices)]


# -- results ---------------------------------------------------------------------------------------
decoded_ok: dict[str, tuple[bytes, DecodedImage]] = {}
for name, data in images:
    st.subheader(name)
    try:
        decoded = decode_image(data, name=name)
    except ImageError as exc:
        st.error(str(exc), icon=":material/broken_image:")
        continue
    decoded_ok[name] = (data, decoded)
    left, right = st.columns([1, 3])
    left.image(decoded.image, width="stretch")
    for note in decoded.notes:
        left.caption(note)
    for choice, model in loaded:
        result = _classify(choice, data, name, device, precision, int(top), model)
        r = result.results[0]
        right.markdown(f"**{choice.label}** · {model.weights} weights")
        if not r.ok:
            right.error(r.error)
            continue
        labels = _unique([p.label for p in r.top], [p.index for p in r.top])
        right.plotly_chart(_top_chart(labels, [p.probability for p in r.top]), width="stretch",
                           key=f"top_{name}_{choice.label}", config={"displayModeBar": False})
        right.caption(f"{result.latency_ms:,.0f} ms on {result.device} ({result.precision})")
        for note in result.notes:
            right.caption(note)

# -- explain ---------------------------------------------------------------------------------------
st.divider()
st.header("Explain")
names = list(decoded_ok)
if not names:
    _drop_run()
    st.info("None of the images could be read: upload another one to explain it.")
    _let_go()
    st.stop()
c1, c2 = st.columns([2, 3])
target_image = c1.selectbox("Image", names, key="exp_image")
methods = c2.multiselect("Methods", method_names(), default=["saliency", "gradcam"], key="exp_methods",
                         format_func=lambda m: get_method(m).title)
c1, c2 = st.columns(2)
sign = c1.selectbox("Colours", ["default", *SIGNS], key="exp_sign", format_func=SIGN_LABELS.get)
scale = c2.selectbox("Colour scale", list(SCALES), index=list(SCALES).index(DEFAULT_SCALE), key="exp_scale",
                     format_func=SCALE_LABELS.get,
                     help="Per method: each method (column) has one range, shared by the networks in it, so "
                          "networks compare and no method is washed out by another. One for all maps: methods "
                          "compare too, smooth maps look faint. Per map: no comparison. Raw values: for one "
                          "method only.")
target_text = st.text_input("Target class", "", key="exp_target", placeholder="the predicted class",
                            help="A class index or name; empty explains the predicted class.")
fold = st.toggle("Gradient maps on the folded copy", value=True, key="exp_fold",
                 help="On: Saliency, Integrated Gradients, SmoothGrad and Occlusion run on a copy with the batch "
                      "norms folded into the convs (the same function, less work). Off: on the model as built.")

layers: dict[str, str] = {}
if any(get_method(m).uses_layer for m in methods):
    for choice, model in loaded:
        spec_layers = model.layers
        shapes = {c.name: c.out_shape for c in layer_choices(spec_layers)}
        options = list(shapes)
        key = f"exp_layer_{choice.label}"
        picked = st.session_state.get(f"{key}_clicked")
        default = picked if picked in options else default_layer(spec_layers)
        layers[choice.label] = st.selectbox(f"Grad-CAM layer of {choice.label}", options,
                                            index=options.index(default), key=f"{key}_{default}",
                                            format_func=lambda n, shapes=shapes:
                                            f"{n} ({shapes[n][1]}×{shapes[n][2]} map)",
                                            help="Default: the last feature map fine enough to localize "
                                                 "(at least 4 pixels a side).")
    with st.expander("Pick the Grad-CAM layer on the graph"):
        first, first_model = loaded[0]
        clicked = graphs.flow_graph(first_model.spec, key="exp_graph", default_level="layer", selectable=True)
        if clicked and clicked != st.session_state.get(f"exp_layer_{first.label}_clicked"):
            st.session_state[f"exp_layer_{first.label}_clicked"] = clicked
            st.rerun()

method_options: dict[str, dict] = {m: {} for m in methods}
long_methods = [m for m in methods if m in PAGE_OPTIONS]
if long_methods:
    with st.expander("Cost of the long methods"):
        for m in long_methods:
            declared = {o.name: o for o in get_method(m).options}
            names_here = PAGE_OPTIONS[m]
            # two per row at most: the labels stay whole on a narrow screen
            cols = [col for start in range(0, len(names_here), 2) for col in st.columns(2)][:len(names_here)]
            for col, option_name in zip(cols, names_here):
                option = declared[option_name]
                value = col.number_input(f"{get_method(m).title}: {OPTION_LABELS[option_name]}",
                                         min_value=int(option.minimum or 1),
                                         max_value=int(option.maximum) if option.maximum else None,
                                         value=option.default, step=1, key=f"exp_opt_{m}_{option_name}",
                                         help=option.help)
                if value is not None:
                    method_options[m][option_name] = int(value)

data, decoded = decoded_ok[target_image]
target: int | None = None
if target_text.strip():
    try:  # the core's own parser (an index or a class name), once per network: a typo shows here, not per map
        targets = {resolve_target(target_text, len(model.classes), model.classes) for _, model in loaded}
    except ExplorerError as exc:
        st.error(f"Target class: {exc}", icon=":material/warning:")
        _let_go()
        st.stop()
    if len(targets) > 1:
        st.error("Target class: the networks number their classes differently; give the class by name "
                 "for one network at a time.", icon=":material/warning:")
        _let_go()
        st.stop()
    target = targets.pop()
context = (mode, tuple((c.label, c.spec_yaml and _digest(c.spec_yaml.encode()), c.weights) for c, _ in loaded),
           target_image, _digest(data), device)
settings = (tuple(methods), tuple(sorted(layers.items())), target,
            tuple((m, tuple(sorted(o.items()))) for m, o in method_options.items()), fold)

run: ExplainRun | None = st.session_state.get("exp_run")
if run is not None and run.context != context:
    _drop_run("The maps were for another image or network: cleared.")
    run = None

# the time per forward pass: measured on the last long explanation of that network, else measured warm
speeds: dict = st.session_state.setdefault("exp_speed", {})
cells: list[Cell] = []
plan_error = None
for choice, model in loaded:
    x = model.inputs([decoded.image])
    for m in methods:
        method = get_method(m)
        try:
            passes = count_passes(m, x, target=target, **method_options[m])
        except ExplorerError as exc:
            plan_error = f"{method.title}: {exc}"
            continue
        per_unit = speeds.get((choice.label, choice.weights, device))
        if per_unit is None:
            per_unit = _forward_seconds(choice, device, model)
        layer = layers.get(choice.label) if method.uses_layer else None
        cells.append(Cell(choice.label, choice.weights, m, method.title, layer, passes,
                          estimate_seconds(passes, per_unit)))
if plan_error:
    st.error(plan_error, icon=":material/warning:")
known = [c.estimate_s for c in cells if c.estimate_s is not None]
if cells and known:
    slowest = max((c for c in cells if c.estimate_s is not None), key=lambda c: c.estimate_s)
    measured = any((c.network, c.weights, device) in speeds for c in cells)
    st.caption(f"Estimated time: about **{_about(sum(known))}** for {len(cells)} map{'s' * (len(cells) > 1)} "
               f"(the longest: {slowest.title} on {slowest.network}, about {_about(slowest.estimate_s)}; "
               f"{slowest.passes.forward:,} image passes). From "
               + ("the speed of your last explanations" if measured else "each network's forward time")
               + " measured on this device.")

running = run is not None and not run.job.finished
if st.button("Explain", type="primary", key="explain", disabled=not methods or not cells or running,
             help="Runs in the background: the maps appear one by one, and you can cancel."):
    _drop_run()

    def _task(choice: models.Choice, model, cell: Cell) -> Task:
        def work(report):
            return explain_decoded(model, decoded, cell.method, layer=cell.layer, target=target, device=device,
                                   progress=report, model_name=choice.label, fold=fold,
                                   **method_options[cell.method])
        return Task(f"{cell.title} on {cell.network}", work, key=cell)

    by_label = dict(loaded)
    by_choice = {c.label: c for c, _ in loaded}
    job = Job([_task(by_choice[c.network], by_label[by_choice[c.network]], c) for c in cells], name="explain",
              alive=widgets.session_watch(RECONNECT_GRACE_S), heavy=True)
    del by_label, by_choice  # the job holds the networks while it runs, the page's globals must not after
    run = ExplainRun(job, cells, context, settings, target_image, device)
    st.session_state["exp_run"] = run
    job.start()
    running = True

if run is not None and run.settings != settings:
    st.info("These maps were made with other settings (methods, layers, target, cost or folding): press "
            "**Explain** to update them.", icon=":material/info:")


def _status_line(cell: Cell, state) -> str:
    """One line per map: what it is and where it stands (words first, so they read without colour)."""
    what = f"{cell.title} on {cell.network}"
    if state.status == DONE:
        r = state.result
        said = f"target {r.target_label or r.target}"
        if r.target_probability is not None:
            said += f" ({r.target_probability:.1%})"
        where = f" · layer {r.layer}" if r.layer else ""
        notes = "".join(f" · {n}" for n in r.notes)
        return f"**Done** · {r.model} · {r.title}: {said}{where} · {duration(r.seconds)}{notes}"
    if state.status == RUNNING:
        left = ""
        if state.progress > 0.05:
            left = f", about {duration(max(0.0, state.seconds / state.progress - state.seconds))} left"
        return f"**Running** · {what}: {state.progress:.0%} ({duration(state.seconds)}{left})"
    if state.status == PENDING:
        return f"**Waiting** · {what}" + (f" (about {_about(cell.estimate_s)})" if cell.estimate_s else "")
    if state.status == FAILED:
        return f"**Failed** · {what}: {state.error}"
    return f"**Cancelled** · {what}"


def _placeholder_text(state) -> str:
    # no percentage here: the pictures change only when a map arrives (the lines carry the progress)
    return {PENDING: "waiting", RUNNING: "running…", FAILED: f"failed: {state.error}",
            CANCELLED: "cancelled"}[state.status]


def _show_progress(run: ExplainRun, states) -> None:
    """Progress, Cancel and one line per map (the part a fragment redraws while the job runs)."""
    job = run.job
    weights = [c.estimate_s or 1.0 for c in run.cells]
    counts = job.counts()
    if not job.finished:
        c1, c2 = st.columns([4, 1])
        position = job.position
        if position is not None:  # waiting in the server's line for heavy work
            c1.progress(0.0, text=f"{wait_message(position)}; waited {duration(job.elapsed)}")
        else:
            c1.progress(job.progress(weights), text=f"Explaining {run.image}: {counts[DONE]} of {len(states)} "
                                                    f"maps done, {duration(job.elapsed)} so far")
        c2.button("Cancel", key="exp_cancel", on_click=job.cancel, disabled=job.cancel_requested,
                  help="Stops after the current forward pass; the maps already made stay.")
    elif counts[CANCELLED]:
        why = " (the browser tab was closed)" if job.abandoned else ""
        st.warning(f"Cancelled after {duration(job.elapsed)}{why}: {counts[DONE]} of {len(states)} maps made.",
                   icon=":material/stop_circle:")
    else:
        st.success(f"{counts[DONE]} of {len(states)} maps made in {duration(job.elapsed)}.",
                   icon=":material/check_circle:")
    for cell, state in zip(run.cells, states):
        st.caption(_status_line(cell, state))
        if state.status == DONE and cell.passes.units >= 10 and id(cell) not in run.calibrated:
            # a long map says how fast this network really is here: later estimates use it
            per_unit = seconds_per_unit(state.result.seconds, cell.passes)
            if per_unit is not None:
                st.session_state.setdefault("exp_speed", {})[(cell.network, cell.weights, run.device)] = per_unit
            run.calibrated.add(id(cell))


def _preview(run: ExplainRun, states) -> None:
    """The maps finished so far, while the job runs: networks in rows, methods in columns, each picture
    on its method's colour range (as in the final figure). Plain images, kept as PNG: a poll re-sends
    only their addresses, so watching costs the explanation almost nothing."""
    chosen_sign = None if sign == "default" else sign
    key = (tuple(s.status for s in states), chosen_sign, scale)
    if run.preview is None or run.preview[0] != key:
        done = [(i, state.result) for i, state in enumerate(states) if state.status == DONE]
        pictures: dict[int, bytes | str] = {}
        if done:
            scaled = scale_maps([r for _, r in done], sign=chosen_sign, scale=scale)
            for (i, r), s in zip(done, scaled):
                try:
                    pictures[i] = png_bytes(overlay_image(r.image, s) if r.image is not None else heatmap_image(s))
                except EmptyMapError as exc:
                    pictures[i] = str(exc)
        run.preview = (key, pictures)
    pictures = run.preview[1]
    titles = list(dict.fromkeys(c.title for c in run.cells))
    for network in dict.fromkeys(c.network for c in run.cells):
        st.markdown(f"**{network}**")
        cols = st.columns(len(titles))
        for i, (cell, state) in enumerate(zip(run.cells, states)):
            if cell.network != network:
                continue
            col = cols[titles.index(cell.title)]
            what = cell.title + (f" · layer {cell.layer}" if cell.layer else "")
            picture = pictures.get(i)
            if isinstance(picture, bytes):
                col.image(picture, caption=what, width="stretch")
            else:
                col.caption(f"{what}: {picture or _placeholder_text(state)}")


def _show_figure(run: ExplainRun, states) -> None:
    """The grid of maps with its colour bar (placeholders where a map failed or was cancelled) and how to
    read its colours: drawn once the job has ended."""
    chosen_sign = None if sign == "default" else sign
    drawn = (tuple(s.status for s in states), chosen_sign, scale)
    if run.figure is None or run.figure[0] != drawn:
        items = [state.result if state.status == DONE else
                 Placeholder(cell.network, cell.title, _placeholder_text(state), cell.layer, cell.method)
                 for cell, state in zip(run.cells, states)]
        run.figure = (drawn, comparison_figure(items, sign=chosen_sign, scale=scale))
    done = [state.result for state in states if state.status == DONE]
    st.caption(scale_note(scale, chosen_sign or default_sign(done)))
    # theme None: the overlays are coloured with the figure's own colour scale, the colour bar must match
    st.plotly_chart(run.figure[1], width="stretch", key="exp_figure", theme=None,
                    config={"displayModeBar": False})


def _show_downloads(states) -> None:
    """PNG and .npy of every finished map."""
    chosen_sign = None if sign == "default" else sign
    done = [state.result for state in states if state.status == DONE]
    if done:
        with st.expander("Downloads"):
            for i, r in enumerate(done):
                c1, c2, c3 = st.columns([3, 1, 1])
                c1.markdown(f"{r.model} · {r.title}")
                try:
                    picture = png_bytes(render(r, sign=chosen_sign))
                except EmptyMapError as exc:
                    c2.caption(str(exc))
                else:
                    c2.download_button("PNG", picture, file_name=f"{r.method}_{i}.png", key=f"png_{i}")
                c3.download_button(".npy", npy_bytes(r), file_name=f"{r.method}_{i}.npy", key=f"npy_{i}")


polling = running  # this run's view of the job: the fragment polls only while it runs


def _live() -> None:
    """While the job runs, redrawn every POLL_S: progress, Cancel, the maps finished so far, a line per map."""
    current = st.session_state.get("exp_run")
    if current is None:
        return
    if polling and current.job.finished:
        st.rerun()  # the whole page once more: the final figure, the downloads, and the polling stops
    states = current.job.snapshot()
    _show_progress(current, states)
    if not current.job.finished:
        _preview(current, states)


# Once the job has ended: the figure first, then the lines (so a line saying a map is done never shows
# before the figure that holds it), then the downloads.
final = run is not None and run.job.finished
if final:
    _show_figure(run, run.job.snapshot())
st.fragment(run_every=POLL_S if polling else None)(_live)()
if final:
    _show_downloads(run.job.snapshot())
scorecard.section(loaded, decoded_ok, target_image, device=device, target=target, options=method_options,
                  layers=layers, fold=fold)
_let_go()
