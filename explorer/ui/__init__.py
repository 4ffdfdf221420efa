"""The Streamlit app: thin pages over the explorer package (the only place streamlit is imported)."""
