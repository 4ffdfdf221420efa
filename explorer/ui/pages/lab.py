"""Lab: train spec variants on small data and see the paper's ablations for yourself."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from explorer.cost import count_costs
from explorer.format import duration
from explorer.jobs import Cancelled, heavy_slot, wait_message
from explorer.lab import (
    DIGITS,
    AblationError,
    AblationResult,
    ImageData,
    TrainConfig,
    ablation_figure,
    load_ablation,
    load_data,
    make_variants,
    root_folders,
    run_ablation,
    train,
    trained_bytes,
    training_figure,
    under_data_root,
    unpack_zip,
)
from explorer.lab.report import variant_phrase
from explorer.lab.train import accuracy_lag_note, estimate_epoch_seconds
from explorer.spec import KNOB_HELP, KNOBS, ExplorerError, Spec, SpecError, knob_applies, load_spec, parse_spec
from explorer.spec.knobs import describe_knob
from explorer.ui import session, widgets

SHIPPED = Path(__file__).resolve().parents[3] / "docs" / "ablation" / "ablation.json"
QUICK_LIMIT = 200  # images per split for a quick check
MINI = "mini_xception"
# The sidebar's on/off design choices carry over to mini_xception; its sizes were chosen for
# the sidebar's network (or are fixed by the data), so they do not.
CARRIED = ("residual", "separable", "mid_activation", "segments")
SIZES = {"width": "a size chosen for {net}", "middle_repeats": "a size chosen for {net}",
         "input_size": "mini_xception takes 32 px", "num_classes": "the data sets the classes"}
# A network whose training batch costs at most this trains fastest on one CPU thread: measured on
# this 2-core machine under load, a quick mini_xception ablation took 12 s on one thread, 147 s on two.
SMALL_BATCH_MACS = 2e9
# The knobs an ablation here can vary, and the values it offers (the paper's Figures 9 and 10).
VARIED: dict[str, list[Any]] = {"residual": [True, False], "mid_activation": ["none", "relu", "elu"]}


def separated(text: str) -> str:
    """Thousands separators in the integers of a stored line ("1438 training" → "1,438 training")."""
    return re.sub(r"(?<![\d.,])\d{4,}(?![\d.,])", lambda m: f"{int(m.group()):,}", text)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def mini_with_sidebar_knobs(changed: dict[str, Any], sidebar: str) -> tuple[Spec, dict[str, Any], list[str]]:
    """mini_xception with the sidebar's changed knobs that make sense for it; (spec, applied, ignored phrases)."""
    spec, applied, ignored = load_spec(MINI), {}, []
    for name in (k for k in KNOBS if k in changed):
        value = changed[name]
        if name in SIZES:
            ignored.append(f"{describe_knob(name, value, short=True)} ({SIZES[name].format(net=sidebar)})")
        elif name not in CARRIED or not knob_applies(spec, name):
            ignored.append(f"{describe_knob(name, value, short=True)} (does not apply to {MINI})")
        else:
            try:
                spec = spec.with_overrides(**{name: value})
            except SpecError as exc:
                ignored.append(f"{describe_knob(name, value, short=True)} ({exc})")
            else:
                applied[name] = value
    return spec, applied, ignored


@st.cache_data(max_entries=32, show_spinner=False)
def totals_of(spec_yaml: str) -> dict[str, int]:
    """Parameters, MACs, ... of a spec (counted from the spec, cached by its YAML)."""
    return dict(count_costs(parse_spec(spec_yaml)).totals)


def describe_data(data: ImageData) -> str:
    """One line with thousands separators: source, sizes, classes, split."""
    return (f"{data.source}: {len(data.train_y):,} training and {len(data.test_y):,} test images, "
            f"{len(data.classes):,} classes, {data.input_size}×{data.input_size} px ({data.split})")


DATA_KINDS = {"digits": "Digits (scikit-learn's 8×8)", "folder": "A folder under the data root",
              "zip": "A zip of images (upload)"}
ZIP_KEY = "lab_zip"  # the session's unpacked zip (an UnpackedZip): its folder goes when the session does


def data_source(kind: str) -> tuple[str, Path | str, str | None] | None:
    """What to load for the Data choice: (cache key, folder or ``digits``, the name records use), or None
    when nothing is chosen yet. Folders come only from under the data root; a zip is unpacked into a
    private temporary folder that replaces (and removes) the session's previous one."""
    if kind == "digits":
        return DIGITS, DIGITS, None
    if kind == "folder":
        folder = st.session_state.get("lab_data_folder")
        return (f"folder:{folder}", under_data_root(folder), folder) if folder else None
    upload = st.session_state.get("lab_data_zip")
    unpacked = st.session_state.get(ZIP_KEY)
    if upload is None:
        return None
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    if unpacked is None or unpacked.digest != digest:
        if unpacked is not None:
            unpacked.cleanup()
            st.session_state.pop(ZIP_KEY)
        with st.spinner(f"Unpacking {upload.name}…"):
            unpacked = unpack_zip(data, upload.name, max_bytes=int(st.get_option("server.maxUploadSize")) * 2**20)
        st.session_state[ZIP_KEY] = unpacked
    unpacked.folder.touch()
    return f"zip:{digest}", unpacked.root, unpacked.name


def cached_data(source: tuple[str, Path | str, str | None], spec: Spec, limit: int | None) -> ImageData:
    """The data for ``spec``, loaded once per session and setting (loading the digits takes a second or two)."""
    name, folder, label = source
    key = (name, spec.input_size, spec.in_channels, limit)
    store = st.session_state.setdefault("lab_data_cache", {})
    if key not in store:
        with st.spinner(f"Loading {label or name} at {spec.input_size} px…"):
            store.clear()  # one data set at a time: a folder can be large
            store[key] = load_data(folder, input_size=spec.input_size, in_channels=spec.in_channels, limit=limit,
                                   name=label)
    return store[key]


def speed_key(spec: Spec, data: ImageData, config: TrainConfig) -> str:
    text = f"{spec.to_yaml()}|{describe_data(data)}|{config.batch_size}|{config.bn_recalibration}|{config.threads}"
    return hashlib.sha1(text.encode()).hexdigest()


def epoch_seconds(spec: Spec, data: ImageData, config: TrainConfig) -> tuple[float, str]:
    """Seconds per epoch here and how they were found: the last training of this setting, or a
    few training steps timed now (once per setting)."""
    store = st.session_state.setdefault("lab_speed", {})
    key = speed_key(spec, data, config)
    if key not in store:
        with st.spinner("Timing a few training steps of this network…"):
            store[key] = (estimate_epoch_seconds(spec, data, config), "timed on a few training steps just now")
    return store[key]


def remember_speed(spec: Spec, data: ImageData, config: TrainConfig, seconds: float) -> None:
    st.session_state.setdefault("lab_speed", {})[speed_key(spec, data, config)] = (
        seconds, "measured in your last training")


def progress_text(fraction: float, start: float, planned: float, what: str) -> str:
    """``what`` with the time spent and an estimate of the time left (planned until 10 % is done)."""
    elapsed = time.perf_counter() - start
    left = elapsed * (1 - fraction) / fraction if fraction >= 0.1 else max(0.0, planned - elapsed)
    return f"{what} · {duration(elapsed)} elapsed, about {duration(left)} left"


st.title("Lab")
st.caption("The paper's ablations are about learning, not cost: train the variants on small data and watch "
           "the curves.")

base, current = session.base_spec(), session.current_spec()
changed = session.changed_knob_values()
sidebar_is_mini = base.name == MINI
if sidebar_is_mini:
    choices = {"mini": f"{MINI} as set in the sidebar"}
else:
    choices = {"mini": MINI, "sidebar": f"{current.name}, as in the sidebar"}
c1, c2 = st.columns([3, 2])
network = c1.selectbox("Network to train", list(choices), format_func=choices.get, key="lab_network",
                       help="mini_xception has Xception's entry, middle and exit flows at 32 px, narrow and "
                            "shallow enough to train on a CPU. The sidebar's residual, separable, mid-activation and "
                            "segments knobs apply to it; its sizes (width, middle-flow blocks, input size, classes) "
                            "do not. The sidebar's own network, with all its knobs, may be too big to train here.")
kind = c2.selectbox("Data", list(DATA_KINDS), format_func=DATA_KINDS.get, key="lab_data_kind",
                    help="scikit-learn's 8×8 handwritten digits; a folder of CLASS/IMAGE files under the server's "
                         "data root; or a zip of such folders uploaded from your machine.")
if kind == "folder":
    folders = root_folders()
    if folders:
        st.selectbox("Folder (CLASS/IMAGE files, or train/ and test/ holding them)", folders, key="lab_data_folder")
    else:
        st.info("The data root has no folders yet: put image folders (CLASS/IMAGE.png) in it, then reload. It is "
                "`data/` beside app.py unless EXPLORER_DATA_ROOT (or data_root under [limits] in explorer.toml) "
                "names another folder.", icon="ℹ️")
elif kind == "zip":
    st.file_uploader("A zip of CLASS/IMAGE files (or of one folder holding them)", type=["zip"], key="lab_data_zip")
if kind != "zip" or st.session_state.get("lab_data_zip") is None:
    dropped = st.session_state.pop(ZIP_KEY, None)  # a zip no longer used: its folder goes now
    if dropped is not None:
        dropped.cleanup()

changed_phrase = _and([describe_knob(k, v, short=True) for k, v in changed.items()]) if changed else ""
if network == "mini" and not sidebar_is_mini:
    spec, applied, ignored = mini_with_sidebar_knobs(changed, base.name)
    line = f"**Trains {MINI}** ({totals_of(spec.to_yaml())['params']:,} parameters)"
    if applied:
        line += f" with the sidebar's {_and([describe_knob(k, v, short=True) for k, v in applied.items()])}"
        what = f"{MINI}, {variant_phrase(applied)}"
    else:
        what = f"{MINI} as shipped"
        line += " as shipped" + ("" if changed else ": the sidebar's residual, separable, mid-activation "
                                                    "and segments knobs apply here when you change them")
    if ignored:
        line += f"; ignored from the sidebar: {_and(ignored)}"
else:
    spec = current
    what = f"{spec.name}, {changed_phrase}" if changed else spec.name
    line = (f"**Trains {spec.name}** ({totals_of(spec.to_yaml())['params']:,} parameters) "
            + (f"with every sidebar knob: {changed_phrase}" if changed else "as set in the sidebar (no knob changed)"))
st.markdown(line + ".")

c1, c2, c3 = st.columns(3)
epochs = int(c1.number_input("Epochs", 1, 100, 10, key="lab_epochs"))
seed = int(c2.number_input("Seed", 0, 10_000, 0, key="lab_seed",
                           help="Fixes the initial weights and the order of the batches."))
lr = float(c3.number_input("Learning rate", 1e-5, 1.0, 3e-3, format="%.4f", key="lab_lr",
                           help="AdamW's peak learning rate, decayed to zero over the run (cosine)."))
quick = st.toggle("Quick check", key="lab_quick",
                  help=f"Only {QUICK_LIMIT:,} training and {QUICK_LIMIT:,} test images.")
recalibrate = st.toggle(
    "Re-estimate batch norm before each test", True, key="lab_bn",
    help="Batch norm tests with running averages of the training batches' statistics, which lag behind the "
         "weights early in training (a first-epoch test can sit near chance). On: they are re-estimated on "
         "512 training images with the current weights before each test (a forward pass, about a tenth of "
         "an epoch).")
defaults = TrainConfig()
one_thread = totals_of(spec.to_yaml())["macs"] * defaults.batch_size <= SMALL_BATCH_MACS
config = TrainConfig(epochs=epochs, seed=seed, lr=lr, threads=1 if one_thread else None,
                     bn_recalibration=defaults.bn_recalibration if recalibrate else 0)
limit = QUICK_LIMIT if quick else None

data: ImageData | None = None
per_epoch, how = 0.0, ""
try:
    source = data_source(kind)
    if source is not None:
        data = cached_data(source, spec, limit)
        per_epoch, how = epoch_seconds(spec, data, config)
except ExplorerError as exc:
    st.error(str(exc), icon="⚠️")
else:
    if data is not None:
        st.caption(f"{describe_data(data)}. About {duration(per_epoch)} per epoch here "
                   f"({how}{', on one CPU thread' if one_thread else ''}): "
                   f"{epochs:,} epoch{'s' if epochs != 1 else ''} ≈ {duration(per_epoch * epochs)}.")


def run_or_report(work, bar, stop):
    """Run ``work`` (a training or an ablation) under its progress bar and Stop button, once a place in the
    server's line for heavy work is free (the bar says the place in line meanwhile; Stop leaves the line:
    its click reruns the page, which ends this run at the bar's next update). The Stop button goes when it
    ends. A user error empties the bar and is shown; then None."""
    alive = widgets.session_watch()  # a closed tab leaves the line (None outside a served app)
    try:
        with heavy_slot(cancelled=(lambda: not alive()) if alive else (lambda: False),
                        on_wait=lambda position: bar.progress(0.0, text=wait_message(position))):
            return work()
    except Cancelled:
        bar.empty()
        return None
    except ExplorerError as exc:
        bar.empty()
        st.error(str(exc), icon="⚠️")
        return None
    finally:
        stop.empty()


train_tab, ablate_tab, saved_tab = st.tabs(["Train", "Ablate", "Saved results"])

with train_tab:
    go_col, stop_col, _ = st.columns([1, 1, 3])
    if go_col.button("Train", type="primary", key="lab_train", disabled=data is None) and data is not None:
        stop = stop_col.empty()
        stop.button("Stop", key="lab_train_stop", help="Stops the run and discards it.")
        bar = st.progress(0.0, text="Starting…")
        chart = st.empty()
        start = time.perf_counter()

        def progress(p) -> None:
            doing = (f"Epoch {p.epoch} of {p.epochs} · batch {p.batch} of {p.batches} · "
                     f"training loss {p.loss:.3f}")
            bar.progress(p.fraction, text=progress_text(p.fraction, start, per_epoch * p.epochs, doing))
            if p.phase == "epoch":
                chart.plotly_chart(training_figure(p.history, epochs=p.epochs), key=f"live_{p.epoch}",
                                   width="stretch")

        result = run_or_report(lambda: train(spec, data, config, on_progress=progress), bar, stop)
        if result is not None:
            bar.progress(1.0, text=f"Done in {duration(result.history[-1].elapsed)}: "
                                   f"test accuracy {result.test_accuracy:.2%}")
            remember_speed(spec, data, config, result.history[-1].elapsed / len(result.history))
            st.session_state["lab_last"] = {
                "history": result.history, "epochs": config.epochs, "accuracy": result.test_accuracy,
                "checkpoint": trained_bytes(result, data, command="trained in the app's Lab page"),
                "file_name": f"{result.spec.name}.safetensors",
                "notes": list(dict.fromkeys(result.notes)), "describe": describe_data(data),
                "spec_yaml": result.spec.to_yaml(), "what": what,
                "recalibrated": config.bn_recalibration > 0}
            chart.empty()
    last = st.session_state.get("lab_last")
    if last:
        history = last["history"]
        st.caption(f"Last training: {last['what']}, on {last['describe']}.")
        st.plotly_chart(training_figure(history, epochs=last["epochs"]), key="lab_result_curves", width="stretch")
        m1, m2, m3 = st.columns(3)
        m1.metric("Test accuracy", f"{last['accuracy']:.2%}", help="On the test images, after the last epoch.")
        m2.metric("Training accuracy", f"{history[-1].train_acc:.2%}",
                  help="Measured in training mode during the last epoch, while the weights still changed.")
        m3.metric("Time per epoch", duration(history[-1].elapsed / len(history)))
        lag = accuracy_lag_note(history, recalibrated=last.get("recalibrated", False))
        if lag:
            st.info(lag, icon="ℹ️")
        for note in last["notes"]:
            st.caption(f"Note: {note}")
        st.download_button("Download the checkpoint (.safetensors, carries its spec)", last["checkpoint"],
                           file_name=last["file_name"], key="lab_download")
        st.caption("Load it on the Classify & Explain page (as a weights file) to classify with it.")


def vary_choices(spec: Spec) -> dict[str, list[Any]]:
    """The knobs an ablation can vary on ``spec`` and the values it offers."""
    return {k: values for k, values in VARIED.items() if knob_applies(spec, k)}


def values_in_words(knob: str, values: list[Any]) -> str:
    """``'residual on / residual off'``: a varied knob's values as the legend names them."""
    return " / ".join(describe_knob(knob, v, short=True) for v in values)


def show_ablation(result: AblationResult, key: str) -> None:
    """The overlaid curves and the final accuracies (mean ± std over seeds)."""
    st.plotly_chart(ablation_figure(result), key=f"{key}_figure", width="stretch")
    summary = result.summary()
    uniform = len({(r.seeds, r.epochs) for r in summary}) == 1
    rows = [{"variant": variant_phrase(r.knobs) if result.vary else r.variant,
             **({} if uniform else {"seeds": r.seeds, "epochs": r.epochs}),
             "final test accuracy": f"{r.test_acc_mean:.2%} ± {r.test_acc_std:.2%}",
             "best test accuracy": f"{r.best_test_acc_mean:.2%}",
             "final test loss": f"{r.test_loss_mean:.4f} ± {r.test_loss_std:.4f}",
             "time per run": duration(r.seconds_mean)} for r in summary]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    each = (f"{summary[0].seeds:,} seed{'s' if summary[0].seeds != 1 else ''} of {summary[0].epochs:,} "
            f"epoch{'s' if summary[0].epochs != 1 else ''} per variant. ") if summary and uniform else ""
    st.caption(f"{each}Accuracy and loss after the last epoch, mean ± standard deviation over the seeds; "
               "loss is the mean cross-entropy per test image. A mid activation is one between a separable "
               "conv's depthwise and pointwise parts.")
    for note in result.notes:
        st.caption(f"Note: {note}")
    st.download_button("Download the results (JSON)", json.dumps(result.to_dict(), indent=1),
                       file_name="ablation.json", key=f"{key}_download")


with ablate_tab:
    options = vary_choices(spec)
    vary: list[tuple[str, list[Any]]] = []
    cols = st.columns([3, 1])
    cols[0].markdown("**Values to compare** (every combination is a variant)" if options else
                     f"{spec.name} has no residual connections or separable convs to vary.")
    for knob, values in options.items():
        picked = cols[0].pills(KNOB_HELP[knob], values, selection_mode="multi", default=values,
                               format_func=lambda v, k=knob: describe_knob(k, v, short=True),
                               label_visibility="collapsed", key=f"lab_vary_{knob}")
        if picked:
            vary.append((knob, [v for v in values if v in picked]))  # in the paper's order, not the clicks'
    seeds = int(cols[1].number_input("Seeds", 1, 10, 3, key="lab_seeds",
                                     help="Each variant trains once per seed; the curves show mean ± std."))
    runs = len(make_variants(vary))
    total = runs * seeds
    estimate = f": about {duration(total * epochs * per_epoch)} here" if per_epoch else ""
    varied = (f"Variants of {spec.name}: {' × '.join(values_in_words(k, values) for k, values in vary)}, "
              "overriding the sidebar's; everything else as above.") if vary else "Pick a value to vary."
    st.caption(f"{runs:,} variant{'s' if runs != 1 else ''} × {seeds:,} seed{'s' if seeds != 1 else ''} = "
               f"{total:,} training{'s' if total != 1 else ''} of {epochs:,} epoch{'s' if epochs != 1 else ''}"
               f"{estimate}. {varied}")
    go_col, stop_col, _ = st.columns([2, 1, 3])
    go = go_col.button("Run the ablation", type="primary", key="lab_ablate", disabled=not vary or data is None)
    if go and vary and data is not None:
        stop = stop_col.empty()
        stop.button("Stop", key="lab_ablate_stop", help="Stops the ablation and keeps the runs that finished.")
        bar = st.progress(0.0, text="Starting…")
        chart = st.empty()
        start = time.perf_counter()
        words = {v.label: variant_phrase(dict(v.knobs)) for v in make_variants(vary)}

        def progress(p) -> None:
            doing = (f"Run {p.run} of {p.runs}: {words.get(p.variant, p.variant)}, seed {p.seed}, "
                     f"epoch {p.train.epoch} of {p.train.epochs}")
            bar.progress(p.fraction, text=progress_text(p.fraction, start, total * epochs * per_epoch, doing))

        def keep(so_far: AblationResult) -> None:
            """After every finished run: the results kept as if stopped here (a Stop ends this script
            run, so what is in the session is what it keeps), and the curves so far."""
            if so_far.stopped:
                return
            done = len(so_far.runs)
            partial = so_far.to_dict()
            partial["stopped"] = True
            partial["notes"] = [*partial["notes"], f"stopped after {done:,} of {total:,} runs"]
            st.session_state["lab_ablation"] = partial
            if done < total:  # the last run's curves are drawn below with the table
                chart.plotly_chart(ablation_figure(so_far), key=f"ablation_live_{done}", width="stretch")

        result = run_or_report(lambda: run_ablation(spec, data, vary, seeds=range(seed, seed + seeds), config=config,
                                                    on_progress=progress, on_run=keep, limit=limit), bar, stop)
        if result is not None:
            bar.progress(1.0, text=f"Done in {duration(time.perf_counter() - start)}")
            chart.empty()
            st.session_state["lab_ablation"] = result.to_dict()
    if "lab_ablation" in st.session_state:
        show_ablation(AblationResult.from_dict(st.session_state["lab_ablation"]), "lab_ablation")

with saved_tab:
    upload = st.file_uploader("An ablation.json written by the lab", type=["json"], key="lab_upload")
    try:
        if upload is not None:
            try:
                raw = json.loads(upload.getvalue())
            except ValueError as exc:  # also bytes that are not UTF-8
                raise AblationError(f"not an ablation result: '{upload.name}' is not JSON ({exc})") from None
            saved = AblationResult.from_dict(raw)
            label = upload.name
        else:
            saved, label = load_ablation(SHIPPED), "The ablation measured for the README"
    except ExplorerError as exc:
        st.error(f"{str(exc)[:1].upper()}{str(exc)[1:]}", icon="⚠️")
    else:
        st.caption(f"{label}: {saved.spec_name} on {separated(saved.data)}"
                   + (f" — `{saved.command}`" if saved.command else ""))
        show_ablation(saved, "lab_saved")
