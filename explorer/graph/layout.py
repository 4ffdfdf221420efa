"""Positions for drawing a network graph: layered, in execution order, flows as bands.

Data flows left to right. Each block is laid out on its own: a node's column
is its longest path from the block's input, parallel branches (Inception)
get lanes stacked around the block's centre line, joins (``add``,
``concat``) sit on the centre line, and a residual shortcut's own layers
(a projection's ``skip.conv``, ``skip.bn``) run in a lane above the block,
just before the add they feed. Blocks follow each other in rows; every flow
starts a new row and a flow longer than ``row_width`` columns wraps onto
more rows, at block boundaries. Rows stack top to bottom, and the rows of a
flow make its band. An edge from an earlier row enters its target row at the
row's left end (its *entry point*), along a routed connector.

Pure geometry: no plotly here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

LANE = 1.0  # vertical distance between parallel branches
SHORTCUT_LIFT = 0.9  # a shortcut lane sits this far above a block's top lane
ARC_ROOM = 0.8  # room above the centre line for an identity shortcut's arc
LABEL_ROOM = 0.75  # room above a row for block labels (layer level)
TEXT_ROOM = 0.55  # room below a lone node for its label
ROW_GAP = 0.8  # between rows; routed connectors run here
BAND_PAD = 0.3  # a band reaches this far beyond its rows
ENTRY_X = -0.9  # where edges from earlier rows enter a row
AUTO_ROW_WIDTH = 56


@dataclass(frozen=True)
class GroupBox:
    """A block's extent in the drawing (several nodes at layer level, one at block level)."""

    block: str
    flow: str
    row: int
    x0: float
    x1: float
    top: float
    bottom: float
    size: int


@dataclass(frozen=True)
class RowBox:
    """One row: its flow, centre line and vertical extent, and its rightmost column."""

    index: int
    flow: str
    center: float
    top: float
    bottom: float
    x1: float


@dataclass(frozen=True)
class Band:
    """The vertical extent of one flow's rows."""

    flow: str
    top: float
    bottom: float


@dataclass
class Layout:
    """Where everything goes: node positions, blocks, rows, flow bands and routed connectors."""

    pos: dict[str, tuple[float, float]]
    row_of: dict[str, int]
    rows: list[RowBox]
    groups: list[GroupBox]
    bands: list[Band]
    shortcut_nodes: set[str]
    routes: dict[tuple[str, int], list[tuple[float, float]]] = field(default_factory=dict)

    def entry(self, row: int) -> tuple[float, float]:
        """The point where edges from earlier rows enter ``row``."""
        return ENTRY_X, self.rows[row].center

    @property
    def x_max(self) -> float:
        return max((r.x1 for r in self.rows), default=0.0)

    @property
    def y_top(self) -> float:
        return max((b.top for b in self.bands), default=0.0)

    @property
    def y_bottom(self) -> float:
        return min((b.bottom for b in self.bands), default=0.0)


def _is_shortcut(graph: nx.DiGraph, v: str) -> bool:
    """A node whose every in- and out-edge is a shortcut edge: a projection's own layer."""
    ins, outs = graph.in_edges(v, data="skip"), graph.out_edges(v, data="skip")
    return bool(ins) and bool(outs) and all(s for *_, s in ins) and all(s for *_, s in outs)


def _place_group(graph: nx.DiGraph, members: list[str], shortcut: set[str]
                 ) -> tuple[dict[str, tuple[float, float]], int, float, float]:
    """Local positions (column, offset from the centre line) of one block's nodes.

    Returns the positions, the number of columns, and the top and bottom offsets.
    """
    inside = set(members)
    order = {v: i for i, v in enumerate(members)}
    preds = {v: sorted((u for u in graph.predecessors(v) if u in inside and u not in shortcut),
                       key=order.__getitem__) for v in members}
    rank: dict[str, int] = {}
    for v in members:
        if v not in shortcut:
            rank[v] = 1 + max((rank[u] for u in preds[v]), default=-1)
    for v in reversed(members):  # shortcut layers end just before the join they feed
        if v in shortcut:
            rank[v] = min((rank[w] for w in graph.successors(v) if w in rank), default=1) - 1
    low = min(rank.values())
    center = "center"
    lane: dict[str, int | str] = {}
    claimed: set[str] = set()
    lanes = 0
    for v in members:
        if v in shortcut:
            continue
        if len(preds[v]) >= 2:
            lane[v] = center
        elif preds[v] and preds[v][0] not in claimed:
            claimed.add(preds[v][0])
            lane[v] = lane[preds[v][0]]
        else:
            lane[v] = lanes
            lanes += 1
    half = (max(lanes, 1) - 1) / 2
    pos: dict[str, tuple[float, float]] = {}
    for v in members:
        if v in shortcut:
            dy = (half + SHORTCUT_LIFT) * LANE
        elif lane[v] == center:
            dy = 0.0
        else:
            dy = (half - int(lane[v])) * LANE
        pos[v] = (float(rank[v] - low), dy)
    ys = [p[1] for p in pos.values()]
    top, bottom = max(ys), min(ys)
    if any(s for v in members for *_, s in graph.in_edges(v, data="skip")):
        top = max(top, ARC_ROOM)
    span = int(max(p[0] for p in pos.values())) + 1
    return pos, span, top, bottom


def layout_graph(graph: nx.DiGraph, row_width: int | None = None) -> Layout:
    """Lay out ``graph`` (from :func:`build_graph`) in rows and flow bands; see the module docstring.

    ``row_width`` is the most columns a row holds before a flow wraps (a
    block wider than that gets a row of its own); by default
    ``AUTO_ROW_WIDTH`` or the widest block.
    """
    nodes = sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])
    shortcut = {v for v in nodes if _is_shortcut(graph, v)}
    blocks: dict[str, list[str]] = {}
    for v in nodes:
        blocks.setdefault(graph.nodes[v]["block"], []).append(v)
    placed = {b: _place_group(graph, members, shortcut) for b, members in blocks.items()}
    multi = any(len(m) > 1 for m in blocks.values())
    gap = 0.6 if multi else 0.0
    width = row_width or max(AUTO_ROW_WIDTH, max(span for _, span, _, _ in placed.values()))

    # blocks into rows: a new row per flow, and when a row is full
    row_blocks: list[list[str]] = []
    row_flow: list[str] = []
    x_of: dict[str, float] = {}
    used = 0.0
    for b, members in blocks.items():
        flow = graph.nodes[members[0]]["flow"]
        span = placed[b][1]
        start = used + gap + 1 if row_blocks and row_blocks[-1] else 0.0
        if not row_blocks or row_flow[-1] != flow or (row_blocks[-1] and start + span > width):
            row_blocks.append([])
            row_flow.append(flow)
            start = 0.0
        row_blocks[-1].append(b)
        x_of[b] = start
        used = start + span - 1

    rows: list[RowBox] = []
    groups: list[GroupBox] = []
    pos: dict[str, tuple[float, float]] = {}
    row_of: dict[str, int] = {}
    cursor = 0.0
    for index, (bs, flow) in enumerate(zip(row_blocks, row_flow)):
        if index and flow != row_flow[index - 1]:
            cursor -= 2 * BAND_PAD
        top = max(placed[b][2] for b in bs) + (LABEL_ROOM if multi else 0.2)
        # a lone node is labelled below itself; a block's label goes above it
        bottom = min(placed[b][3] - (0.2 if len(blocks[b]) > 1 else TEXT_ROOM) for b in bs)
        center = cursor - top
        x1 = 0.0
        for b in bs:
            local, span, gtop, gbottom = placed[b]
            for v, (dx, dy) in local.items():
                pos[v] = (x_of[b] + dx, center + dy)
                row_of[v] = index
            groups.append(GroupBox(b, flow, index, x_of[b], x_of[b] + span - 1, center + gtop,
                                   center + gbottom, len(blocks[b])))
            x1 = max(x1, x_of[b] + span - 1)
        rows.append(RowBox(index, flow, center, center + top, center + bottom, x1))
        cursor = center + bottom - ROW_GAP

    bands: list[Band] = []
    for row in rows:
        if bands and bands[-1].flow == row.flow:
            bands[-1] = Band(row.flow, bands[-1].top, row.bottom - BAND_PAD)
        else:
            bands.append(Band(row.flow, row.top + BAND_PAD, row.bottom - BAND_PAD))

    layout = Layout(pos, row_of, rows, groups, bands, shortcut)
    for u, v in graph.edges:
        ru, rv = row_of[u], row_of[v]
        if ru != rv and (u, rv) not in layout.routes:
            gap_y = (rows[ru].bottom + rows[ru + 1].top) / 2
            layout.routes[(u, rv)] = _route(pos[u], gap_y, layout.entry(rv))
    return layout


def _route(start: tuple[float, float], gap_y: float, entry: tuple[float, float]) -> list[tuple[float, float]]:
    """An orthogonal connector from a node out of its row, along the gap below it (at ``gap_y``),
    to a later row's entry point."""
    x, y = start
    return [(x, y), (x + 0.45, y), (x + 0.45, gap_y), (entry[0], gap_y), entry]
