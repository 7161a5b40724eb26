"""Entry point of the Gradio app (a first page until the full app lands)."""
from __future__ import annotations

import argparse
import os


def build_demo():
    import gradio as gr

    from jepa4rec import __version__
    from jepa4rec.data import available_datasets

    with gr.Blocks(title="JEPA4Rec") as demo:
        gr.Markdown(f"# JEPA4Rec {__version__}\nText-based sequential recommendation with a joint-embedding "
                    "predictive architecture.")
        gr.Dataframe(value=[[n] for n in available_datasets()], headers=["datasets found"], interactive=False)
    return demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python app.py", description="Start the JEPA4Rec Gradio app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = parser.parse_args(argv)
    build_demo().launch(server_name=args.host, server_port=args.port)
