"""AppTest of the Costs page's Measured view, on a small Xception (one middle block, 64 px images) timed
for real: nothing runs until Measure is pressed; what the page shows is the profile's own numbers (and
the cost model's MACs); A against B is measured in one job; Cancel stops a measurement; the graph on
the Architecture page is coloured by the measured time.

The measurement runs on a job thread: a test waits for the job (an event, not a clock) and reruns.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from test_app import PAGES, knob, open_app

from explorer.cost import count_costs
from explorer.format import si, si_short
from explorer.measure.figures import ms, share_rows
from explorer.spec import load_spec

JOB_HANG_S = 240  # only a guard against a hang
SMALL = load_spec("xception").with_overrides(middle_repeats=1, input_size=64)


@pytest.fixture(scope="module")
def ceilings_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ceilings")


@pytest.fixture(autouse=True)
def own_ceilings_cache(monkeypatch, ceilings_dir):
    """Measured ceilings go to this module's folder (measured once for all its tests), not the user's cache."""
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(ceilings_dir))


def small_costs_page(at=None):
    at = at or open_app()
    knob(at, "number_input", "Middle-flow blocks").set_value(1).run()
    knob(at, "number_input", "Input size (px)").set_value(64).run()
    at.switch_page(f"{PAGES}/costs.py").run()
    at.number_input(key="meas_repeats").set_value(3).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def press_and_wait(at, key: str = "measure"):
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["measure_run"].job.wait(JOB_HANG_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def profile_of(at, spec):
    """The profile the page keeps for ``spec`` (at the settings chosen on the page)."""
    found = [m.profile for key, m in at.session_state["measured_profiles"].items() if key[0] == spec.digest()]
    assert len(found) == 1
    return found[0]


def chart(at, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def test_nothing_runs_on_load_and_measure_shows_the_profiles_own_numbers():
    at = small_costs_page()
    assert "measure_run" not in at.session_state  # the first profile waits for the button
    assert any(i.value.startswith("Press **Measure**") for i in at.info)
    assert not any(c.key == "roofline" for c in at.get("plotly_chart"))

    press_and_wait(at)
    profile = profile_of(at, SMALL)
    assert (profile.spec_digest, profile.batch, profile.dtype, profile.repeats) == (SMALL.digest(), 1, "float32", 3)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Forward (measured)"] == ms(profile.forward_seconds)
    assert metrics["Sum of the layers"] == ms(profile.layer_seconds)
    assert metrics["Peak compute"] == si_short(profile.ceilings.peak_flops, "FLOP/s")
    assert metrics["Memory bandwidth"] == si_short(profile.ceilings.bandwidth, "B/s")
    assert at.button(key="measure").label == "Measure again"

    # a row of the table: the layer's own time and share, and the MACs the cost model counts for it
    table = next(d.value for d in at.dataframe if "time_ms" in d.value.columns).set_index("name")
    assert len(table) == len(profile.layers)
    name = "entry.block2.sep1.depthwise"
    layer = profile.layer(name)
    row = table.loc[name]
    assert row["time_ms"] == pytest.approx(layer.seconds * 1e3)
    assert row["share"] == pytest.approx(layer.share)
    assert row["gflops"] == pytest.approx(layer.flops_per_s / 1e9)
    assert row["intensity"] == pytest.approx(layer.intensity)
    assert row["bound"] == layer.bound(profile.ceilings)
    assert int(row["macs"]) == count_costs(SMALL).layer(name).macs
    assert table["share"].sum() == pytest.approx(1)

    # the roofline's depthwise points are the depthwise layers at their intensity and achieved FLOP/s
    roofline = chart(at, "roofline")
    depthwise = next(t for t in roofline["data"] if t["name"] == "depthwise")
    expected = {r.name: (r.intensity, r.flops_per_s) for r in profile.layers if r.kind == "depthwise"}
    assert {d[0]: (x, y) for x, y, d in zip(depthwise["x"], depthwise["y"], depthwise["customdata"])} == \
        pytest.approx(expected)
    assert "arithmetic intensity" in roofline["layout"]["xaxis"]["title"]["text"]
    # the per-flow shares: of the time and of the MACs, as the profile says
    shares = chart(at, "time_shares")
    rows = share_rows(profile, "flow")
    assert shares["data"][1]["y"] == pytest.approx([r["time_share"] for r in rows])
    assert shares["data"][0]["y"] == pytest.approx([r["macs_share"] for r in rows])


def test_a_changed_knob_says_the_shown_profile_is_of_another_configuration():
    at = press_and_wait(small_costs_page())
    measured = profile_of(at, SMALL)
    knob(at, "toggle", "Residual connections").set_value(False).run()
    assert not at.exception
    assert any("not of the sidebar's configuration" in w.value for w in at.warning)
    assert at.button(key="measure").label == "Measure"
    # still the earlier profile's numbers, not a new measurement
    assert {m.label: m.value for m in at.metric}["Forward (measured)"] == ms(measured.forward_seconds)
    knob(at, "toggle", "Residual connections").set_value(True).run()
    assert not any("not of the sidebar's configuration" in w.value for w in at.warning)
    assert at.button(key="measure").label == "Measure again"


def test_compare_measures_a_and_b_and_puts_milliseconds_beside_the_counted_deltas():
    at = small_costs_page()
    at.button(key="pin").click().run()
    knob(at, "toggle", "Residual connections").set_value(False).run()
    b = SMALL.with_overrides(residual=False)
    press_and_wait(at, "measure_ab")
    pa, pb = profile_of(at, SMALL), profile_of(at, b)
    assert pa.batch == pb.batch and pa.dtype == pb.dtype and pa.device == pb.device
    table = next(d.value for d in at.dataframe if "forward (measured)" in list(d.value.get("", []))).set_index("")
    row = table.loc["forward (measured)"]
    assert (row["A"], row["B"]) == (ms(pa.forward_seconds), ms(pb.forward_seconds))
    delta = pb.forward_seconds - pa.forward_seconds
    sign = "+" if delta > 0 else "-" if delta < 0 else "±"
    assert row["B − A"] == f"{sign}{ms(abs(delta))} ({delta / pa.forward_seconds:+.1%})"
    macs_a, macs_b = count_costs(SMALL).totals["macs"], count_costs(b).totals["macs"]
    counted = table.loc["MACs (counted)"]
    assert (counted["A"], counted["B"]) == (si(macs_a), si(macs_b))
    assert counted["B − A"].startswith("-") and f"({(macs_b - macs_a) / macs_a:+.1%})" in counted["B − A"]


def test_cancel_stops_a_measurement_and_keeps_nothing(monkeypatch):
    from explorer import measure

    def endless(spec, *, progress=None, **_):
        deadline = time.monotonic() + JOB_HANG_S
        while time.monotonic() < deadline:
            progress(0.5)  # raises once the job is cancelled
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    real = measure.ceilings
    monkeypatch.setattr(measure, "profile", endless)
    monkeypatch.setattr(measure, "ceilings", lambda device, dtype, **kw: real(device, dtype))
    at = small_costs_page()
    at.button(key="measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = at.session_state["measure_run"].job
    assert not job.finished and at.button(key="measure").disabled
    at.button(key="measure_cancel").click().run()
    assert job.wait(JOB_HANG_S)
    at.run()
    assert any("cancelled" in w.value for w in at.warning)
    assert not at.session_state["measured_profiles"] if "measured_profiles" in at.session_state else True
    assert not at.button(key="measure").disabled


def test_the_graph_can_be_coloured_by_the_measured_time():
    at = press_and_wait(small_costs_page())
    profile = profile_of(at, SMALL)
    at.switch_page(f"{PAGES}/architecture.py").run()
    colour = next(w for w in at.get("button_group") if w.key == "architecture_colour_timed")
    assert "measured time" in colour.options
    colour.set_value("measured time").run()
    assert not at.exception, [e.value for e in at.exception]
    figure = chart(at, "architecture_chart")
    timed = next(t for t in figure["data"] if t["name"] == "measured time")
    shown = dict(zip(timed["customdata"], timed["marker"]["color"]))
    # block level: each block is the sum of its layers' measured times
    expected = {}
    for layer in profile.layers:
        expected[layer.block] = expected.get(layer.block, 0.0) + layer.seconds
    assert shown == pytest.approx({block: math.log10(s) for block, s in expected.items()})


def test_a_measurement_waits_for_a_free_place_and_can_be_cancelled_there(monkeypatch):
    from explorer.jobs import heavy_line, heavy_slot

    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "1")
    at = small_costs_page()
    with heavy_slot():  # another session's heavy work holds the only place
        at.button(key="measure").click().run()
        assert not at.exception, [e.value for e in at.exception]
        job = at.session_state["measure_run"].job
        assert job.position == 1 and not job.finished
        texts = [p.proto.text for p in at.get("progress")]
        assert any(t.startswith("Waiting for a free place: 1st in line (1 heavy job at a time") for t in texts), texts
        at.button(key="measure_cancel").click().run()
        assert job.wait(JOB_HANG_S) and job.position is None
        assert heavy_line().counts() == (1, 0)  # it left the line; the other work still holds its place
    at.run()
    assert any("cancelled" in w.value for w in at.warning)
    assert heavy_line().counts() == (0, 0)
