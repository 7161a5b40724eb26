"""Start the JEPA4Rec Gradio app (``python app.py --help``)."""
from __future__ import annotations

import os

# oneDNN keeps a compiled kernel per matrix shape it met (1,024 by default); bf16 requests of every history
# length kept adding them, a few hundred MB over a minute of load. 64 keeps the common shapes compiled.
# Read when the first kernel is made, so set before any request.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

from jepa4rec.cli import ArgumentParser, command


@command
def main(argv=None) -> None:
    parser = ArgumentParser(prog="python app.py", description="Start the JEPA4Rec Gradio app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (Spaces sets GRADIO_SERVER_NAME=0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port to listen on (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_data_root_argument("folder with more datasets, used when present")
    parser.add_device_argument()
    parser.add_argument("--concurrency", type=int, default=4,
                        help="requests of one kind served at once (a comparison, an explanation, a scoreboard...); "
                             "ranking requests share encoding passes and are served 16 at once (app/batching.py)")
    parser.add_argument("--max-datasets", type=int, default=int(os.environ.get("JEPA4REC_MAX_DATASETS", 2)),
                        help="datasets kept loaded at once (least recently used unloaded first). Measured with the "
                             "default 2: peak resident memory 1.3 GB over a session visiting every app dataset, "
                             "comparing models on each, uploading a catalogue and adding an item (docs/app.md)")
    args = parser.parse_args(argv)

    from .service import AppService
    from .ui import build_demo

    if args.max_datasets < 1:
        parser.error(f"--max-datasets must be at least 1, got {args.max_datasets}")
    service = AppService(data_root=args.data_root, device=args.device, max_resident=args.max_datasets)
    demo = build_demo(service)
    # The first visitor should not wait for the default dataset: load it while the server starts.
    import threading

    from .service import DEFAULT_DATASET

    names = service.dataset_names()
    if names:
        threading.Thread(target=service.preload, args=(DEFAULT_DATASET if DEFAULT_DATASET in names else names[0],),
                         name="preload", daemon=True).start()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port)
