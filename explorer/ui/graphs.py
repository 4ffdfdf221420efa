"""The flow graph on a page: level, colouring and collapsing controls over a cached figure."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from explorer.graph import build_graph, graph_figure
from explorer.spec import Spec, parse_spec
from explorer.ui import measured

_SIZE = {"MACs": "macs", "parameters": "params", "nothing": None}
_COLOUR = {"kind": "kind", "flow": "flow", "MACs": "macs", "measured time": "time"}


@st.cache_data(max_entries=32, show_spinner="Drawing the graph…")
def _figure(spec_yaml: str, level: str, size_by: str | None, collapse: bool, color_by: str = "kind",
            values: tuple[tuple[str, float], ...] | None = None) -> go.Figure:
    graph = build_graph(parse_spec(spec_yaml), level=level, collapse_middle=collapse)
    return graph_figure(graph, color_by=color_by, size_by=size_by, values=dict(values) if values else None)


def flow_graph(spec: Spec, key: str, *, default_level: str = "block", selectable: bool = False) -> str | None:
    """Draw ``spec``'s graph with its controls; return the clicked node's module path if ``selectable``.

    When this session has measured ``spec`` (the Costs page's Measured tab), the nodes can be coloured by
    their measured time."""
    timed = measured.measured_for(spec)
    controls = st.container(horizontal=True, gap="medium")  # wraps on a narrow screen instead of clipping
    level = controls.segmented_control("Level", ["block", "layer"], default=default_level, key=f"{key}_level",
                                       format_func={"block": "blocks", "layer": "layers"}.get) or default_level
    size = controls.segmented_control("Size by", list(_SIZE), default="MACs", key=f"{key}_size") or "MACs"
    colours = [c for c in _COLOUR if timed is not None or c != "measured time"]
    # keyed by whether a time can be shown: the choices differ, so the widget does too
    colour = controls.segmented_control("Colour by", colours, default="kind",
                                        key=f"{key}_colour_{'timed' if timed else 'counted'}") or "kind"
    has_middle = any(b.flow == "middle" and b.repeat for b in spec.blocks)
    collapse = controls.toggle("Collapse middle flow", value=False, key=f"{key}_collapse", disabled=not has_middle)
    values = None
    if colour == "measured time":
        values = tuple((layer.name, layer.seconds) for layer in timed.profile.layers)
        st.caption(f"Colour: each layer's median time measured on {timed.settings.describe()} (a block: the sum "
                   "of its layers), on a log scale; grey: no time of its own (the input, or a layer folded "
                   "into its conv in the inference copy).")
    fig = _figure(spec.to_yaml(), level, _SIZE[size], collapse and has_middle, _COLOUR[colour], values)
    if not selectable:
        st.plotly_chart(fig, width="stretch", key=f"{key}_chart")
        return None
    event = st.plotly_chart(fig, width="stretch", key=f"{key}_chart", on_select="rerun",
                            selection_mode="points")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for point in points:
        data = point.get("customdata")
        if data:
            return data[0] if isinstance(data, (list, tuple)) else str(data)
    return None
