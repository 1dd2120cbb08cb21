"""The Streamlit launcher: thin pages that read state and call vlhub's core API."""
