"""Pieces several pages show: the totals row, cost charts, cached computations."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from explorer.cost import CostReport, count_costs
from explorer.format import mib, si
from explorer.spec import Spec, parse_spec


@st.cache_data(max_entries=64, show_spinner=False)
def _costs(spec_yaml: str, batch: int) -> CostReport:
    return count_costs(parse_spec(spec_yaml), batch=batch)


def costs(spec: Spec, batch: int = 1) -> CostReport:
    """The spec's cost report, cached by the spec's content."""
    return _costs(spec.to_yaml(), batch)


def totals_row(spec: Spec, reference: Spec | None = None) -> None:
    """Parameters, MACs, FLOPs and peak activation memory as metrics (deltas against ``reference``)."""
    t = costs(spec).totals
    r = costs(reference).totals if reference is not None else None

    def delta(key: str, fmt) -> str | None:
        if r is None or t[key] == r[key]:
            return None
        d = t[key] - r[key]
        return ("+" if d > 0 else "-") + fmt(abs(d))

    cols = st.columns(4)
    cols[0].metric("Parameters", f"{t['params']:,}", delta("params", lambda v: f"{v:,}"), delta_color="inverse",
                   help="Learnable parameters, auxiliary head included.")
    cols[1].metric("MACs", si(t["macs"]), delta("macs", si), delta_color="inverse",
                   help="Multiply-accumulates of one inference at batch 1 (FLOPs = 2 × MACs).")
    cols[2].metric("FLOPs", si(t["flops"]), delta("flops", si), delta_color="inverse")
    cols[3].metric("Peak activations", mib(t["peak_activation_bytes"]), delta("peak_activation_bytes", mib),
                   delta_color="inverse", help="Largest set of float32 tensors alive at once in one forward.")


def breakdown_chart(report: CostReport, level: str, metric: str = "macs") -> go.Figure:
    """A horizontal bar chart of ``metric`` per flow or kind."""
    rows = pd.DataFrame(report.by(level))
    label = {"macs": "MACs", "params": "parameters", "elementwise_ops": "element-wise ops",
             "activation_bytes": "activation bytes"}[metric]
    fig = px.bar(rows, x=metric, y=level, orientation="h", text=rows[metric].map(si),
                 labels={metric: label, level: level})
    fig.update_layout(height=60 + 32 * len(rows), margin=dict(l=10, r=10, t=10, b=10),
                      yaxis=dict(autorange="reversed"), xaxis=dict(range=[0, 1.35 * max(rows[metric].max(), 1)]))
    fig.update_traces(textposition="outside", cliponaxis=False)
    return fig
