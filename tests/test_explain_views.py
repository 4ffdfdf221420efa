"""The views: channel reduction and sign, one shared colour scale, overlays, empty maps, PNG/.npy export."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explorer.explain import (
    Attribution,
    EmptyMapError,
    ExplainError,
    comparison_figure,
    heatmap_image,
    npy_bytes,
    overlay_image,
    png_bytes,
    render,
    scale_maps,
    to_map,
)
from explorer.explain.views import colorize, colormap


def _attribution(values, *, method="saliency", title="Saliency", model="net A", image=True, sign="absolute"):
    values = np.asarray(values, dtype=np.float32)
    h, w = values.shape[-2:]
    picture = np.full((h, w, 3), 128, np.uint8) if image else None
    return Attribution(method=method, title=title, values=values, target=1, predicted=1,
                       probabilities=np.array([0.2, 0.8]), image=picture, model=model, default_sign=sign)


def test_to_map_sums_channels_then_applies_the_sign():
    values = np.array([[[1.0, -2.0]], [[-3.0, 1.0]]])  # 2 channels, 1 x 2 pixels
    np.testing.assert_array_equal(to_map(values, "signed"), [[-2.0, -1.0]])
    np.testing.assert_array_equal(to_map(values, "absolute"), [[2.0, 1.0]])
    np.testing.assert_array_equal(to_map(values, "positive"), [[0.0, 0.0]])
    np.testing.assert_array_equal(to_map(-values, "positive"), [[2.0, 1.0]])
    with pytest.raises(ExplainError, match="unknown sign"):
        to_map(values, "both")


def test_shared_scale_removes_units_and_colours_all_maps_alike():
    rng = np.random.default_rng(0)
    base = rng.random((3, 8, 8))
    small = _attribution(base * 1e-4, title="Saliency")
    large = _attribution(base * 50.0, method="ig", title="Integrated Gradients")
    shared = scale_maps([small, large], sign="absolute", scale="shared")
    # maps that differ only by their units look identical on the shared scale, with one vmax
    np.testing.assert_allclose(shared[0].values, shared[1].values)
    assert shared[0].vmax == shared[1].vmax
    # raw: one range for both, so the small map is nearly invisible next to the large one
    raw = scale_maps([small, large], sign="absolute", scale="raw")
    assert raw[0].values.max() < 1e-4 < raw[1].values.max()
    assert raw[0].vmax == raw[1].vmax
    # per-map: each on its own range
    per = scale_maps([small, large], sign="absolute", scale="per-map")
    assert per[0].vmax != per[1].vmax
    np.testing.assert_allclose(per[0].values, per[1].values, atol=1e-6)


def test_shared_scale_compares_concentration():
    """A map with all its mass on a few pixels is hotter there than a spread-out one, on one scale."""
    spread = np.ones((1, 10, 10))
    peaked = np.zeros((1, 10, 10))
    peaked[0, :2, :2] = 1.0
    a, b = scale_maps([_attribution(spread), _attribution(peaked)], sign="absolute", scale="shared", percentile=100)
    # in units of each map's mean: the peaks are 1 / 0.04 = 25, the spread map is 1 everywhere
    assert b.vmax == a.vmax == pytest.approx(25.0)
    assert b.values.max() == 1.0 and a.values.max() == pytest.approx(1 / 25)


def test_signed_maps_use_a_symmetric_diverging_scale():
    values = np.zeros((1, 4, 4))
    values[0, 0, 0], values[0, 3, 3] = 2.0, -2.0
    values[0, 1, 1] = 1e-3  # so the percentile is not zero
    [s] = scale_maps([_attribution(values, sign="signed")], sign="signed", percentile=100)
    assert s.values.min() == -1.0 and s.values.max() == 1.0
    rgb = colorize(s)
    table = colormap("RdBu_r")
    np.testing.assert_array_equal(rgb[0, 0], table[255])  # full red for the most positive
    np.testing.assert_array_equal(rgb[3, 3], table[0])    # full blue for the most negative
    np.testing.assert_array_equal(rgb[2, 2], table[128])  # zero: the middle (white)


def test_an_all_zero_map_is_a_message_not_a_crash():
    zero = _attribution(np.zeros((3, 6, 6)), title="Grad-CAM", method="gradcam")
    zero.layer = "exit.sep2.act"
    fine = _attribution(np.ones((3, 6, 6)))
    assert zero.is_zero and "all zeros" in zero.empty_message() and "exit.sep2.act" in zero.empty_message()
    with pytest.raises(EmptyMapError, match="all zeros"):
        render(zero)
    with pytest.raises(EmptyMapError):
        heatmap_image(scale_maps([zero])[0])
    scaled = scale_maps([zero, fine], sign="absolute", scale="shared")
    assert scaled[0].empty and not scaled[1].empty and scaled[1].values.max() == 1.0
    fig = comparison_figure([zero, fine], sign="absolute")
    assert any("all zeros" in a.text.replace("<br>", " ") for a in fig.layout.annotations)
    # a map with no positive values is empty in the positive view only
    negative = _attribution(-np.ones((3, 6, 6)), sign="signed")
    assert scale_maps([negative], sign="positive")[0].empty
    assert not scale_maps([negative], sign="signed")[0].empty
    cancelling = np.zeros((3, 6, 6))
    cancelling[0], cancelling[1] = 1.0, -1.0
    assert "cancels to zero" in scale_maps([_attribution(cancelling)])[0].empty
    nan = _attribution(np.full((3, 6, 6), np.nan))
    assert "not finite" in scale_maps([nan])[0].empty


def test_overlay_keeps_the_picture_where_attribution_is_zero_and_colours_where_it_is_high():
    values = np.zeros((1, 4, 4))
    values[0, 0, 0] = 1.0
    values[0, 1, 1] = 0.01
    attribution = _attribution(values)
    picture = np.zeros((4, 4, 3), np.uint8)
    picture[..., 1] = 200
    [s] = scale_maps([attribution], sign="absolute", percentile=100)
    out = np.asarray(overlay_image(picture, s, alpha=1.0))
    np.testing.assert_array_equal(out[3, 3], picture[3, 3])      # nothing attributed: the image shows
    np.testing.assert_array_equal(out[0, 0], colormap("Inferno")[255])  # full attribution: full colour
    half = np.asarray(overlay_image(picture, s, alpha=0.5))
    np.testing.assert_allclose(half[0, 0], 0.5 * picture[0, 0] + 0.5 * colormap("Inferno")[255], atol=1)


def test_render_views_and_png_npy_export():
    values = np.random.default_rng(1).normal(size=(3, 12, 16)).astype(np.float32)
    attribution = _attribution(values, sign="signed")
    for view in ("overlay", "map"):
        picture = render(attribution, view=view)
        decoded = Image.open(io.BytesIO(png_bytes(picture)))
        assert decoded.format == "PNG" and decoded.size == (16, 12) and decoded.mode == "RGB"
    loaded = np.load(io.BytesIO(npy_bytes(attribution)), allow_pickle=False)
    np.testing.assert_array_equal(loaded, values)
    np.testing.assert_array_equal(np.load(io.BytesIO(attribution.npy_bytes())), values)
    with pytest.raises(ExplainError, match="no image"):
        render(_attribution(values, image=False))
    with pytest.raises(ExplainError, match="unknown view"):
        render(attribution, view="3d")


def _cells(fig):
    """(x domain, y domain) of every drawn cell (images or heatmaps), in the order they were added."""
    out = []
    for trace in fig.data:
        if trace.type in ("image", "heatmap"):
            x = fig.layout["xaxis" + trace.xaxis[1:]].domain
            y = fig.layout["yaxis" + trace.yaxis[1:]].domain
            out.append((tuple(x), tuple(y)))
    return out


def test_comparison_figure_puts_networks_in_rows_and_methods_in_columns_with_one_colour_bar():
    rng = np.random.default_rng(2)
    items = [_attribution(rng.random((3, 8, 8)), method=m, title=t, model=net)
             for net in ("xception", "inception_v3") for m, t in (("saliency", "Saliency"), ("ig", "IG"))]
    fig = comparison_figure(items, sign="absolute", view="map", scale="shared")
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 4 and all(t.coloraxis == "coloraxis" for t in heatmaps)
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pytest.approx(
        scale_maps(items, sign="absolute", scale="shared")[0].vmax)
    titles = [a.text for a in fig.layout.annotations]
    assert {"Saliency", "IG", "xception", "inception_v3"} <= set(titles)
    per_map = comparison_figure(items, scale="per-map")
    assert "not comparable" in per_map.layout.coloraxis.colorbar.title.text
    overlay = comparison_figure(items)
    assert sum(t.type == "image" for t in overlay.data) == 4
    assert overlay.layout.width is None  # takes its container's width: nothing is cut on a narrow screen


def test_gradcam_at_different_layers_is_one_column_with_both_networks_aligned():
    """Xception's and Inception's Grad-CAM look at different layers; they still share one Grad-CAM
    column, one row per network, and the layer is written under each cell."""
    rng = np.random.default_rng(3)
    layers = {"xception": "exit.sep2.act", "inception_v3": "Mixed_7c.concat"}
    methods = (("saliency", "Saliency"), ("gradcam", "Grad-CAM"), ("ig", "Integrated Gradients"))
    items = []
    for net in ("xception", "inception_v3"):
        for m, t in methods:
            item = _attribution(rng.random((1 if m == "gradcam" else 3, 8, 8)), method=m, title=t, model=net)
            item.layer = layers[net] if m == "gradcam" else None
            items.append(item)
    fig = comparison_figure(items, sign="absolute")
    cells = _cells(fig)
    assert len(cells) == 6
    xs = {item.method: set() for item in items}
    ys = {item.model: set() for item in items}
    for item, (x, y) in zip(items, cells):
        xs[item.method].add(x)
        ys[item.model].add(y)
    # one x position per method (both networks in the same column), one y position per network
    assert all(len(v) == 1 for v in xs.values()) and len({next(iter(v)) for v in xs.values()}) == 3
    assert all(len(v) == 1 for v in ys.values()) and len({next(iter(v)) for v in ys.values()}) == 2
    texts = [a.text.replace("<br>", " ") for a in fig.layout.annotations]
    assert sum(t.startswith("Grad-CAM") for t in texts) == 1  # one column title, no layer in it
    assert not any("exit.sep2.act" in t and t.startswith("Grad-CAM") for t in texts)
    for net, layer in layers.items():
        caption = next(a for a in fig.layout.annotations if f"layer {layer}" in a.text.replace("<br>", " "))
        # the caption sits under that network's Grad-CAM cell
        x, y = cells[next(k for k, i in enumerate(items) if i.model == net and i.method == "gradcam")]
        assert caption.xref.endswith("domain") and caption.yanchor == "top"
        axis = caption.xref.split()[0]
        assert tuple(fig.layout["xaxis" + axis[1:]].domain) == x


def test_default_scale_shows_every_map_and_networks_compare_within_a_method():
    """A smooth Grad-CAM map next to peaky Saliency maps: on one shared scale Grad-CAM is faint; the
    default (one range per method, shared by the networks in that column) shows it at full colour."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:32, 0:32]
    blob = np.exp(-((y - 12) ** 2 + (x - 20) ** 2) / 200.0)[None]         # smooth, like an upsampled CAM
    spread = 0.5 + 0.5 * blob                                               # the other network: less focused
    peaky = rng.random((3, 32, 32)) ** 30                                   # a few hot pixels, like saliency
    items = [_attribution(peaky, model="A"), _attribution(peaky[::-1].copy(), model="B"),
             _attribution(blob, method="gradcam", title="Grad-CAM", model="A"),
             _attribution(spread, method="gradcam", title="Grad-CAM", model="B")]
    shared = scale_maps(items, sign="absolute", scale="shared")
    default = scale_maps(items, sign="absolute")
    assert default[0].scale == "per-method"
    assert shared[2].values.max() < 0.25  # nearly invisible on the one shared range
    assert default[2].values.max() == pytest.approx(1.0)  # full colour at its own method's range
    # the two networks' Grad-CAM share one range, so the more focused map is hotter at its peak
    assert default[2].vmax == default[3].vmax != default[0].vmax
    assert default[0].vmax == default[1].vmax
    peak = np.unravel_index(np.argmax(blob[0]), blob[0].shape)
    assert default[2].values[peak] > default[3].values[peak]
    fig = comparison_figure(items, sign="absolute")
    assert "one scale per method" in fig.layout.coloraxis.colorbar.title.text
    from explorer.explain.views import scale_note
    assert "within a column" in scale_note("per-method", "absolute")
    assert sum("full colour" in a.text for a in fig.layout.annotations) == 2  # each column says its range


def test_placeholders_hold_their_cells_while_maps_are_computed():
    from explorer.explain.views import Placeholder

    done = _attribution(np.random.default_rng(5).random((3, 8, 8)), model="A")
    waiting = Placeholder("A", "Grad-CAM", "running: 40 %", layer="middle.block3.add")
    other = Placeholder("B", "Saliency", "waiting")
    fig = comparison_figure([done, waiting, other])
    texts = [a.text.replace("<br>", " ") for a in fig.layout.annotations]
    assert "running: 40 %" in texts and "waiting" in texts and "layer middle.block3.add" in texts
    assert sum(t.type == "image" for t in fig.data) == 1
    only_waiting = comparison_figure([other])
    assert any(a.text == "waiting" for a in only_waiting.layout.annotations)


def test_bad_scale_settings_are_clear_errors():
    item = _attribution(np.ones((3, 4, 4)))
    with pytest.raises(ExplainError, match="unknown scale"):
        scale_maps([item], scale="log")
    with pytest.raises(ExplainError, match="percentile"):
        scale_maps([item], percentile=0)
    with pytest.raises(ExplainError, match="vmax"):
        scale_maps([item], vmax=-1)
    with pytest.raises(ExplainError, match="nothing to compare"):
        comparison_figure([])
