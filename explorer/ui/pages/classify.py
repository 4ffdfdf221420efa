"""Classify & Explain (filled by the classify and explain features)."""

import streamlit as st

st.title("Classify & Explain")
st.info(
    "This page will classify uploaded images with the real ImageNet weights loaded into the spec-built "
    "Xception and Inception V3 (on the GPU when there is one), side by side, and explain each prediction "
    "with Captum attribution maps (saliency, integrated gradients, Grad-CAM and more). "
    "It is not built yet: nothing here is a result.", icon="🛠️")
