"""Pieces several pages show: the totals row, cost charts, cached computations."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from explorer.cost import CostReport, count_costs
from explorer.format import count, mib, si, si_short
from explorer.plots import LINEAR_SI
from explorer.spec import Spec, parse_spec


@st.cache_data(max_entries=64, show_spinner=False)
def _costs(spec_yaml: str, batch: int) -> CostReport:
    return count_costs(parse_spec(spec_yaml), batch=batch)


def costs(spec: Spec, batch: int = 1) -> CostReport:
    """The spec's cost report, cached by the spec's content."""
    return _costs(spec.to_yaml(), batch)


TOTALS: tuple[tuple[str, str, Callable[[float], str], str], ...] = (
    ("Parameters", "params", count, "Learnable parameters, auxiliary head included."),
    ("MACs", "macs", lambda v: si(v), "Multiply-accumulates of one inference at batch 1 (FLOPs = 2 × MACs)."),
    ("Element-wise ops", "elementwise_ops", lambda v: si(v),
     "Batch norm, activations, adds and pooling, per element of their outputs: counted apart from MACs."),
    ("Peak activations", "peak_activation_bytes", mib,
     "Largest set of float32 tensors alive at once in one forward at batch 1."),
)


def signed(value: float, fmt: Callable[[float], str]) -> str:
    """``+1,234`` / ``-1,234``, or an empty string for zero (a metric reads its direction from the sign)."""
    if value == 0:
        return ""
    return ("+" if value > 0 else "-") + fmt(abs(value))


def percent(delta: float, reference: float) -> str:
    """`` (+12.5%)``: ``delta`` as a share of ``reference`` (empty when there is no reference)."""
    return f" ({delta / reference:+.1%})" if reference else ""


def totals_row(spec: Spec, base: Spec | None = None, pinned: tuple[Spec, str] | None = None) -> None:
    """Parameters, MACs, element-wise ops and peak activation memory as metrics, each with its change
    against ``base`` (the spec before the knobs) and, under the row, against the pinned A."""
    t = costs(spec).totals
    b = costs(base).totals if base is not None and base != spec else None
    row = st.container(horizontal=True, gap="medium")  # wraps on a narrow screen instead of truncating
    for label, key, fmt, help_text in TOTALS:
        delta = signed(t[key] - b[key], fmt) + percent(t[key] - b[key], b[key]) if b and t[key] != b[key] else None
        row.metric(label, fmt(t[key]), delta, delta_color="inverse", help=help_text, width=190,
                   delta_description="vs base" if delta else None)
    if pinned is not None:
        a, label = pinned
        ta = costs(a).totals
        parts = [f"{name} {signed(t[key] - ta[key], fmt) or 'same'}" for name, key, fmt, _ in TOTALS]
        st.caption(f"Against A ({label}): " + " · ".join(parts))


def change_summary(before: Spec, after: Spec) -> str:
    """What an edit did to the totals, in one line: ``parameters 22,855,952 → 16,xxx (-x%), MACs ...``."""
    a, b = costs(before).totals, costs(after).totals
    parts = [f"{label} {fmt(a[key])} → {fmt(b[key])}" + percent(b[key] - a[key], a[key])
             for label, key, fmt, _ in TOTALS if a[key] != b[key]]
    return "; ".join(parts) if parts else "the totals are unchanged"


METRICS: dict[str, tuple[str, Callable[[float], str]]] = {
    "macs": ("MACs", si_short),
    "params": ("parameters", si_short),
    "elementwise_ops": ("element-wise ops", si_short),
    "activation_bytes": ("activation memory", mib),
}


def breakdown_rows(report: CostReport, level: str, metric: str = "macs") -> pd.DataFrame:
    """``metric`` per flow or kind; for parameters, the training-only layers (Inception's auxiliary
    head) get a row of their own, so the bars add up to the parameter total."""
    rows = pd.DataFrame(report.by(level))[[level, metric]]
    if metric == "params":
        extra = sum(c.params for c in report.layers if c.train_only)
        if extra:
            rows = pd.concat([rows, pd.DataFrame([{level: "training only (aux head)", metric: extra}])],
                             ignore_index=True)
    return rows


def breakdown_chart(report: CostReport, level: str, metric: str = "macs") -> go.Figure:
    """A horizontal bar chart of ``metric`` per flow or kind, labelled in the units people read."""
    label, fmt = METRICS[metric]
    rows = breakdown_rows(report, level, metric)
    fig = px.bar(rows, x=metric, y=level, orientation="h", text=rows[metric].map(fmt),
                 labels={metric: label, level: level}, hover_data={metric: ":,"})
    axis = dict(range=[0, 1.35 * max(rows[metric].max(), 1)], **LINEAR_SI)
    if metric == "activation_bytes":  # ticks in MiB like the labels
        top = rows[metric].max()
        step = _nice_step(top / 2**20 / 4)
        ticks = [k * step for k in range(0, int(1.35 * top / 2**20 / step) + 1)]
        axis.update(tickvals=[t * 2**20 for t in ticks], ticktext=[f"{t:g} MiB" for t in ticks])
    fig.update_layout(height=60 + 32 * len(rows), margin=dict(l=10, r=10, t=10, b=10),
                      yaxis=dict(autorange="reversed", type="category", title=None), xaxis=axis)
    fig.update_traces(textposition="outside", cliponaxis=False)
    return fig


def _nice_step(raw: float) -> float:
    """The 1-2-5 step at or above ``raw``."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def session_watch(grace_s: float = 30) -> Callable[[], bool] | None:
    """A check a background job asks while it runs: is this browser session still there? A closed tab's
    job stops (after ``grace_s`` for a reconnect) instead of taking the machine from everyone else.
    None outside a served app (AppTest, a bare script): nothing to watch."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None
    runtime, session_id, gone_since = Runtime.instance(), ctx.session_id, []

    def alive() -> bool:
        if runtime.is_active_session(session_id):
            gone_since.clear()
            return True
        gone_since[:] = gone_since or [time.monotonic()]
        return time.monotonic() - gone_since[0] < grace_s

    return alive
