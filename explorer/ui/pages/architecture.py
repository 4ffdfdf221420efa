"""Architecture: the flow graph, the totals, and the spec as a table, as YAML and as a file."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from explorer.spec import Spec, SpecError, parse_spec
from explorer.spec.table import COLUMNS, spec_from_rows, spec_to_rows
from explorer.ui import graphs, session, widgets


def apply_edit(make: Callable[[], Spec], source: str, what: str = "Not applied") -> None:
    """Make the edited spec the new base; a bad edit shows why (next to the editor) and changes nothing."""
    try:
        new = make()
    except SpecError as exc:
        st.error(f"{what} — {exc}", icon="⚠️")
    else:
        session.set_base(new, source)
        st.rerun()


spec = session.current_spec()
st.title("Architecture")
st.caption(f"**{spec.name}** — {spec.description}" if spec.description else f"**{spec.name}**")
widgets.totals_row(spec)

left, right = st.columns([3, 1])
with right:
    st.markdown("**MACs per flow**")
    st.plotly_chart(widgets.breakdown_chart(widgets.costs(spec), "flow"), width="stretch",
                    key="flow_macs")
    st.markdown("**Parameters per flow**")
    st.plotly_chart(widgets.breakdown_chart(widgets.costs(spec), "flow", "params"), width="stretch",
                    key="flow_params")
with left:
    graphs.flow_graph(spec, key="architecture")

st.subheader("Edit the network")
st.caption("Edits apply to the network as shown (knobs included) and become the new base; the knobs reset.")
table_tab, yaml_tab, file_tab = st.tabs(["Blocks table", "YAML", "File"])
tag = f"{session.epoch()}_{spec.digest()}"

with table_tab:
    frame = pd.DataFrame(spec_to_rows(spec), columns=list(COLUMNS)).astype(object).fillna("")
    edited = st.data_editor(
        frame, num_rows="dynamic", width="stretch", hide_index=True, key=f"blocks_{tag}",
        column_config={
            "type": st.column_config.SelectboxColumn(
                "type", options=["conv", "sepconv", "xception", "inception", "aux_head", "pool", "dropout",
                                 "classifier", "input_affine"], required=True),
            "repeat": st.column_config.NumberColumn("repeat", min_value=0, step=1,
                                                    help="Repeat the block as name1..nameN"),
            "channels": st.column_config.TextColumn("channels", help="Output channels of each separable conv, "
                                                                     "e.g. 128, 128"),
            "more": st.column_config.TextColumn("more", help="Other fields as inline YAML, e.g. {stride: 2}",
                                                width="large"),
        })
    if st.button("Apply table", type="primary", key="apply_table"):
        apply_edit(lambda: spec_from_rows(spec, edited.to_dict("records")), "edited")

with yaml_tab:
    text = st.text_area("Spec (YAML)", spec.to_yaml(), height=420, key=f"yaml_{tag}")
    if st.button("Validate and apply YAML", type="primary", key="apply_yaml"):
        apply_edit(lambda: parse_spec(text), "edited")

with file_tab:
    st.download_button("Download this spec (YAML)", spec.to_yaml(), file_name=f"{spec.name}.yaml",
                       mime="application/x-yaml")
    upload = st.file_uploader("Load a spec file", type=["yaml", "yml"], key=f"spec_file_{session.epoch()}")
    if upload is not None:
        apply_edit(lambda: parse_spec(upload.getvalue().decode("utf-8", errors="replace")), upload.name,
                   f"{upload.name} not loaded")
