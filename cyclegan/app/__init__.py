"""The Gradio web app: one module per tab, the run catalog, background training, the server."""
