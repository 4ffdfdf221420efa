"""A network graph written out: node-link JSON, GraphML, or a standalone HTML figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx

from explorer.format import shape
from explorer.graph.build import GraphError

EXPORT_SUFFIXES: tuple[str, ...] = (".json", ".graphml", ".html")
_TUPLE_KEYS = ("in_shape", "out_shape", "members")


def _plain(value: Any) -> Any:
    """Tuples (shapes, member lists) as JSON lists."""
    return list(value) if isinstance(value, tuple) else value


def to_node_link(graph: nx.DiGraph) -> dict:
    """The graph as node-link data (``nodes``, ``edges``, ``graph``), ready for ``json.dumps``."""
    data = nx.node_link_data(graph, edges="edges")
    for node in data["nodes"]:
        for key, value in node.items():
            node[key] = _plain(value)
    return data


def from_node_link(data: dict | str) -> nx.DiGraph:
    """Read node-link data (a dict or its JSON text) back into a graph; shapes become tuples again."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise GraphError(f"not node-link JSON: {exc.msg} at line {exc.lineno}") from None
    try:
        graph = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    except (KeyError, TypeError, nx.NetworkXError) as exc:
        raise GraphError(f"not node-link graph data: {exc}") from None
    for _, attrs in graph.nodes(data=True):
        for key in _TUPLE_KEYS:
            if isinstance(attrs.get(key), list):
                attrs[key] = tuple(attrs[key])
    return graph


def _graphml_value(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return shape(value, sep="x") if all(isinstance(v, int) for v in value) else ",".join(map(str, value))
    if value is None:
        return ""
    return value


def to_graphml(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy whose attributes GraphML can hold: shapes as ``728x19x19``, member lists comma-joined."""
    safe = nx.DiGraph(**{k: _graphml_value(v) for k, v in graph.graph.items()})
    for node, attrs in graph.nodes(data=True):
        safe.add_node(node, **{k: _graphml_value(v) for k, v in attrs.items()})
    for u, v, attrs in graph.edges(data=True):
        safe.add_edge(u, v, **{k: _graphml_value(x) for k, x in attrs.items()})
    return safe


def write_graph(graph: nx.DiGraph, path: str | Path, figure: Any = None, **figure_kwargs: Any) -> Path:
    """Write ``graph`` to ``path``, the format chosen by its suffix (.json, .graphml, .html).

    For HTML, ``figure`` (a plotly figure) is written standalone, plotly.js
    included; without one it is drawn with ``graph_figure(graph, **figure_kwargs)``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise GraphError(f"cannot write '{path}': choose a file ending in {', '.join(EXPORT_SUFFIXES)}")
    from explorer.files import atomic_path, atomic_write_text  # each file written whole or not at all

    try:
        if suffix == ".json":
            atomic_write_text(path, json.dumps(to_node_link(graph), indent=1) + "\n", mode=None)
        elif suffix == ".graphml":
            with atomic_path(path, mode=None) as temporary:
                nx.write_graphml(to_graphml(graph), temporary)
        else:
            if figure is None:
                from explorer.graph.figure import graph_figure

                figure = graph_figure(graph, **figure_kwargs)
            with atomic_path(path, mode=None) as temporary:
                figure.write_html(temporary, include_plotlyjs=True, full_html=True)
    except OSError as exc:
        raise GraphError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return path
