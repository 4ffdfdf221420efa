"""Costs: the per-layer table, breakdowns, the separable-versus-regular what-if, and A/B compare."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.ui import comparisons, session, widgets

spec = session.current_spec()
pin = session.pinned()
st.title("Costs")
st.caption("Counted from the spec, not by running the model. MACs are multiply-accumulates "
           "(FLOPs = 2 × MACs); batch norm, activations, adds and pooling are element-wise ops, counted apart.")
widgets.totals_row(spec, reference=pin[0] if pin else None)

report = widgets.costs(spec)
layers_tab, breakdown_tab, whatif_tab, compare_tab = st.tabs(
    ["Per layer", "By flow and kind", "Separable vs regular", "Compare A / B"])

with layers_tab:
    table = pd.DataFrame(report.by("layer"))
    c1, c2, c3 = st.columns([2, 2, 1])
    flows = c1.multiselect("Flows", list(dict.fromkeys(table["flow"])), key="cost_flows")
    kinds = c2.multiselect("Kinds", sorted(set(table["kind"])), key="cost_kinds")
    hide_aux = c3.toggle("Hide training-only", value=True, key="cost_hide_aux",
                         help="Inception's auxiliary head runs in training only.")
    shown = table
    if flows:
        shown = shown[shown["flow"].isin(flows)]
    if kinds:
        shown = shown[shown["kind"].isin(kinds)]
    if hide_aux:
        shown = shown[~shown["train_only"]]
    shown = shown.assign(out_shape=shown["out_shape"].map(lambda s: "×".join(map(str, s))))
    st.dataframe(
        shown[["name", "kind", "flow", "block", "out_shape", "params", "macs", "elementwise_ops",
               "activation_bytes"]],
        width="stretch", hide_index=True, height=480,
        column_config={"macs": st.column_config.NumberColumn("MACs", format="%d"),
                       "params": st.column_config.NumberColumn("params", format="%d"),
                       "elementwise_ops": st.column_config.NumberColumn("element-wise ops", format="%d"),
                       "activation_bytes": st.column_config.NumberColumn("output bytes", format="%d")})
    st.caption(f"{len(shown)} of {len(table)} layers. Click a column header to sort.")
    st.download_button("Download as CSV", shown.to_csv(index=False), file_name=f"{spec.name}_costs.csv",
                       mime="text/csv")

with breakdown_tab:
    metric = st.segmented_control("Metric", ["macs", "params", "elementwise_ops", "activation_bytes"],
                                  default="macs", key="breakdown_metric") or "macs"
    c1, c2 = st.columns(2)
    c1.markdown("**By flow**")
    c1.plotly_chart(widgets.breakdown_chart(report, "flow", metric), width="stretch", key="by_flow")
    c2.markdown("**By kind**")
    c2.plotly_chart(widgets.breakdown_chart(report, "kind", metric), width="stretch", key="by_kind")
    st.markdown("**By block**")
    st.dataframe(pd.DataFrame(report.by("block")), width="stretch", hide_index=True)

with whatif_tab:
    comparisons.separable_whatif(spec)

with compare_tab:
    comparisons.compare(spec, pin)
