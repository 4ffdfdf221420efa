"""The measured figures, from a profile made by hand (no timing): the roofline's points are the layers'
own intensity and achieved FLOP/s, one trace per kind in the kinds table's colours, the roofs sit at the
ceilings; the per-flow shares of MACs and of time each sum to 1."""

from __future__ import annotations

import math
import statistics

import pytest

from explorer.measure import Ceilings, LayerTime, Profile
from explorer.measure.figures import (
    DATASHEET_ROOF,
    MEASURED_ROOF,
    drawable,
    kind_colour,
    layer_rows,
    ms,
    roofline_figure,
    share_figure,
    share_rows,
)
from explorer.spec.kinds import KINDS, Kind

CEILINGS = Ceilings(device="cpu", device_name="Test CPU (2 threads)", dtype="float32", peak_flops=2e11,
                    bandwidth=2e10, measured_at="2026-12-02T12:00:00.000+00:00")
WITH_DATASHEET = Ceilings(device="cuda:0", device_name="NVIDIA H200", dtype="float32", peak_flops=5e13,
                          bandwidth=4e12, measured_at="2026-12-02T12:00:00.000+00:00", datasheet_flops=6.7e13,
                          datasheet_bandwidth=4.8e12, datasheet_source="NVIDIA H200 datasheet")

# (name, kind, flow, block, seconds, flops, bytes): a depthwise conv moves many bytes per FLOP, a
# pointwise conv few; an add and a batch norm are pure traffic; a concat does no arithmetic at all
ROWS = [
    ("entry.conv1.conv", "conv", "entry", "entry.conv1", 4e-3, 400_000_000, 4_000_000),
    ("entry.conv1.bn", "batchnorm", "entry", "entry.conv1", 5e-4, 2_000_000, 8_000_000),
    ("entry.block1.sep1.depthwise", "depthwise", "entry", "entry.block1", 2e-3, 18_000_000, 8_000_000),
    ("entry.block1.sep1.pointwise", "pointwise", "entry", "entry.block1", 3e-3, 300_000_000, 5_000_000),
    ("middle.block1.sep1.depthwise", "depthwise", "middle", "middle.block1", 1e-3, 9_000_000, 3_000_000),
    ("middle.block1.sep1.pointwise", "pointwise", "middle", "middle.block1", 2e-3, 200_000_000, 2_500_000),
    ("middle.block1.add", "add", "middle", "middle.block1", 3e-4, 500_000, 6_000_000),
    ("exit.concat", "concat", "exit", "exit.concat", 1e-4, 0, 1_000_000),
    ("exit.fc", "linear", "exit", "exit.fc", 2e-4, 4_000_000, 8_000_000),
]


CONVS = ("conv", "depthwise", "pointwise", "linear")


def make_profile(ceilings: Ceilings = CEILINGS) -> Profile:
    total = sum(r[4] for r in ROWS)
    layers = tuple(LayerTime(name=n, kind=k, flow=f, block=b, seconds=s, spread=s / 20, share=s / total,
                             flops=fl, bytes=by, absorbed=(), macs=fl // 2 if k in CONVS else 0)
                   for n, k, f, b, s, fl, by in ROWS)
    return Profile(spec_name="handmade", spec_digest="0" * 16, device=ceilings.device, dtype="float32", batch=1,
                   repeats=10, fast=False, layers=layers, forward_seconds=0.9 * total,
                   instrumented_seconds=1.2 * total, ceilings=ceilings)


PROFILE = make_profile()


def points(fig) -> dict[str, tuple[float, float]]:
    """Layer name → (x, y) of every layer point in the figure."""
    out = {}
    for trace in fig.data:
        if trace.customdata is not None and trace.mode == "markers" and not trace.name.endswith("median"):
            for x, y, data in zip(trace.x, trace.y, trace.customdata):
                out[data[0]] = (x, y)
    return out


def test_every_layer_with_flops_is_a_point_at_its_intensity_and_achieved_rate():
    fig = roofline_figure(PROFILE)
    drawn = points(fig)
    expected = [layer for layer in PROFILE.layers if drawable(layer)]
    assert set(drawn) == {layer.name for layer in expected}
    for layer in expected:
        assert drawn[layer.name] == pytest.approx((layer.intensity, layer.flops_per_s))
        assert drawn[layer.name] == pytest.approx((layer.flops / layer.bytes, layer.flops / layer.seconds))
    # the concat (no FLOPs) has no place on a log axis: said, not drawn
    assert "exit.concat" not in drawn and "1 layers without FLOPs not drawn" in fig.layout.title.text
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    assert "FLOP/byte" in fig.layout.xaxis.title.text and "FLOP/s" in fig.layout.yaxis.title.text


def test_one_trace_per_kind_in_the_kinds_tables_colours():
    fig = roofline_figure(PROFILE)
    kinds = {layer.kind for layer in PROFILE.layers if drawable(layer)}
    traces = [t for t in fig.data if t.name in kinds]
    assert sorted(t.name for t in traces) == sorted(kinds)  # one each
    for trace in traces:
        assert trace.marker.color == KINDS[Kind(trace.name)].style.color == kind_colour(trace.name)
    # depthwise and pointwise: two colours, and each has its median marked
    assert kind_colour("depthwise") != kind_colour("pointwise")
    for kind in ("depthwise", "pointwise"):
        median = next(t for t in fig.data if t.name == f"{kind} median")
        members = [layer for layer in PROFILE.layers if layer.kind == kind]
        assert (median.x[0], median.y[0]) == pytest.approx((statistics.median(m.intensity for m in members),
                                                            statistics.median(m.flops_per_s for m in members)))


def test_marker_area_follows_the_time_share():
    trace = next(t for t in roofline_figure(PROFILE).data if t.name == "depthwise")
    shares = {layer.name: layer.share for layer in PROFILE.layers}
    sizes = dict(zip((d[0] for d in trace.customdata), trace.marker.size))
    a, b = "entry.block1.sep1.depthwise", "middle.block1.sep1.depthwise"
    assert shares[a] > shares[b] and sizes[a] > sizes[b]


def test_the_roofs_sit_at_the_ceilings():
    fig = roofline_figure(PROFILE)
    roof = next(t for t in fig.data if t.name == MEASURED_ROOF)
    c = PROFILE.ceilings
    assert max(roof.y) == pytest.approx(c.peak_flops)  # flat at the peak after the ridge
    assert any(x == pytest.approx(c.ridge) for x in roof.x)  # the corner is the ridge point
    slope = [(x, y) for x, y in zip(roof.x, roof.y) if x < c.ridge]
    assert slope and all(y == pytest.approx(c.bandwidth * x) for x, y in slope)  # bandwidth · intensity
    # the roofs span the whole x axis, which holds every point and the ridge
    x0, x1 = (10 ** v for v in fig.layout.xaxis.range)
    assert roof.x[0] == pytest.approx(x0) and roof.x[-1] == pytest.approx(x1)
    assert x0 < min(p[0] for p in points(fig).values()) and x1 > c.ridge
    assert not any(t.name == DATASHEET_ROOF for t in fig.data)  # none known for this CPU


def test_the_datasheet_roof_is_dashed_beside_the_measured_one():
    fig = roofline_figure(make_profile(WITH_DATASHEET))
    sheet = next(t for t in fig.data if t.name == DATASHEET_ROOF)
    measured = next(t for t in fig.data if t.name == MEASURED_ROOF)
    assert sheet.line.dash == "dash" and measured.line.dash is None
    assert max(sheet.y) == pytest.approx(WITH_DATASHEET.datasheet_flops)
    ridge = WITH_DATASHEET.datasheet_flops / WITH_DATASHEET.datasheet_bandwidth
    assert any(x == pytest.approx(ridge) for x in sheet.x)
    assert any("datasheet" in a.text for a in fig.layout.annotations)


def test_hover_names_the_layer_its_time_rate_and_bound():
    trace = next(t for t in roofline_figure(PROFILE).data if t.name == "pointwise")
    data = trace.customdata[0]
    layer = next(layer for layer in PROFILE.layers if layer.name == data[0])
    assert data[1] == "pointwise" and data[2] == ms(layer.seconds)
    assert data[4] == pytest.approx(layer.flops_per_s / 1e9) and data[5] == pytest.approx(layer.intensity)
    assert data[6] == layer.bound(PROFILE.ceilings)
    assert "%{customdata[0]}" in trace.hovertemplate and "bound" in trace.hovertemplate


def test_colour_by_flow_makes_one_trace_per_flow():
    fig = roofline_figure(PROFILE, color_by="flow")
    assert {t.name for t in fig.data if t.name in ("entry", "middle", "exit")} == {"entry", "middle", "exit"}
    with pytest.raises(ValueError):
        roofline_figure(PROFILE, color_by="weather")


@pytest.mark.parametrize("level", ["flow", "kind"])
def test_shares_of_macs_and_of_time_each_sum_to_one(level):
    rows = share_rows(PROFILE, level)
    assert math.fsum(r["time_share"] for r in rows) == pytest.approx(1)
    assert math.fsum(r["macs_share"] for r in rows) == pytest.approx(1)
    by = {r[level]: r for r in PROFILE.by(level)}
    total = sum(layer.seconds for layer in PROFILE.layers)
    for row in rows:
        assert row["seconds"] == pytest.approx(by[row[level]]["seconds"])
        assert row["time_share"] == pytest.approx(by[row[level]]["seconds"] / total)
    fig = share_figure(PROFILE, level)
    macs_bars, time_bars = fig.data
    assert list(macs_bars.x) == list(time_bars.x) == [str(r[level]) for r in rows]
    assert list(time_bars.y) == pytest.approx([r["time_share"] for r in rows])
    assert list(macs_bars.y) == pytest.approx([r["macs_share"] for r in rows])


def test_the_table_rows_are_the_layers_own_numbers():
    rows = {r["name"]: r for r in layer_rows(PROFILE)}
    layer = next(layer for layer in PROFILE.layers if layer.name == "entry.block1.sep1.depthwise")
    row = rows[layer.name]
    assert row["time_ms"] == pytest.approx(layer.seconds * 1e3) and row["share"] == layer.share
    assert row["gflops"] == pytest.approx(layer.flops_per_s / 1e9)
    assert row["gbytes"] == pytest.approx(layer.bytes_per_s / 1e9)
    assert row["intensity"] == pytest.approx(layer.intensity) and row["bound"] == "memory"
    assert row["macs"] == layer.macs == 9_000_000 and rows["middle.block1.add"]["macs"] == 0
    assert rows["exit.concat"]["bound"] == "" and rows["exit.concat"]["intensity"] == 0
