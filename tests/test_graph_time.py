"""The graph coloured by measured time: each node's colour is the log of the seconds it was given (a block
the sum of its layers'), nodes without a time are grey, and the hover says the time."""

from __future__ import annotations

import math

import pytest

from explorer.graph import GraphError, build_graph, graph_figure
from explorer.graph.figure import UNTIMED_COLOR, duration, node_times
from explorer.spec import INPUT, load_spec, spec_layers

XCEPTION = load_spec("xception")


def made_up_times(spec) -> dict[str, float]:
    """A distinct time per layer, spanning four decades (no timing: the figure only reads them)."""
    layers = spec_layers(spec)
    return {layer.name: 1e-6 * 10 ** (4 * i / (len(layers) - 1)) for i, layer in enumerate(layers)}


def timed_trace(fig):
    return next(t for t in fig.data if t.name == "measured time")


def test_layer_nodes_are_coloured_by_the_log_of_their_own_time():
    values = made_up_times(XCEPTION)
    fig = graph_figure(build_graph(XCEPTION, level="layer"), color_by="time", values=values)
    trace = timed_trace(fig)
    assert list(trace.customdata) == list(values)  # every layer, in execution order
    assert list(trace.marker.color) == pytest.approx([math.log10(values[n]) for n in trace.customdata])
    assert trace.marker.cmin <= min(trace.marker.color) and trace.marker.cmax >= max(trace.marker.color)
    grey = next(t for t in fig.data if t.name == "no time of its own")
    assert list(grey.customdata) == [INPUT] and grey.marker.color == UNTIMED_COLOR
    hover = dict(zip(trace.customdata, trace.hovertext))
    name = "entry.block2.sep1.depthwise"
    assert f"measured: {duration(values[name])}" in hover[name]


@pytest.mark.parametrize("collapse", [False, True])
def test_a_block_is_coloured_by_the_sum_of_its_layers(collapse):
    values = made_up_times(XCEPTION)
    graph = build_graph(XCEPTION, level="block", collapse_middle=collapse)
    trace = timed_trace(graph_figure(graph, color_by="time", values=values))
    by_node = dict(zip(trace.customdata, trace.marker.color))
    for node, data in graph.nodes(data=True):
        if node == INPUT:
            continue
        blocks = data.get("members") or (node,)
        expected = sum(s for name, s in values.items()
                       if any(name == b or name.startswith(b + ".") for b in blocks))
        assert by_node[node] == pytest.approx(math.log10(expected)), node
    # the sums cover every layer exactly once
    times = node_times(graph, values)
    assert sum(times.values()) == pytest.approx(sum(values.values()))
    if collapse:
        assert times["middle.block"] == pytest.approx(
            sum(s for n, s in values.items() if n.startswith("middle.")))


def test_a_layer_without_a_time_is_grey_and_the_rest_keep_their_colours():
    values = made_up_times(XCEPTION)
    folded = [n for n in values if n.endswith(".bn")][:5]  # as the inference copy folds a batch norm
    for name in folded:
        del values[name]
    fig = graph_figure(build_graph(XCEPTION, level="layer"), color_by="time", values=values)
    grey = next(t for t in fig.data if t.name == "no time of its own")
    assert set(grey.customdata) == {INPUT, *folded}
    trace = timed_trace(fig)
    assert dict(zip(trace.customdata, trace.marker.color)) == pytest.approx(
        {n: math.log10(s) for n, s in values.items()})


def test_time_colouring_needs_the_times():
    with pytest.raises(GraphError, match="measured times"):
        graph_figure(build_graph(XCEPTION, level="block"), color_by="time")


def test_durations_read_in_the_unit_people_use():
    assert (duration(2.5e-5), duration(0.0123), duration(2.0)) == ("25 µs", "12.3 ms", "2 s")
