"""What people read: the spec summary, knob descriptions, the table's text cells, axis ticks, numbers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from explorer.build import build_model
from explorer.format import count, duration, shape, si_short
from explorer.plots import log_axis, nice_log_ticks
from explorer.spec import load_spec
from explorer.spec.knobs import describe_knob, describe_knobs
from explorer.spec.summary import summarize
from explorer.spec.table import spec_from_rows, spec_to_rows

XCEPTION = load_spec("xception")


@pytest.mark.parametrize(("knobs", "absent", "present"), [
    ({}, ["no residual"], ["residual connections on 12 of 12", "middle flow (8 blocks)", "34 depthwise separable"]),
    ({"residual": False}, ["residual connections on"], ["no residual connections"]),
    ({"middle_repeats": 2}, ["8 blocks"], ["middle flow (2 blocks)", "16 depthwise separable"]),
    ({"mid_activation": "relu"}, ["no activation"], ["ReLU between depthwise and pointwise"]),
    ({"segments": 4}, ["depthwise separable"], ["spatial conv in 4 segments"]),
    ({"input_size": 128, "num_classes": 10}, ["299"], ["128×128 px input, 10 classes"]),
])
def test_the_summary_follows_the_knobs(knobs, absent, present):
    text = summarize(XCEPTION.with_overrides(**knobs))
    assert all(p in text for p in present), text
    assert not any(a in text for a in absent), text


def test_the_summary_counts_what_the_built_model_has():
    """The separable convs and Xception blocks named in the sentence are the built model's own."""
    spec = XCEPTION.with_overrides(middle_repeats=3, residual=False)
    model = build_model(spec)
    depthwise = [m for name, m in model.named_modules() if name.endswith(".depthwise")]
    assert all(m.groups == m.in_channels for m in depthwise)
    assert f"{len(depthwise)} depthwise separable convs" in summarize(spec)
    adds = [name for name, m in model.named_modules() if name.endswith(".add")]
    assert adds == [] and "no residual connections" in summarize(spec)
    with_skips = build_model(XCEPTION.with_overrides(middle_repeats=3))
    adds = [name for name, m in with_skips.named_modules() if name.endswith(".add")]
    assert f"residual connections on {len(adds)} of {len(adds)} Xception blocks" in summarize(
        XCEPTION.with_overrides(middle_repeats=3))
    inception = summarize(load_spec("inception_v3"))
    assert "11 Inception modules" in inception and "auxiliary head" in inception
    assert "auxiliary head" not in summarize(load_spec("inception_v3").with_overrides(aux_logits=False))


def test_knob_descriptions_are_words_not_code():
    text = describe_knobs({"residual": False, "middle_repeats": 2, "mid_activation": "relu", "width": 0.5})
    assert text == ("residual connections off, ReLU between depthwise and pointwise, 2 middle-flow blocks, "
                    "width ×0.5")
    assert describe_knob("segments", "depthwise") == "depthwise spatial convs"
    assert describe_knob("num_classes", 1000) == "1,000 classes"
    assert "=" not in describe_knobs({"aux_logits": "false", "input_size": "64"})


@pytest.mark.parametrize("preset", ["xception", "inception_v3", "mini_xception"])
def test_table_text_cells_round_trip(preset):
    spec = load_spec(preset)
    rows = spec_to_rows(spec, as_text=True)
    assert all(isinstance(v, str) for row in rows for v in row.values())
    assert not any(v in ("None", "nan") or v.endswith(".0") for row in rows for v in row.values())
    assert spec_from_rows(spec, rows) == spec


def test_table_text_edits_of_repeat_out_and_stride():
    rows = spec_to_rows(XCEPTION, as_text=True)
    by_name = {r["name"]: r for r in rows}
    by_name["middle.block"]["repeat"] = "3"
    by_name["entry.conv1"]["out"] = " 16 "
    by_name["entry.block2"]["stride"] = "1"
    by_name["exit.sep1"]["repeat"] = ""
    edited = spec_from_rows(XCEPTION, rows)
    blocks = {b.name: b for b in edited.blocks}
    assert blocks["middle.block"].repeat == 3
    assert blocks["entry.conv1"].out == 16
    assert blocks["entry.block2"].stride == 1
    assert edited.with_overrides(middle_repeats=8) == XCEPTION.model_copy(update={"blocks": [
        b if b.name not in ("entry.conv1", "entry.block2") else blocks[b.name] for b in XCEPTION.blocks]})


def test_table_words_stay_text():
    """A flow named like a YAML boolean stays a name."""
    rows = spec_to_rows(XCEPTION, as_text=True)
    for row in rows:
        if row["flow"] == "exit":
            row["flow"] = "yes"
    assert {b.flow for b in spec_from_rows(XCEPTION, rows).blocks} == {"entry", "middle", "yes"}


@given(st.floats(1e-6, 1e12), st.floats(1.0, 1e6))
def test_log_ticks_cover_the_data_with_few_round_labels(low, factor):
    high = low * factor
    ticks = nice_log_ticks(low, high)
    assert len(ticks) <= 8
    assert ticks[0] <= low * 1.0001 and ticks[-1] >= high / 1.0001
    for t in ticks:
        mantissa = t / 10 ** math.floor(math.log10(t) + 1e-9)
        assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 3, 5))


def test_log_axis_labels_use_si_prefixes_people_read():
    axis = log_axis([8.357e9, 68.8e9])
    assert axis["type"] == "log"
    assert axis["ticktext"] == ["5 G", "10 G", "20 G", "50 G", "100 G"]
    assert all(not any(ch.isdigit() for ch in t.split()[-1]) for t in axis["ticktext"])  # no bare digit labels
    assert log_axis([0, -1]) == {"type": "log"}


def test_numbers_people_read():
    assert count(199148544) == "199,148,544"
    assert si_short(105041400) == "105 M" and si_short(2e9, "MACs") == "2 GMACs"
    assert shape((728, 19, 19)) == "728×19×19"


def test_one_duration_formatter_picks_the_unit_people_use():
    cases = {2.5e-5: "25 µs", 0.0123: "12.3 ms", 0.35: "0.35 s", 4.25: "4.2 s", 45.2: "45 s", 200: "3 min 20 s", 180: "3 min",
             3900: "1 h 5 min"}
    assert {s: duration(s) for s in cases} == cases
