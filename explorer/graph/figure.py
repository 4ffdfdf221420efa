"""A plotly figure of a network graph: flows as labelled bands, cost on every node.

Nodes are coloured by kind (one trace per kind, so the legend toggles them)
or by flow, or on a log colour scale of MACs, parameters or measured time
(seconds per layer, given by the caller: a block sums its layers); their size
can show MACs or parameters too. Residual shortcuts are dashed curves above the
main path; edges from an earlier row arrive along dotted connectors. Every
node point carries its node id (a module path) in ``customdata``, so a click
in Streamlit (``on_select``) names the layer.
"""

from __future__ import annotations

import math
from typing import Iterable, Literal, Mapping

import networkx as nx
import plotly.graph_objects as go

from explorer.format import duration
from explorer.format import shape as _shape
from explorer.graph.build import INPUT_KIND, GraphError
from explorer.graph.layout import ARC_ROOM, ENTRY_X, Layout, layout_graph
from explorer.plots import nice_log_ticks
from explorer.spec.kinds import KINDS, Style

ColorBy = Literal["kind", "flow", "macs", "params", "time"]
SizeBy = Literal["macs", "params"]
COLOR_BY: tuple[str, ...] = ("kind", "flow", "macs", "params", "time")
SIZE_BY: tuple[str, ...] = ("macs", "params")

# Layer kinds are drawn as the kinds table says; these are the other node kinds: the image, a collapsed
# middle flow, and at block level the block types (a conv, pool or dropout block is drawn as its layer kind).
_OTHER_STYLES = {
    INPUT_KIND: Style("#222222", "square"), "input_affine": Style("#8c6d31", "circle"),
    "xception": Style("#2ca02c", "square"), "sepconv": Style("#17becf", "square"),
    "inception": Style("#1f77b4", "hexagon"), "aux_head": Style("#bcbd22", "star"),
    "classifier": Style("#e377c2", "star"), "repeat": Style("#2ca02c", "square"),
}
_STYLES = {**{kind.value: info.style for kind, info in KINDS.items()}, **_OTHER_STYLES}
_DEFAULT_STYLE = Style("#555555", "circle")
_JOINS = frozenset(kind.value for kind, info in KINDS.items() if info.join)
FLOW_FILLS = ("#e8f1fb", "#fdf0e1", "#e9f6e9", "#f6e9f4", "#fbf8dd", "#e6f6f7", "#f1ebf8")
SKIP_COLOR = "#c0392b"
EDGE_COLOR = "#7a7a7a"
UNTIMED_COLOR = "#d0d0d0"
_PX_PER_COL = 24
_PX_PER_COL_BLOCK = 95
_PX_PER_LANE = 30
_LABEL_PX = 110  # left margin for the flow labels
_CHAR_PX = 5.6  # width of a 10-px label character, for collision checks


def style_of(kind: str) -> Style:
    """How the figure draws a node of ``kind`` (a layer kind, a block type, ``input`` or ``repeat``)."""
    return _STYLES.get(kind, _DEFAULT_STYLE)


def _human(value: int | float) -> str:
    """1234567 → '1.23 M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f}"


def node_times(graph: nx.DiGraph, values: Mapping[str, float]) -> dict[str, float]:
    """Each node's measured seconds from ``values`` (module path → seconds): a layer node's own value; a
    block node (or a collapsed middle flow) the sum over the layers under it. Nodes nothing was measured
    for are left out."""
    owner = {n: n for n in graph.nodes}
    for node, members in graph.nodes(data="members"):
        for member in members or ():
            owner.setdefault(member, node)
    times: dict[str, float] = {}
    for name, seconds in values.items():
        parts = name.split(".")
        # the node of a layer: the layer itself, else the nearest enclosing block (module paths nest)
        node = next((owner[p] for p in (".".join(parts[:i]) for i in range(len(parts), 0, -1)) if p in owner),
                    None)
        if node is not None:
            times[node] = times.get(node, 0.0) + float(seconds)
    return times


def hover_text(node: str, data: dict, seconds: float | None = None) -> str:
    """The hover box of one node: name, kind, block, shapes, parameters, MACs and the measured time if given."""
    lines = [f"<b>{node}</b>", f"{data['kind']} · {data['flow']} flow"]
    if data.get("block") not in (node, None):
        lines.append(f"block: {data['block']}")
    if data.get("repeat") is not None:
        lines.append(f"{data['repeat']} blocks: {', '.join(data.get('members', ()))}")
    elif data.get("layers", 1) > 1:
        lines.append(f"{data['layers']} layers")
    if data.get("residual"):
        lines.append(f"residual: {data['residual']}")
    lines.append(f"in {_shape(data['in_shape'])} → out {_shape(data['out_shape'])}")
    lines.append(f"params: {data['params']:,} ({_human(data['params'])})")
    lines.append(f"MACs: {data['macs']:,} ({_human(data['macs'])})")
    if seconds is not None:
        lines.append(f"measured: {duration(seconds)}")
    if data.get("train_only"):
        lines.append("<i>training only: not run in eval</i>")
    return "<br>".join(lines)


def _bezier(p0: tuple[float, float], c: tuple[float, float], p1: tuple[float, float], n: int = 12
            ) -> list[tuple[float, float]]:
    pts = []
    for i in range(n + 1):
        t = i / n
        a, b, d = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        pts.append((a * p0[0] + b * c[0] + d * p1[0], a * p0[1] + b * c[1] + d * p1[1]))
    return pts


def _skip_curve(p0: tuple[float, float], p1: tuple[float, float]) -> list[tuple[float, float]]:
    """A shortcut edge: an arc over the main path, or a bend into or out of the shortcut lane."""
    (x0, y0), (x1, y1) = p0, p1
    if abs(y0 - y1) < 1e-6:
        lift = min(ARC_ROOM, 0.3 + 0.05 * abs(x1 - x0))
        return _bezier(p0, ((x0 + x1) / 2, y0 + 2 * lift), p1)
    control = (x0, y1) if y1 > y0 else (x1, y0)
    return _bezier(p0, control, p1)


def _edge_points(graph: nx.DiGraph, layout: Layout) -> tuple[list, list, list]:
    """Polyline coordinates of the main edges, the shortcut edges and the row-to-row connectors."""
    main: list[tuple[float, float] | None] = []
    skips: list[tuple[float, float] | None] = []
    routes: list[tuple[float, float] | None] = []
    pos, row_of = layout.pos, layout.row_of
    for u, v, skip in graph.edges(data="skip"):
        p1 = pos[v]
        p0 = pos[u] if row_of[u] == row_of[v] else layout.entry(row_of[v])
        if skip:
            skips.extend(_skip_curve(p0, p1))
            skips.append(None)
            continue
        (x0, y0), (x1, y1) = p0, p1
        if abs(y0 - y1) < 1e-6 or x1 - x0 <= 1.01:
            main.extend([p0, p1, None])
        elif graph.in_degree(v) >= 2:  # into a join: along the branch's lane, then bend
            main.extend([p0, (x1 - 0.6, y0), p1, None])
        else:  # a branch leaving a fork: bend at once, then along its lane
            main.extend([p0, (x0 + 0.6, y1), p1, None])
    for points in layout.routes.values():
        routes.extend([*points, None])
    for node, data in graph.nodes(data=True):
        if data.get("residual") in ("identity", "projection"):  # block level: the shortcut inside a block
            x, y = pos[node]
            skips.extend([*_bezier((x - 0.42, y), (x, y + 1.0), (x + 0.42, y)), None])
    return main, skips, routes


def _xy(points: list) -> tuple[list, list]:
    return ([p[0] if p else None for p in points], [p[1] if p else None for p in points])


def _log_scale(values: Iterable[int]) -> list[float]:
    return [math.log10(1 + v) for v in values]


_NARROW_PX = 700  # the plot width a narrow screen gives the figure


def graph_figure(graph: nx.DiGraph, color_by: ColorBy = "kind", size_by: SizeBy | None = "macs", *,
                 title: str | None = None, width: int | None = None, height: int | None = None,
                 row_width: int | None = None, selected: Iterable[str] = (),
                 values: Mapping[str, float] | None = None) -> go.Figure:
    """Draw a graph from :func:`build_graph` as a plotly figure (see the module docstring).

    ``color_by``: ``kind`` or ``flow`` (one trace per value) or ``macs`` /
    ``params`` / ``time`` (log colour scale). ``time`` needs ``values``:
    measured seconds per layer (module path → seconds), summed over a block's
    layers at block level; nodes without a time are grey. ``size_by``:
    ``macs``, ``params`` or ``None`` (size by kind). ``selected`` node ids
    are ringed. ``width`` and ``height`` default to a size that fits the
    graph; ``row_width`` is the layout's wrap width in columns.
    """
    if color_by not in COLOR_BY:
        raise GraphError(f"cannot colour by '{color_by}' (choose from {', '.join(COLOR_BY)})")
    if color_by == "time" and values is None:
        raise GraphError("colouring by time needs the measured times (values: module path → seconds)")
    if size_by is not None and size_by not in SIZE_BY:
        raise GraphError(f"cannot size by '{size_by}' (choose from {', '.join(SIZE_BY)} or none)")
    layout = layout_graph(graph, row_width)
    pos = layout.pos
    block_level = graph.graph.get("level") == "block"
    nodes = sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])
    data = graph.nodes
    times = node_times(graph, values) if values is not None else {}

    x_range = layout.x_max + 1.0 - ENTRY_X
    col_px = _PX_PER_COL_BLOCK if block_level else _PX_PER_COL
    width = width or int(min(1800, max(640, 80 + _LABEL_PX + col_px * x_range)))
    y_span = layout.y_top - layout.y_bottom
    height = height or int(min(6000, max(260, 90 + _PX_PER_LANE * y_span * (1.3 if block_level else 1))))
    plot_px = max(100, width - 40)
    margin_units = _LABEL_PX * (x_range + 0.6) / max(plot_px - _LABEL_PX, 100)
    x_left = ENTRY_X - 0.3 - margin_units

    def sizes(members: list[str]) -> list[float]:
        if size_by is None:
            return [style_of(data[n]["kind"]).size for n in members]
        top = max((data[n][size_by] for n in nodes), default=0) or 1
        # joins stay visible though they cost nothing
        return [max(6 + 20 * math.sqrt(data[n][size_by] / top), 10 if data[n]["kind"] in _JOINS else 0)
                for n in members]

    traces: list[go.BaseTraceType] = []
    main, skips, routes = _edge_points(graph, layout)
    for points, name, line in ((main, "data flow", dict(color=EDGE_COLOR, width=1)),
                               (routes, "continues on the next row", dict(color="#9a9a9a", width=1, dash="dot")),
                               (skips, "residual shortcut", dict(color=SKIP_COLOR, width=1.4, dash="dash"))):
        if points:
            xs, ys = _xy(points)
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", line=line, name=name, hoverinfo="skip",
                                     showlegend=name == "residual shortcut", legendrank=2000))

    projections = [n for n in nodes if data[n].get("residual") == "projection"]
    if projections:  # block level: a projection shortcut's 1×1 conv, on top of its arc
        traces.append(go.Scatter(x=[pos[n][0] for n in projections], y=[pos[n][1] + 0.5 for n in projections],
                                 mode="markers", name="1×1 conv projection", hoverinfo="skip", legendrank=2001,
                                 customdata=projections,
                                 marker=dict(symbol="square", size=7, color=SKIP_COLOR)))

    # A label goes above its node when it would run into its left neighbour's label below, judged at a
    # narrow screen's width (the page may draw the figure narrower than it asks): long names never run together.
    text_side: dict[str, str] = {}
    unit_px = (min(plot_px, _NARROW_PX) - _LABEL_PX) / max(x_range, 1)
    for row_y in {pos[n][1] for n in nodes}:
        right_end = -math.inf  # where the last label below ends, in px
        for n in sorted((n for n in nodes if pos[n][1] == row_y), key=lambda n: pos[n][0]):
            half = max(map(len, _wrap_label(_block_label(data[n]["label"], data[n]["flow"])).split("<br>"))) \
                * _CHAR_PX / 2
            x = pos[n][0] * unit_px
            if x - half > right_end + 6:
                text_side[n], right_end = "bottom center", x + half
            else:
                text_side[n] = "top center"

    def node_trace(members: list[str], name: str, marker: dict, showlegend: bool = True) -> go.Scatter:
        return go.Scatter(
            x=[pos[n][0] for n in members], y=[pos[n][1] for n in members],
            mode="markers+text" if block_level else "markers", name=name, legendgroup=name,
            text=[_wrap_label(_block_label(data[n]["label"], data[n]["flow"])) for n in members]
            if block_level else None,
            textposition=[text_side[n] for n in members] if block_level else None, textfont=dict(size=10),
            customdata=list(members), hovertext=[hover_text(n, data[n], times.get(n)) for n in members],
            hoverinfo="text", marker=marker, showlegend=showlegend, cliponaxis=False,
            opacity=None, selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0.5)))

    if color_by in ("kind", "flow"):
        by: dict[str, list[str]] = {}
        for n in nodes:
            by.setdefault(data[n][color_by], []).append(n)
        fills = {flow: FLOW_FILLS[i % len(FLOW_FILLS)] for i, flow in enumerate(b.flow for b in layout.bands)}
        for i, (value, members) in enumerate(by.items()):
            if color_by == "kind":
                color = style_of(value).color
            else:
                color = _darker(fills.get(value, "#888888"))
            marker = dict(color=color, size=sizes(members),
                          symbol=[style_of(data[n]["kind"]).symbol for n in members],
                          line=dict(color="white", width=0.6),
                          opacity=[0.45 if data[n]["train_only"] else 1.0 for n in members])
            traces.append(node_trace(members, value, marker))
    elif color_by == "time":
        timed = [n for n in nodes if times.get(n, 0) > 0]
        untimed = [n for n in nodes if n not in timed]
        if timed:
            ticks = nice_log_ticks(min(times[n] for n in timed), max(times[n] for n in timed), max_ticks=6)
            marker = dict(color=[math.log10(times[n]) for n in timed], colorscale="Inferno", reversescale=True,
                          cmin=math.log10(ticks[0]), cmax=math.log10(ticks[-1]), size=sizes(timed),
                          symbol=[style_of(data[n]["kind"]).symbol for n in timed],
                          line=dict(color="#444444", width=0.6),
                          colorbar=dict(title=dict(text="measured time"), tickvals=[math.log10(t) for t in ticks],
                                        ticktext=[duration(t) for t in ticks], thickness=12, len=0.5))
            traces.append(node_trace(timed, "measured time", marker, showlegend=False))
        if untimed:
            marker = dict(color=UNTIMED_COLOR, size=sizes(untimed), line=dict(color="white", width=0.6),
                          symbol=[style_of(data[n]["kind"]).symbol for n in untimed])
            traces.append(node_trace(untimed, "no time of its own", marker))
    else:
        counts = [data[n][color_by] for n in nodes]
        cmax = max(1, math.ceil(math.log10(1 + max(counts, default=0))))
        ticks = list(range(0, cmax + 1, 3 if cmax > 6 else 1))
        marker = dict(color=_log_scale(counts), colorscale="Viridis", cmin=0, cmax=cmax, size=sizes(nodes),
                      symbol=[style_of(data[n]["kind"]).symbol for n in nodes],
                      line=dict(color="white", width=0.6),
                      colorbar=dict(title=dict(text="MACs" if color_by == "macs" else "params"),
                                    tickvals=ticks, ticktext=[_human(10 ** t) if t else "0" for t in ticks],
                                    thickness=12, len=0.5))
        traces.append(node_trace(nodes, color_by, marker, showlegend=False))
    chosen = [n for n in selected if n in pos]
    if chosen:
        traces.append(go.Scatter(x=[pos[n][0] for n in chosen], y=[pos[n][1] for n in chosen], mode="markers",
                                 name="selected", customdata=chosen, hoverinfo="skip", showlegend=False,
                                 marker=dict(symbol="circle-open", size=24, color="black", line=dict(width=2))))

    shapes: list[dict] = []
    annotations: list[dict] = []
    for i, band in enumerate(layout.bands):
        shapes.append(dict(type="rect", layer="below", x0=x_left, x1=layout.x_max + 0.8, y0=band.bottom,
                           y1=band.top, fillcolor=FLOW_FILLS[i % len(FLOW_FILLS)], line=dict(width=0)))
        members = [n for n in nodes if data[n]["flow"] == band.flow]
        label = f"<b>{band.flow}</b>"
        if members and all(data[n]["train_only"] for n in members):
            label += "<br><i>training only</i>"
        annotations.append(dict(x=x_left + 0.15, y=band.top - 0.1, text=label, showarrow=False,
                                xanchor="left", yanchor="top", align="left", font=dict(size=13)))
    if not block_level:
        px_per_unit = (plot_px - _LABEL_PX) / max(x_range, 1)
        last_raised: dict[int, bool] = {}
        right_end: dict[int, float] = {}  # per row: where the last lone-node label ends (px)
        for group in layout.groups:
            if group.size < 2:
                node = next(n for n in nodes if data[n]["block"] == group.block)
                x, y = pos[node]
                text = _block_label(data[node]["label"], group.flow)
                half = len(text) * _CHAR_PX * 0.9 / 2
                if x * px_per_unit - half > right_end.get(group.row, -1e9) + 4:  # else: hover has it
                    right_end[group.row] = x * px_per_unit + half
                    annotations.append(dict(x=x, y=y - 0.22, text=text, showarrow=False, yanchor="top",
                                            font=dict(size=9, color="#555555")))
                continue
            shapes.append(dict(type="rect", layer="below", x0=group.x0 - 0.4, x1=group.x1 + 0.4,
                               y0=group.bottom - 0.3, y1=group.top + 0.25, fillcolor="rgba(255,255,255,0.55)",
                               line=dict(color="#c8c8c8", width=1)))
            text = _block_label(group.block, group.flow)
            narrow = len(text) * _CHAR_PX > (group.x1 - group.x0 + 0.8) * px_per_unit
            raise_it = narrow and not last_raised.get(group.row, False)
            last_raised[group.row] = raise_it
            annotations.append(dict(x=(group.x0 + group.x1) / 2, y=group.top + 0.25, text=text,
                                    showarrow=False, yanchor="bottom", yshift=11 if raise_it else 0,
                                    font=dict(size=10, color="#333333")))

    fig = go.Figure(data=traces)
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=16)) if title else None,
        width=width, height=height, plot_bgcolor="white", paper_bgcolor="white",
        margin=dict(l=10, r=10, t=60 if title else 30, b=10),
        xaxis=dict(visible=False, range=[x_left - 0.1, layout.x_max + 0.9], fixedrange=False),
        yaxis=dict(visible=False, range=[layout.y_bottom - 0.2, layout.y_top + (0.55 if block_level else 0.2)]),
        # the legend sits under the drawing: above it, the toolbar would cover it on a narrow screen
        legend=dict(orientation="h", x=0, y=0, yanchor="top", font=dict(size=11), itemsizing="constant"),
        hoverlabel=dict(font=dict(size=12), align="left"), clickmode="event+select", dragmode="pan",
        shapes=shapes, annotations=annotations,
        meta=dict(spec=graph.graph.get("spec"), level=graph.graph.get("level")),
    )
    return fig


def _block_label(block: str, flow: str) -> str:
    """``entry.block2`` in the entry flow → ``block2``; other names as they are."""
    return block[len(flow) + 1:] if block.startswith(flow + ".") else block


def _wrap_label(text: str, room: int = 10) -> str:
    """Break a long block name at its middle underscore: ``Conv2d_1a_3x3`` → ``Conv2d<br>1a_3x3``."""
    if len(text) <= room or "_" not in text:
        return text
    cuts = [i for i, ch in enumerate(text) if ch == "_"]
    cut = min(cuts, key=lambda i: abs(i - len(text) / 2))
    return f"{text[:cut]}<br>{text[cut + 1:]}"


def _darker(hex_color: str, factor: float = 0.55) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return "#%02x%02x%02x" % tuple(int(c * factor) for c in (r, g, b))
