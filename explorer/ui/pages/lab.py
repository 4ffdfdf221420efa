"""Lab (filled by the ablation-lab feature)."""

import streamlit as st

st.title("Lab")
st.info(
    "This page will train spec variants (residual on/off, the activation between depthwise and pointwise) "
    "on small data sets and draw their training curves like the paper's Figures 9 and 10. "
    "It is not built yet: nothing here is a result.", icon="🛠️")
