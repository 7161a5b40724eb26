"""Fit a dataset's embedding map (UMAP of every item vector) and ship it beside the checkpoint that
serves the dataset, so the app draws it at once instead of fitting it on first view.

  python scripts/build_embedding_map.py                      # ml-100k, the app's default
  python scripts/build_embedding_map.py --dataset Scientific_UniSRec

The file (``embedding_map_<digest>.safetensors``, 2 floats per item) is keyed by the checkpoint's
weights, the catalogue and the map settings: a changed model or catalogue is simply not served it.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

from jepa4rec.cli import ArgumentParser, command


@command
def main(argv=None) -> int:
    from app.service import DEFAULT_DATASET, AppService

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="a dataset the app offers")
    p.add_data_root_argument("folder with more datasets, as for app.py")
    p.add_argument("--time-only", action="store_true",
                   help="fit once more and print the times (UMAP's one-off compilation, then the fit) without writing")
    args = p.parse_args(argv)
    started = time.time()
    service = AppService(data_root=args.data_root)
    if args.time_only:
        from app.service import fit_map

        served = service.get(args.dataset)
        vectors = served.recommender.unit_item_vectors.float().cpu().numpy()
        t = time.time()
        service.warm_up_maps().join()
        warm = time.time() - t
        t = time.time()
        fit_map(vectors)
        print(f"{args.dataset}: {len(vectors):,} items; UMAP warm-up (once per process) {warm:.1f} s, then the fit "
              f"{time.time() - t:.1f} s")
        return 0
    path = service.ship_map(args.dataset)
    print(f"wrote {path} ({path.stat().st_size:,} bytes) in {time.time() - started:.0f} s")
    # Loading the dataset started the app's background map work (colour groups); a daemon thread stopped
    # inside numba at exit aborts the interpreter, so it is let finish.
    for thread in threading.enumerate():
        if thread.name.startswith("map-"):
            thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
