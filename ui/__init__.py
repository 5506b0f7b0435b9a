"""Streamlit glue for FPN Explorer: state keys, the shared sidebar, cached loaders, renderers.

Only ``ui``, ``pages`` and ``dashboard.py`` import streamlit; ``fpn_core`` never does.
"""
