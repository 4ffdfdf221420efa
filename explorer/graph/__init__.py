"""The network as a graph: a networkx DiGraph from the spec, its plotly figure and exports.

``build_graph`` needs only networkx; the figure and the exports import plotly
when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from explorer.graph.build import LEVELS, GraphError, build_graph, layer_graph, shortcut_edges, summarize

_LAZY = {
    "graph_figure": "explorer.graph.figure",
    "hover_text": "explorer.graph.figure",
    "layout_graph": "explorer.graph.layout",
    "to_node_link": "explorer.graph.export",
    "from_node_link": "explorer.graph.export",
    "to_graphml": "explorer.graph.export",
    "write_graph": "explorer.graph.export",
    "EXPORT_SUFFIXES": "explorer.graph.export",
}

__all__ = sorted(["LEVELS", "GraphError", "build_graph", "layer_graph", "shortcut_edges", "summarize", *_LAZY])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'explorer.graph' has no attribute '{name}'")
