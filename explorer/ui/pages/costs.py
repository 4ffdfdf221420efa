"""Costs: the per-layer table, breakdowns, the measured time and roofline, the separable-versus-regular
what-if, and A/B compare (counted and measured)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.cost.tables import cost_csv
from explorer.format import shape as shape_text
from explorer.ui import comparisons, measured, session, widgets

spec = session.current_spec()
pin = session.pinned()
st.title("Costs")
st.caption("Counted from the spec, not by running the model. MACs are multiply-accumulates "
           "(FLOPs = 2 × MACs); batch norm, activations, adds and pooling are element-wise ops, counted apart.")
widgets.totals_row(spec, base=session.base_spec(), pinned=pin)

report = widgets.costs(spec)
layers_tab, breakdown_tab, measured_tab, whatif_tab, compare_tab = st.tabs(
    ["Per layer", "By flow and kind", "Measured", "Separable vs regular", "Compare A / B"], key="costs_tab")

NUMBER = st.column_config.NumberColumn
COUNTS = {"params": NUMBER("parameters", format="localized"), "macs": NUMBER("MACs", format="localized"),
          "elementwise_ops": NUMBER("element-wise ops", format="localized"),
          "activation_bytes": NUMBER("output bytes", format="localized"),
          "weight_bytes": NUMBER("weight bytes", format="localized"),
          "flops": NUMBER("FLOPs", format="localized"), "layers": NUMBER("layers", format="localized")}

with layers_tab:
    table = pd.DataFrame(report.by("layer"))
    table = table.assign(in_shape=table["in_shape"].map(shape_text), out_shape=table["out_shape"].map(shape_text))
    filters = st.container(horizontal=True, gap="small")
    flow_options, kind_options = list(dict.fromkeys(table["flow"])), sorted(set(table["kind"]))
    # keyed by the choices: a filter picked for one network never hides another's rows
    flows = filters.multiselect("Flows", flow_options, key=f"cost_flows_{'_'.join(flow_options)}", width=260)
    kinds = filters.multiselect("Kinds", kind_options, key=f"cost_kinds_{'_'.join(kind_options)}", width=260)
    hide_aux = filters.toggle("Hide training-only", value=True, key="cost_hide_aux",
                              help="Inception's auxiliary head runs in training only.")
    shown = table
    if flows:
        shown = shown[shown["flow"].isin(flows)]
    if kinds:
        shown = shown[shown["kind"].isin(kinds)]
    if hide_aux:
        shown = shown[~shown["train_only"]]
    st.dataframe(
        shown[["name", "kind", "flow", "block", "in_shape", "out_shape", "params", "macs", "elementwise_ops",
               "activation_bytes"]],
        width="stretch", hide_index=True, height=480,
        column_config={**COUNTS, "name": "layer (module path)", "in_shape": "input (C×H×W)",
                       "out_shape": "output (C×H×W)"})
    st.caption(f"{len(shown):,} of {len(table):,} layers. Click a column header to sort.")
    st.download_button("Download as CSV", cost_csv(report, "layer", only=set(shown["name"])),
                       file_name=f"{spec.name}_costs.csv", mime="text/csv",
                       help="The rows shown, exact integers, shapes as C x H x W (the CLI's `costs --csv`).")

with breakdown_tab:
    metric = st.segmented_control("Metric", list(widgets.METRICS), default="macs", key="breakdown_metric",
                                  format_func=lambda m: widgets.METRICS[m][0]) or "macs"
    c1, c2 = st.columns(2)
    c1.markdown("**By flow**")
    c1.plotly_chart(widgets.breakdown_chart(report, "flow", metric), width="stretch", key="by_flow")
    c2.markdown("**By kind**")
    c2.plotly_chart(widgets.breakdown_chart(report, "kind", metric), width="stretch", key="by_kind")
    if metric == "params" and any(c.train_only for c in report.layers):
        st.caption("Training-only layers (the auxiliary head) have a bar of their own, so the bars add up to the "
                   "parameter total; their MACs, element-wise ops and memory are not counted (they do not run "
                   "in inference).")
    st.markdown("**By block**")
    st.dataframe(pd.DataFrame(report.by("block")), width="stretch", hide_index=True, column_config=COUNTS)

with measured_tab:
    measured.view(spec)

with whatif_tab:
    comparisons.separable_whatif(spec)

with compare_tab:
    comparisons.compare(spec, pin)
