"""Xception Explorer: `streamlit run app.py`."""

from pathlib import Path

import streamlit as st

from explorer.ui import session

PAGES = Path(__file__).parent / "explorer" / "ui" / "pages"

st.set_page_config(page_title="Xception Explorer", page_icon="🧩", layout="wide")
navigation = st.navigation([
    st.Page(PAGES / "architecture.py", title="Architecture", icon=":material/account_tree:", default=True),
    st.Page(PAGES / "costs.py", title="Costs", icon=":material/calculate:"),
    st.Page(PAGES / "classify.py", title="Classify & Explain", icon=":material/image_search:"),
    st.Page(PAGES / "lab.py", title="Lab", icon=":material/science:"),
])
session.sidebar_controls()
navigation.run()
