"""The Costs page's measured view: time every layer on a device, and the roofline of what it achieved.

A measurement runs off the script run, as a :class:`explorer.jobs.Job` on its own thread; a fragment
polls it (progress and Cancel) and reruns the page once it ends, so the page stays usable. Profiles
are kept in the session by what they measured (spec digest, device, batch, dtype, inference copy),
so flipping a knob back shows its profile again without measuring; the graph reads the same store
to colour its nodes by time. A measurement is heavy work: it waits in the server's line
(:func:`explorer.jobs.heavy_line`, with the explanations, scorecards and training), saying its place.
And one measurement runs at a time on the machine, whichever session asked for it, even where the line
has more places: two at once would time each other (a second one waits, and can be cancelled while it waits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from explorer.devices import DEVICE_LABELS, DTYPE_NAMES
from explorer.format import mib, si, si_short
from explorer.jobs import CANCELLED, DONE, FAILED, Job, Task, wait_message
from explorer.spec import Spec
from explorer.ui import session, widgets

if TYPE_CHECKING:
    from explorer.measure import Ceilings, Profile

# explorer.measure (and torch behind it) is imported when a profile is drawn or made, not with this module:
# the Architecture page reads the store through measured_for and should not pay for it.

POLL_S = 1.0  # how often a running measurement's progress is redrawn
CEILINGS_PART = 0.2  # of a task's progress bar: the device's ceilings (instant once cached), then the profile
DTYPE_LABELS = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16 (GPU)"}
_STORE, _LAST, _RUN = "measured_profiles", "measured_last", "measure_run"
_MACHINE = threading.Lock()  # held by the measurement under way, in any session of this server


@dataclass(frozen=True)
class Settings:
    """How to measure: the device (a name from :data:`explorer.devices.DEVICES`), batch, dtype, whether
    to time the inference-only copy, and how many timed runs."""

    device: str = "auto"
    batch: int = 1
    dtype: str = "float32"
    fast: bool = False
    repeats: int = 10

    def key(self, spec: Spec) -> tuple:
        """What a profile is kept under: the spec's digest and the settings that change what is timed."""
        return (spec.digest(), self.device, self.batch, self.dtype, self.fast)

    def describe(self) -> str:
        """``CPU, batch 1, float32`` (automatic: the device it picks here)."""
        device = DEVICE_LABELS.get(self.device, self.device)
        if self.device == "auto":
            device = f"{DEVICE_LABELS.get(devices()[1], devices()[1])} (automatic)"
        return f"{device}, batch {self.batch}, {self.dtype}" + (", inference copy" if self.fast else "")


@dataclass(frozen=True)
class Measured:
    """A profile, the spec it timed, that configuration in words (as the sidebar said it) and the settings."""

    profile: Profile
    spec: Spec
    label: str
    settings: Settings


@dataclass
class MeasureRun:
    """A running (or ended) measurement: ``purpose`` is ``profile`` (one spec), ``compare`` (A and B) or
    ``ceilings``; ``specs`` are what its tasks profile, each with its configuration in words."""

    job: Job
    purpose: str
    settings: Settings
    specs: list[tuple[Spec, str]] = field(default_factory=list)
    harvested: bool = False


# -- settings --------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def devices() -> list[str]:
    """The device choices: automatic, then what this machine has (imports torch, once per server)."""
    from explorer.infer import available_devices

    return ["auto", *available_devices()]


def dtypes(device: str) -> list[str]:
    """The dtypes a measurement may use on ``device``: float16 only on a GPU."""
    gpu = device not in ("cpu",) and (device != "auto" or devices()[1] != "cpu")
    return list(DTYPE_NAMES) if gpu else [d for d in DTYPE_NAMES if d != "float16"]


def controls() -> Settings:
    """Device, batch, dtype, inference copy and repeats, in one row; the chosen :class:`Settings`."""
    row = st.container(horizontal=True, gap="small", vertical_alignment="bottom")
    device = row.selectbox("Device", devices(), key="meas_device", width=230,
                           format_func=lambda d: DEVICE_LABELS.get(d, d),
                           help="Automatic: CUDA, then MPS, then the CPU.")
    options = dtypes(device)
    if st.session_state.get("meas_dtype") not in options:
        st.session_state["meas_dtype"] = "float32"
    dtype = row.selectbox("Precision", options, key="meas_dtype", width=170, format_func=DTYPE_LABELS.get,
                          help="The weights and activations are cast to this dtype (no autocast).")
    batch = row.number_input("Batch", 1, 256, 1, key="meas_batch", width=110,
                             help="Images per forward pass; the counted MACs and bytes scale with it.")
    repeats = row.number_input("Timed runs", 3, 100, 10, key="meas_repeats", width=120,
                               help="Each layer's time is the median of this many runs, after 2 warm-up runs.")
    fast = row.toggle("Inference copy", key="meas_fast",
                      help="Time the copy the app classifies with: batch norms folded into their convs, "
                           "activations in place, dropout left out. A folded layer's time is its conv's.")
    return Settings(device, int(batch), dtype, bool(fast), int(repeats))


def current_settings() -> Settings:
    """The settings as last chosen in the Measured tab (its widgets' state), or the defaults."""
    state, default = st.session_state, Settings()
    return Settings(state.get("meas_device", default.device), int(state.get("meas_batch", default.batch)),
                    state.get("meas_dtype", default.dtype), bool(state.get("meas_fast", default.fast)),
                    int(state.get("meas_repeats", default.repeats)))


# -- the store -------------------------------------------------------------------------------------


def _store() -> dict[tuple, Measured]:
    return st.session_state.setdefault(_STORE, {})


def _put(key: tuple, entry: Measured) -> None:
    store = _store()
    store.pop(key, None)  # newest last
    store[key] = entry


def measured_for(spec: Spec) -> Measured | None:
    """The newest profile of ``spec`` in this session, whatever its settings (for the graph's colours)."""
    digest = spec.digest()
    return next((m for key, m in reversed(_store().items()) if key[0] == digest), None)


def _run() -> MeasureRun | None:
    return st.session_state.get(_RUN)


def running() -> bool:
    """Whether a measurement of this session is under way."""
    run = _run()
    return run is not None and not run.job.finished


def harvest() -> None:
    """Keep what an ended measurement made: its profiles in the store, new ceilings in every profile
    measured on that device in that dtype. Once per run."""
    run = _run()
    if run is None or not run.job.finished or run.harvested:
        return
    run.harvested = True
    for i, state in enumerate(run.job.snapshot()):
        if state.status != DONE:
            continue
        if run.purpose == "ceilings":
            _new_ceilings(state.result)
        else:
            spec, label = run.specs[i]
            _put(run.settings.key(spec), Measured(state.result, spec, label, run.settings))
            if run.purpose == "profile":
                st.session_state[_LAST] = run.settings.key(spec)


def _new_ceilings(new: Ceilings) -> None:
    for key, entry in list(_store().items()):
        c = entry.profile.ceilings
        if c.device == new.device and c.dtype == new.dtype:
            _store()[key] = dataclasses.replace(entry, profile=dataclasses.replace(entry.profile, ceilings=new))


# -- the job ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _the_machine(report):
    """Hold the machine for one measurement; while another session's runs, wait (reporting no progress, so
    a Cancel still stops the wait)."""
    while not _MACHINE.acquire(timeout=0.2):
        report(0.0)
    try:
        yield
    finally:
        _MACHINE.release()


def _profile_task(label: str, spec: Spec, s: Settings) -> Task:
    def work(report):
        from explorer import measure  # looked up at run time: a test may stand in for the profiler

        with _the_machine(report):
            ceilings = measure.ceilings(s.device, s.dtype, progress=lambda f: report(CEILINGS_PART * f))
            return measure.profile(spec, batch=s.batch, device=s.device, dtype=s.dtype, repeats=s.repeats,
                                   fast=s.fast, ceilings=ceilings,
                                   progress=lambda f: report(CEILINGS_PART + (1 - CEILINGS_PART) * f))
    return Task(label, work)


def _ceilings_task(s: Settings) -> Task:
    def work(report):
        from explorer import measure

        with _the_machine(report):
            return measure.ceilings(s.device, s.dtype, remeasure=True, progress=report)
    return Task(f"ceilings of {DEVICE_LABELS.get(s.device, s.device)} in {s.dtype}", work)


def start(purpose: str, settings: Settings, specs: list[tuple[Spec, str]] = ()) -> None:
    """Start measuring: each ``(spec, label)`` profiled in turn, or (``ceilings``) the device's ceilings."""
    old = _run()
    if old is not None:
        old.job.cancel()
        harvest()
    if purpose == "ceilings":
        tasks = [_ceilings_task(settings)]
    else:
        tasks = [_profile_task(label, spec, settings) for spec, label in specs]
    run = MeasureRun(Job(tasks, name="measure", alive=widgets.session_watch(), heavy=True), purpose, settings,
                     list(specs))
    st.session_state[_RUN] = run
    run.job.start()


def live(purposes: tuple[str, ...], key: str) -> None:
    """Progress and Cancel of a running measurement for one of ``purposes``, redrawn every POLL_S by a
    fragment; the whole page reruns when it ends. After it: why it stopped, if it did not finish."""
    polling = running() and _run().purpose in purposes

    def _live() -> None:
        run = _run()
        if run is None or run.purpose not in purposes:
            return
        if polling and run.job.finished:
            st.rerun()  # the whole page: the new profile is drawn, and the polling stops
        states = run.job.snapshot()
        if not run.job.finished:
            current = next((s for s in states if s.status not in (DONE, FAILED, CANCELLED)), states[-1])
            c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
            position = run.job.position
            if position is not None:  # waiting in the server's line for heavy work
                c1.progress(0.0, text=f"{wait_message(position)}; waited {run.job.elapsed:.1f} s")
            else:
                c1.progress(run.job.progress(), text=f"Measuring {current.label} on "
                                                     f"{run.settings.describe()}: {run.job.progress():.0%}, "
                                                     f"{run.job.elapsed:.1f} s so far")
            c2.button("Cancel", key=f"{key}_cancel", on_click=run.job.cancel, disabled=run.job.cancel_requested,
                      help="Stops at the next timed run; a profile already finished (A of A and B) is kept.")
            return
        for state in states:
            if state.status == FAILED:
                st.error(f"Measuring {state.label} failed: {state.error}", icon=":material/warning:")
            elif state.status == CANCELLED:
                why = " (the browser tab was closed)" if run.job.abandoned else ""
                st.warning(f"Measuring {state.label} was cancelled{why}.", icon=":material/stop_circle:")

    st.fragment(run_every=POLL_S if polling else None)(_live)()


# -- the views -------------------------------------------------------------------------------------


def _when(value: Any) -> str:
    """A ceilings' ``measured_at`` (ISO 8601, UTC) for people: ``2026-12-02 11:58 UTC``."""
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.utcoffset() == datetime.timedelta(0) else "")


def ceilings_caption(c: Ceilings) -> str:
    """Whose ceilings, measured when, and the datasheet's numbers when they are known."""
    text = f"Ceilings of **{c.device_name}** ({c.device}, {c.dtype}), measured {_when(c.measured_at)}."
    sheet = [f"peak {si_short(c.datasheet_flops, 'FLOP/s')}" if c.datasheet_flops else "",
             f"bandwidth {si_short(c.datasheet_bandwidth, 'B/s')}" if c.datasheet_bandwidth else ""]
    sheet = [s for s in sheet if s]
    if sheet:
        text += f" Datasheet (dashed on the roofline): {', '.join(sheet)}" + (
            f" ({c.datasheet_source})." if c.datasheet_source else ".")
    return text


def totals(profile: Profile, *, busy: bool) -> bool:
    """The measured forward and the sum of the layers; under them the device's ceilings with when they were
    measured, and a button to measure them again. Returns whether that button was pressed."""
    from explorer.measure.figures import ms

    row = st.container(horizontal=True, gap="medium")  # wraps on a narrow screen
    row.metric("Forward (measured)", ms(profile.forward_seconds), width=200,
               help=f"Median of {profile.repeats} end-to-end runs of batch {profile.batch}, no clock marks.")
    row.metric("Sum of the layers", ms(profile.layer_seconds), width=200,
               help="Each layer's median time, added up. It differs from the plain forward by the clock marks "
                    f"and by what runs between the layers (the marked run took {ms(profile.instrumented_seconds)}).")
    c = profile.ceilings
    st.caption(ceilings_caption(c))
    row = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
    row.metric("Peak compute", si_short(c.peak_flops, "FLOP/s"), width=230,
               help="Measured: the fastest large matrix product or convolution in this dtype on this device "
                    "(the compute roof).")
    row.metric("Memory bandwidth", si_short(c.bandwidth, "B/s"), width=200,
               help="Measured: a large copy on this device, bytes read and written (the memory roof's slope).")
    row.metric("Ridge (FLOP/byte)", f"{c.ridge:.3g}", width=170,
               help="Peak ÷ bandwidth: a layer doing fewer FLOPs per byte than this cannot reach the peak.")
    return row.button("Re-measure ceilings", key="remeasure_ceilings", disabled=busy,
                      help="Measure the device's peak FLOP/s and bandwidth again (they are kept per device and "
                           "dtype); the shown profiles are drawn against the new ones.")


def layer_table(profile: Profile) -> None:
    """Every measured layer: time, share, achieved FLOP/s and bytes/s, intensity, bound, counted MACs."""
    from explorer.measure.figures import layer_rows

    rows = pd.DataFrame(layer_rows(profile)).sort_values("time_ms", ascending=False)
    number = st.column_config.NumberColumn
    columns = ["name", "kind", "flow", "time_ms", "share", "gflops", "gbytes", "intensity", "bound", "macs"]
    if profile.fast:
        columns.append("absorbed")
    st.dataframe(rows[columns], hide_index=True, width="stretch", height=420, key="measured_layers",
                 column_config={"name": "layer (module path)", "time_ms": number("time (ms)", format="%.4f"),
                                "share": number("share of time", format="percent"),
                                "gflops": number("GFLOP/s", format="%.3g"), "gbytes": number("GB/s", format="%.3g"),
                                "intensity": number("FLOP/byte", format="%.3g"), "bound": "bound by",
                                "macs": number("MACs (counted)", format="localized"),
                                "absorbed": "folded into it"})
    st.caption(f"{len(rows):,} layers, slowest first; time is the median of {profile.repeats} runs at batch "
               f"{profile.batch}. Click a column header to sort.")


def view(spec: Spec) -> None:
    """The Measured tab: settings, Measure, and the shown profile's totals, roofline, shares and table."""
    from explorer.measure.figures import roofline_figure, share_figure

    harvest()
    st.caption("Timed on this machine, layer by layer, with the model built from the sidebar's spec (random "
               "weights: time does not depend on them). The roofline shows which layers the memory holds back.")
    settings = controls()
    key = settings.key(spec)
    here = _store().get(key)
    busy = running()
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button("Measure again" if here else "Measure", type="primary", key="measure", disabled=busy,
                  help="Runs in the background: warm-up, then every layer timed; you can cancel."):
        start("profile", settings, [(spec, session.describe_current())])
        st.rerun()  # drawn again with the button off and the progress polled
    if busy:
        row.caption("A measurement is running: one at a time, so they do not time each other.")
    live(("profile", "ceilings"), "measure")

    shown = here or _store().get(st.session_state.get(_LAST))
    if shown is None and busy:
        return
    if shown is None:
        st.info(f"Press **Measure** to time every layer of {session.describe_current()} on "
                f"{settings.describe()}. It takes from seconds (a small network) to a minute or two.")
        return
    if here is None:
        st.warning(f"Shown: the profile of **{shown.label}** on {shown.settings.describe()}, not of the sidebar's "
                   f"configuration ({session.describe_current()} on {settings.describe()}): press **Measure** "
                   "to measure that.", icon=":material/history:")
    profile = shown.profile
    if totals(profile, busy=busy):
        start("ceilings", shown.settings)
        st.rerun()
    color_by = st.segmented_control("Colour the layers by", ["kind", "flow"], default="kind",
                                    key="roofline_colour") or "kind"
    st.plotly_chart(roofline_figure(profile, color_by=color_by), width="stretch", key="roofline")
    level = st.segmented_control("Shares per", ["flow", "kind"], default="flow", key="share_level") or "flow"
    st.plotly_chart(share_figure(profile, level), width="stretch", key="time_shares")
    layer_table(profile)
    st.download_button("Download the profile (JSON)", json.dumps(profile.to_dict(), indent=1, default=str),
                       file_name=f"{profile.spec_name}_profile.json", mime="application/json",
                       key="profile_json")


# -- A against B -----------------------------------------------------------------------------------


def compare_view(a: Spec, a_label: str, b: Spec, b_label: str) -> None:
    """Measure A and B one after the other (same device, batch and dtype) and put the measured forward
    times beside the counted deltas."""
    harvest()
    st.markdown("**Measured**")
    settings = current_settings()
    if a.digest() == b.digest():
        st.caption("A and B are the same network: change a knob to measure what it costs in milliseconds.")
        return
    keys = (settings.key(a), settings.key(b))
    store, busy = _store(), running()
    pair = [store.get(k) for k in keys]
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button("Measure A and B", key="measure_ab", disabled=busy,
                  help=f"Both on {settings.describe()} (the Measured tab's settings), one after the other."):
        start("compare", settings, [(a, f"A: {a_label}"), (b, f"B: {b_label}")])
        st.rerun()
    row.caption(f"On {settings.describe()}: change these in the Measured tab.")
    live(("compare",), "measure_ab")
    if not all(pair):
        if not busy:
            st.caption("Press **Measure A and B** to time both: the counted deltas above, in milliseconds.")
        return
    from explorer.measure.figures import ms

    pa, pb = pair[0].profile, pair[1].profile
    ca, cb = widgets.costs(a, settings.batch).totals, widgets.costs(b, settings.batch).totals
    rows = [{"": "forward (measured)", "A": ms(pa.forward_seconds), "B": ms(pb.forward_seconds),
             "B − A": _delta_ms(pb.forward_seconds - pa.forward_seconds, pa.forward_seconds)},
            {"": "sum of the layers (measured)", "A": ms(pa.layer_seconds), "B": ms(pb.layer_seconds),
             "B − A": _delta_ms(pb.layer_seconds - pa.layer_seconds, pa.layer_seconds)}]
    for name, k in (("MACs (counted)", "macs"), ("element-wise ops (counted)", "elementwise_ops"),
                    ("activation memory (counted)", "activation_bytes")):
        fmt = mib if k == "activation_bytes" else si
        rows.append({"": name, "A": fmt(ca[k]), "B": fmt(cb[k]),
                     "B − A": (widgets.signed(cb[k] - ca[k], fmt) or "0") + widgets.percent(cb[k] - ca[k], ca[k])})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="measured_ab")
    st.caption(f"Measured on {pa.ceilings.device_name}, batch {pa.batch}, {pa.dtype}: the median of "
               f"{pa.repeats} runs each. The profiles are in the Measured tab too.")


def _delta_ms(delta: float, reference: float) -> str:
    """``+1.23 ms (+4.5%)``."""
    from explorer.measure.figures import ms

    sign = "+" if delta > 0 else "-" if delta < 0 else "±"
    return f"{sign}{ms(abs(delta))}" + widgets.percent(delta, reference)
