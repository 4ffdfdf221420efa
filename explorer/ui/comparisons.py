"""Two comparisons on the Costs page: separable versus regular convs, and configuration A versus B."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer.cost import CostDiff, WhatIf, diff_specs, what_if
from explorer.format import count, mib, shape, si
from explorer.plots import LINEAR_SI, log_axis
from explorer.spec import Spec, parse_spec
from explorer.ui import measured, session
from explorer.ui.widgets import signed


@st.cache_data(max_entries=32, show_spinner="Pricing every segments setting…")
def _what_if(spec_yaml: str) -> WhatIf:
    return what_if(parse_spec(spec_yaml))


@st.cache_data(max_entries=32, show_spinner=False)
def _diff(a_yaml: str, b_yaml: str) -> CostDiff:
    return diff_specs(parse_spec(a_yaml), parse_spec(b_yaml))


def separable_whatif(spec: Spec) -> None:
    """Each separable conv against the regular conv it replaces, and the segments spectrum."""
    w = _what_if(spec.to_yaml())
    if not w.separables:
        st.info("This network has no separable convolutions: every spatial conv here is a regular one.")
        return
    t, r = w.totals, w.regular_totals
    c = st.columns(3)
    c[0].metric("MACs as built", si(t["macs"]))
    c[1].metric("MACs with regular convs", si(r["macs"]), help="Every separable conv replaced by a regular conv "
                                                                 "with the same input, output and kernel.")
    c[2].metric("Separable / regular", f"{t['macs'] / r['macs']:.3f}",
                help="Per layer the ratio is 1/N + 1/D_K² (depthwise); the whole model also counts the "
                     "layers that stay the same.")
    rows = pd.DataFrame([s.to_dict() for s in w.separables])
    fig = go.Figure([
        go.Bar(name="separable", x=rows["name"], y=rows["macs"]),
        go.Bar(name="regular conv", x=rows["name"], y=rows["regular_macs"]),
    ])
    fig.update_layout(barmode="group", height=360, yaxis=dict(title="MACs", **LINEAR_SI),
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.3),
                      title="MACs of each separable conv and of the regular conv it stands for")
    st.plotly_chart(fig, width="stretch", key="whatif_bars")
    rows = rows.assign(kernel=rows["kernel"].map(shape))
    number = st.column_config.NumberColumn
    st.dataframe(rows[["name", "in_channels", "out_channels", "kernel", "groups", "macs", "regular_macs",
                       "ratio", "formula_ratio"]], width="stretch", hide_index=True,
                 column_config={"name": "separable conv", "in_channels": "in channels (M)",
                                "out_channels": "out channels (N)", "kernel": "kernel (D_K)",
                                "groups": "groups of the spatial conv",
                                "macs": number("MACs", format="localized"),
                                "regular_macs": number("MACs as a regular conv", format="localized"),
                                "ratio": number("ratio (counted)", format="%.4f"),
                                "formula_ratio": number("1/N + 1/D_K²", format="%.4f")})
    if w.spectrum:
        spectrum = pd.DataFrame([{"segments": str(p.segments), "MACs": p.macs, "parameters": p.params,
                                  "current": p.current} for p in w.spectrum])
        fig = go.Figure([go.Scatter(x=spectrum["segments"], y=spectrum["MACs"], mode="lines+markers",
                                    name="MACs", marker=dict(size=[14 if c else 8 for c in spectrum["current"]])),
                         go.Scatter(x=spectrum["segments"], y=spectrum["parameters"], mode="lines+markers",
                                    name="parameters", yaxis="y2")])
        fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10),
                          title="The segments spectrum: from a full spatial conv (1) to depthwise",
                          xaxis=dict(type="category", title="segments of the spatial conv"),
                          yaxis=log_axis(spectrum["MACs"], title="MACs"),
                          yaxis2=log_axis(spectrum["parameters"], title="parameters", overlaying="y",
                                          side="right"),
                          legend=dict(orientation="h", y=-0.25), modebar=dict(orientation="v"))
        st.plotly_chart(fig, width="stretch", key="segments_spectrum")


def compare(spec: Spec, pin: tuple[Spec, str] | None) -> None:
    """Pin the current configuration as A; show the current one (B) against it, counted and, on request,
    measured."""
    row = st.container(horizontal=True, vertical_alignment="bottom")
    now = session.describe_current()
    # keyed by what is shown: a label typed for one configuration never names another
    label = row.text_input("Label for A", value=now, key=f"pin_label_{spec.digest()}", width=420,
                           help="How A is named in the comparison; by default the network and its changed knobs.")
    if row.button("Pin current as A", type="primary", key="pin"):
        session.pin_current(label)
        st.rerun()
    if pin is None:
        st.info("Pin a configuration as A, change a knob or a block, and B (what you see now) is compared with A "
                "here and in the totals above.")
        return
    a, a_label = pin
    if row.button("Unpin", key="unpin"):
        session.unpin()
        st.rerun()
    diff = _diff(a.to_yaml(), spec.to_yaml())
    st.markdown(f"**A**: {a_label} — **B**: {now}")
    totals = pd.DataFrame([
        {"": name, "A": fmt(diff.a.totals[key]), "B": fmt(diff.b.totals[key]),
         "B − A": signed(diff.totals[key], fmt) or "0"}
        for name, key, fmt in [("parameters", "params", count), ("MACs", "macs", si),
                               ("element-wise ops", "elementwise_ops", si),
                               ("activation memory", "activation_bytes", mib),
                               ("peak activation memory", "peak_activation_bytes", mib)]])
    st.dataframe(totals, hide_index=True, width="stretch")
    measured.compare_view(a, a_label, spec, now)
    counts = {s: len(diff.of(s)) for s in ("added", "removed", "changed")}
    st.caption(f"{counts['added']:,} layers added, {counts['removed']:,} removed, {counts['changed']:,} changed.")
    if diff.layers:
        rows = pd.DataFrame([d.to_dict() for d in diff.layers])
        number = st.column_config.NumberColumn
        st.dataframe(rows[["name", "status", "kind", "flow", "changes", "delta_params", "delta_macs",
                           "delta_elementwise_ops", "delta_activation_bytes"]],
                     width="stretch", hide_index=True, height=360,
                     column_config={"name": "layer (module path)", "changes": "what changed",
                                    "delta_params": number("Δ parameters", format="localized"),
                                    "delta_macs": number("Δ MACs", format="localized"),
                                    "delta_elementwise_ops": number("Δ element-wise ops", format="localized"),
                                    "delta_activation_bytes": number("Δ output bytes", format="localized")})
