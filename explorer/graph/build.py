"""Spec → ``networkx.DiGraph``: the network's data flow at layer or block level, no tracing.

Node ids are module paths of the built model (plus ``"input"``, the image), so
a node names the same thing as a cost-table row or a Captum layer. Every node
carries ``kind``, ``flow``, ``block``, ``in_shape``, ``out_shape``, ``params``,
``macs`` (from the cost model; a training-only node's MACs are reported but
left out of the cost model's totals), ``train_only``, ``order`` (execution
order), ``label`` (a short name for drawing) and ``layers`` (how many layers
it stands for). Every edge carries ``skip``: whether it lies on a residual
shortcut.
"""

from __future__ import annotations

from typing import Iterable, Literal

import networkx as nx

from explorer.cost import count_costs
from explorer.errors import ExplorerError
from explorer.spec import INPUT, Layer, Spec, spec_layers
from explorer.spec.schema import block_paths

Level = Literal["layer", "block"]
LEVELS: tuple[str, ...] = ("layer", "block")
INPUT_KIND = "input"
_SUMMED = ("params", "macs", "layers")


class GraphError(ExplorerError):
    """A graph cannot be built, drawn or written as asked (one readable line)."""


def shortcut_edges(layers: Iterable[Layer]) -> set[tuple[str, str]]:
    """The edges on residual shortcuts, as ``(source, target)`` layer names.

    An ``add`` layer's second input is its shortcut (the builder emits
    ``add(main, skip)``). From there the shortcut path is walked back through
    the single-input layers of the add's own block (a projection's
    ``skip.bn`` and ``skip.conv``) to the tensor that enters the block: every
    edge on that walk, the one leaving the block's input included, is a
    shortcut edge. An identity shortcut is the one edge block input → add.
    """
    by_name = {layer.name: layer for layer in layers}
    edges: set[tuple[str, str]] = set()
    for layer in by_name.values():
        if layer.kind != "add" or len(layer.inputs) != 2:
            continue
        target, source = layer.name, layer.inputs[1]
        while True:
            edges.add((source, target))
            producer = by_name.get(source)
            if producer is None or producer.block != layer.block or len(producer.inputs) != 1:
                break
            target, source = source, producer.inputs[0]
    return edges


def _short_label(name: str, block: str) -> str:
    """``entry.block2.sep1.depthwise`` in block ``entry.block2`` → ``sep1.depthwise``."""
    if name != block and name.startswith(block + "."):
        return name[len(block) + 1:]
    return name


def layer_graph(spec: Spec) -> nx.DiGraph:
    """The layer-level graph: one node per leaf module, edges along ``Layer.inputs``."""
    layers = spec_layers(spec)
    report = count_costs(spec)
    rows = {row.name: row for row in report.layers}
    graph = nx.DiGraph(spec=spec.name, level="layer", collapse_middle=False,
                       params=report.totals["params"], macs=report.totals["macs"])
    first = layers[0]
    graph.add_node(INPUT, kind=INPUT_KIND, flow=first.flow, block=INPUT, in_shape=first.in_shape,
                   out_shape=first.in_shape, params=0, macs=0, train_only=False, order=0,
                   label=INPUT, layers=0)
    for order, layer in enumerate(layers, 1):
        row = rows[layer.name]
        # the kind's name, not the enum: node attributes are plain data (GraphML writes no enums)
        graph.add_node(layer.name, kind=layer.kind.value, flow=layer.flow, block=layer.block,
                       in_shape=layer.in_shape, out_shape=layer.out_shape, params=row.params,
                       macs=row.macs, train_only=layer.train_only, order=order,
                       label=_short_label(layer.name, layer.block), layers=1)
    skips = shortcut_edges(layers)
    for layer in layers:
        for source in layer.inputs:
            graph.add_edge(source, layer.name, skip=(source, layer.name) in skips)
    return graph


def _merge(graph: nx.DiGraph, groups: dict[str, list[str]], attrs: dict[str, dict]) -> nx.DiGraph:
    """Contract each group of nodes into one node; edges between groups merge.

    A merged edge is a shortcut only if every edge it stands for is one.
    ``groups`` maps a new node id to its members, in execution order;
    ``attrs`` gives each new node's own attributes (kind, label, ...).
    """
    owner = {member: new for new, members in groups.items() for member in members}
    merged = nx.DiGraph(**graph.graph)
    for order, (new, members) in enumerate(groups.items()):
        data = [graph.nodes[m] for m in members]
        node = {
            "kind": data[0]["kind"], "flow": data[0]["flow"], "block": new,
            "in_shape": data[0]["in_shape"],
            "out_shape": next((d["out_shape"] for d in reversed(data) if not d["train_only"]),
                              data[-1]["out_shape"]),
            "train_only": all(d["train_only"] for d in data), "order": order, "label": new,
        }
        for key in _SUMMED:
            node[key] = sum(d[key] for d in data)
        node.update(attrs.get(new, {}))
        merged.add_node(new, **node)
    for u, v, skip in graph.edges(data="skip"):
        a, b = owner[u], owner[v]
        if a == b:
            continue
        if merged.has_edge(a, b):
            merged.edges[a, b]["skip"] = merged.edges[a, b]["skip"] and skip
        else:
            merged.add_edge(a, b, skip=skip)
    return merged


def _middle_repeats(spec: Spec) -> dict[str, list[str]]:
    """Repeated blocks of the middle flow: spec block name → its instance paths (non-empty only)."""
    return {b.name: block_paths(b) for b in spec.blocks
            if b.flow == "middle" and b.repeat is not None and block_paths(b)}


def build_graph(spec: Spec, level: Level = "layer", collapse_middle: bool = False) -> nx.DiGraph:
    """The network of ``spec`` as a data-flow graph (see the module docstring for its attributes).

    ``level="layer"``: one node per leaf module. ``level="block"``: one node
    per block instance (``entry.block2``, ``Mixed_6b``), its cost summed over
    its layers and its ``kind`` the spec's block type (``xception``,
    ``inception``, ...); Xception blocks also carry ``residual``
    (``identity``, ``projection`` or ``none``). ``collapse_middle`` folds the
    repeated middle-flow block into one node ``middle.block`` labelled with
    its repeat count (``middle.block ×8``), with ``repeat`` and ``members``.
    """
    if level not in LEVELS:
        raise GraphError(f"unknown graph level '{level}' (choose from {', '.join(LEVELS)})")
    graph = layer_graph(spec)
    repeats = _middle_repeats(spec) if collapse_middle else {}
    block_of = {path: b for b in spec.blocks for path in block_paths(b)}
    collapsed_of = {path: name for name, paths in repeats.items() for path in paths}
    attrs: dict[str, dict] = {}
    for name, paths in repeats.items():
        attrs[name] = {"kind": block_of[paths[0]].type if level == "block" else "repeat",
                       "label": f"{name} ×{len(paths)}", "repeat": len(paths), "members": tuple(paths)}
    if level == "block":
        for path, b in block_of.items():
            if path not in collapsed_of:
                attrs[path] = {"kind": b.type, "label": path}
                if b.type == "xception":
                    attrs[path]["residual"] = b.residual
        attrs[INPUT] = {"kind": INPUT_KIND, "label": INPUT}
    if level == "layer" and not repeats:
        return graph
    groups: dict[str, list[str]] = {}
    for node, data in graph.nodes(data=True):
        block = data["block"]
        if block in collapsed_of:
            key = collapsed_of[block]
        else:
            key = block if level == "block" else node
        groups.setdefault(key, []).append(node)
    if level == "layer":
        # a single layer keeps its own attributes (label, kind) under _merge
        for key, members in groups.items():
            if key not in attrs:
                attrs[key] = {k: graph.nodes[members[0]][k] for k in ("kind", "label", "block")}
    merged = _merge(graph, groups, attrs)
    merged.graph.update(level=level, collapse_middle=bool(collapse_middle))
    return merged


def summarize(graph: nx.DiGraph) -> str:
    """A few lines about a graph: its size, shortcuts and flows with their cost."""
    g = graph.graph
    lines = [f"{g.get('spec', '?')}: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges "
             f"({sum(1 for *_, s in graph.edges(data='skip') if s)} on shortcuts), level {g.get('level')}"
             + (", middle flow collapsed" if any("repeat" in d for _, d in graph.nodes(data=True)) else "")]
    flows: dict[str, list[int]] = {}
    for _, data in graph.nodes(data=True):
        row = flows.setdefault(data["flow"], [0, 0, 0])
        row[0] += 1
        row[1] += data["params"]
        row[2] += 0 if data["train_only"] else data["macs"]
    lines.append(f"{'flow':12s} {'nodes':>6s} {'params':>12s} {'MACs':>15s}")
    for flow, (n, params, macs) in flows.items():
        lines.append(f"{flow:12s} {n:6d} {params:12,d} {macs:15,d}")
    lines.append(f"{'total':12s} {graph.number_of_nodes():6d} {g.get('params', 0):12,d} {g.get('macs', 0):15,d}")
    return "\n".join(lines)
