"""The scorecard's figures and table rows (explorer.explain.score_figures) on a real small card: the digits
network, two images, three methods, light settings (computed once for the module)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from explorer.explain.errors import ExplainError
from explorer.explain.score_figures import (
    BEST,
    CHANCE_LABEL,
    NO_MAP,
    cascade_figure,
    column,
    curves_figure,
    number,
    scorecard_rows,
)
from explorer.explain.scorecard import METRIC_ORDER, METRICS, score
from explorer.explain.views import scale_maps

METHODS = ("saliency", "ig", "guided-backprop")
TITLES = {"saliency": "Saliency", "ig": "Integrated Gradients", "guided-backprop": "Guided Backprop"}

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def card():
    from explorer.lab.data import digits_samples
    from explorer.weights import get_weights, load_model

    loaded = load_model(None, get_weights("mini_xception.digits").path, cache=False)
    images = [image for image, _ in digits_samples(2)]
    return score(images, loaded, methods=METHODS, samples=2, steps=5, options={"ig": {"steps": 4}})


def panel_traces(fig, axis: str) -> list:
    return [t for t in fig.data if t.xaxis == axis]


# -- the curves --------------------------------------------------------------------------------------


def test_curves_have_two_panels_a_line_per_method_and_the_dashed_chance(card):
    fig = curves_figure(card)
    titles = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("Deletion") and "lower" in t for t in titles)
    assert any(t.startswith("Insertion") and "higher" in t for t in titles)
    for axis, metric, legend in (("x", "deletion", "legend"), ("x2", "insertion", "legend2")):
        traces = panel_traces(fig, axis)
        methods = [t for t in traces if not t.name.startswith(CHANCE_LABEL)]
        chance = [t for t in traces if t.name.startswith(CHANCE_LABEL)]
        assert len(methods) == len(card.methods) == 3
        assert len(chance) == 1 and chance[0].line.dash == "dash"
        np.testing.assert_allclose(chance[0].y, card.chance_curves[metric])
        assert f"AUC {number(card.chance[metric])}" in chance[0].name
        for trace in traces:
            assert trace.legend == legend  # each panel's AUCs in its own legend
            assert trace.x[0] == 0 and trace.x[-1] == 1 and len(trace.x) == card.settings["steps"] + 1
        for method in card.methods:
            trace = next(t for t in methods if t.legendgroup == method)
            assert trace.name.startswith(TITLES[method])
            assert f"AUC {number(card.row(method, metric).mean)}" in trace.name
            np.testing.assert_allclose(trace.y, card.curves[metric][method])
            # the AUC in the legend is the area under the line drawn (the mean of the images' areas)
            assert np.trapezoid(trace.y, trace.x) == pytest.approx(card.row(method, metric).mean)
            assert trace.name.endswith(BEST) == (card.best(metric) == method)
        # one colour per method, the same in both panels
        assert len({t.line.color for t in methods}) == 3
    left = {t.legendgroup: t.line.color for t in panel_traces(fig, "x") if t.legendgroup}
    right = {t.legendgroup: t.line.color for t in panel_traces(fig, "x2") if t.legendgroup}
    assert left == right


def test_curves_of_a_card_with_one_of_the_two_measures_and_of_none(card):
    only = dataclasses.replace(card, metrics=("insertion", "sparseness"))
    fig = curves_figure(only)
    assert {t.xaxis for t in fig.data} == {"x"} and len(fig.data) == len(card.methods) + 1
    assert "Insertion" in fig.layout.annotations[0].text
    with pytest.raises(ExplainError, match="no curves"):
        curves_figure(dataclasses.replace(card, metrics=("sparseness",)))


# -- the cascade -------------------------------------------------------------------------------------


def heatmaps(fig) -> list:
    return [t for t in fig.data if t.type == "heatmap"]


def test_cascade_is_a_row_per_method_a_column_per_map_on_one_colour_range(card):
    fig = cascade_figure(card)
    columns = ["original", *card.stages]
    assert len(card.stages) == 3
    texts = [a.text for a in fig.layout.annotations]
    assert all(c in texts for c in columns) and all(TITLES[m] in texts for m in card.methods)
    maps = [np.asarray(m, dtype=float) for method in card.methods for m in card.cascade_maps[method]]
    assert len(heatmaps(fig)) == len(maps) == len(card.methods) * len(columns)
    # one range for every cell: the shared coloraxis, no cell with its own
    top = scale_maps(maps, scale="shared", sign="absolute")[0].vmax
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pytest.approx(top)
    for trace, original in zip(heatmaps(fig), maps):
        assert trace.coloraxis == "coloraxis" and trace.zmin is None and trace.zmax is None
        # each map in units of its own mean |value|, cut at the one range
        expected = np.clip(np.abs(original) / np.abs(original).mean(), 0, top)
        np.testing.assert_allclose(np.asarray(trace.z), expected, rtol=1e-6)
    # the rank correlation after each stage under its map
    for method in card.methods:
        for rho in card.cascade[method]:
            assert f"ρ {rho:.2f}" in texts


def test_cascade_shows_a_text_for_a_missing_map_and_scales_without_it(card):
    maps = {m: list(v) for m, v in card.cascade_maps.items()}
    maps["ig"][2] = None
    maps["saliency"] = maps["saliency"][:1]  # a flat original: no map after any stage
    fig = cascade_figure(dataclasses.replace(card, cascade_maps=maps))
    assert sum(a.text == NO_MAP for a in fig.layout.annotations) == 1 + len(card.stages)
    present = [np.asarray(m, dtype=float) for v in maps.values() for m in v if m is not None]
    assert len(heatmaps(fig)) == len(present)
    assert fig.layout.coloraxis.cmax == pytest.approx(scale_maps(present, scale="shared", sign="absolute")[0].vmax)
    with pytest.raises(ExplainError, match="no cascading"):
        cascade_figure(dataclasses.replace(card, cascade_maps={}))


def test_large_maps_are_sent_small(card):
    rng = np.random.default_rng(0)
    big = {m: [rng.random((299, 299)) for _ in range(1 + len(card.stages))] for m in card.methods}
    fig = cascade_figure(dataclasses.replace(card, cascade_maps=big))
    for trace in heatmaps(fig):
        assert np.asarray(trace.z).shape == (96, 96)


# -- the table ---------------------------------------------------------------------------------------


def test_table_rows_mark_the_best_of_each_column_and_say_the_direction(card):
    rows = scorecard_rows(card)
    assert [r["method"] for r in rows] == [TITLES[m] for m in card.methods] + [CHANCE_LABEL]
    assert column("deletion") == "deletion ↓" and column("insertion") == "insertion ↑"
    assert column("random_logit") == "random logit ↓"
    for metric in METRIC_ORDER:
        header = column(metric)
        assert header.endswith("↓" if METRICS[metric].direction == "lower" else "↑")
        marked = [r["method"] for r in rows if r[header].endswith(BEST)]
        assert marked == [TITLES[card.best(metric)]], metric
        for method, row in zip(card.methods, rows):
            r = card.row(method, metric)
            assert row[header].startswith(f"{number(r.mean)} ± {number(r.spread)}")  # two images: a spread
    chance = rows[-1]
    assert chance[column("deletion")] == number(card.chance["deletion"])
    assert chance[column("insertion")] == number(card.chance["insertion"])
    assert chance[column("sparseness")] == ""


def test_table_of_a_card_without_curves_has_no_chance_row_and_a_dash_for_no_value(card):
    rows_ = [dataclasses.replace(r, values=(float("nan"),) * len(r.values)) if r.method == "ig" else r
             for r in card.rows]
    other = dataclasses.replace(card, metrics=("sparseness", "randomization"), chance={}, rows=rows_)
    rows = scorecard_rows(other)
    assert [r["method"] for r in rows] == [TITLES[m] for m in card.methods]
    assert rows[1][column("sparseness")] == "–"
    assert sum(r[column("sparseness")].endswith(BEST) for r in rows) == 1
