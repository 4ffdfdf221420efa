"""Architecture: the flow graph, the totals, and the spec as a table, as YAML and as a file."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from explorer.spec import Spec, SpecError, parse_spec
from explorer.spec.knobs import describe_knobs
from explorer.spec.summary import summarize
from explorer.spec.table import COLUMNS, spec_from_rows, spec_to_rows
from explorer.ui import graphs, session, widgets


def apply_edit(make: Callable[[], Spec], source: str, before: Spec, done: str, what: str = "Not applied") -> None:
    """Make the edited spec the new base and confirm what changed; a bad edit shows why (next to the
    editor) and changes nothing."""
    try:
        new = make()
    except SpecError as exc:
        st.error(f"{what} — {exc}", icon="⚠️")
    else:
        session.set_base(new, source)
        session.flash(f"{done}: " + widgets.change_summary(before, new))
        st.rerun()


spec = session.current_spec()
base = session.base_spec()
st.title("Architecture")
session.show_flash()
changed = session.changed_knob_values()
if changed:
    st.caption(f"**{base.name}** with {describe_knobs(changed)}: {summarize(spec)}")
else:
    st.caption(f"**{spec.name}** — {spec.description}" if spec.description else f"**{spec.name}**")
    st.caption(summarize(spec))
widgets.totals_row(spec, base=base, pinned=session.pinned())

graphs.flow_graph(spec, key="architecture")
left, right = st.columns(2)
left.markdown("**MACs per flow**")
left.plotly_chart(widgets.breakdown_chart(widgets.costs(spec), "flow"), width="stretch", key="flow_macs")
right.markdown("**Parameters per flow**")
right.plotly_chart(widgets.breakdown_chart(widgets.costs(spec), "flow", "params"), width="stretch",
                   key="flow_params")

st.subheader("Edit the network")
st.caption("Edits apply to the network as shown (knobs included) and become the new base; the knobs reset.")
table_tab, yaml_tab, file_tab = st.tabs(["Blocks table", "YAML", "File"], key="edit_tab")
tag = f"{session.epoch()}_{spec.digest()}"

with table_tab:
    # every cell is text: numbers, lists ("128, 128") and empty cells edit alike and read back as YAML
    frame = pd.DataFrame(spec_to_rows(spec, as_text=True), columns=list(COLUMNS))
    text = {c: st.column_config.TextColumn(c) for c in COLUMNS}
    edited = st.data_editor(
        frame, num_rows="dynamic", width="stretch", hide_index=True, key=f"blocks_{tag}",
        column_config={
            **text,
            "type": st.column_config.SelectboxColumn(
                "type", options=["conv", "sepconv", "xception", "inception", "aux_head", "pool", "dropout",
                                 "classifier", "input_affine"], required=True),
            "repeat": st.column_config.TextColumn("repeat", help="Repeat the block as name1..nameN (empty: once)"),
            "out": st.column_config.TextColumn("out", help="Output channels of a conv or sepconv"),
            "stride": st.column_config.TextColumn("stride", help="Stride, e.g. 2"),
            "channels": st.column_config.TextColumn("channels", help="Output channels of each separable conv, "
                                                                     "e.g. 128, 128"),
            "more": st.column_config.TextColumn("more", help="Other fields as inline YAML, e.g. {stride: 2}",
                                                width="large"),
        })
    if st.button("Apply table", type="primary", key="apply_table"):
        apply_edit(lambda: spec_from_rows(spec, edited.to_dict("records")), "edited", spec, "Applied the table")

with yaml_tab:
    text = st.text_area("Spec (YAML)", spec.to_yaml(), height=420, key=f"yaml_{tag}")
    if st.button("Validate and apply YAML", type="primary", key="apply_yaml"):
        apply_edit(lambda: parse_spec(text), "edited", spec, "Applied the YAML")

with file_tab:
    st.download_button("Download this spec (YAML)", spec.to_yaml(), file_name=f"{spec.name}.yaml",
                       mime="application/x-yaml")
    upload = st.file_uploader("Load a spec file", type=["yaml", "yml"], key=f"spec_file_{session.epoch()}")
    if upload is not None:
        apply_edit(lambda: parse_spec(upload.getvalue().decode("utf-8", errors="replace")), upload.name, spec,
                   f"Loaded {upload.name}", f"{upload.name} not loaded")
