"""Ship the item vectors the app needs, so that the first switch to a dataset and the first comparison read
them instead of encoding every item (about 12 s for Scientific's 4,385 items, 75 s for Instruments' 20,618 on
two cores).

For every app dataset found under the data root, and every checkpoint the app serves it with
(``checkpoints/index.json``) or compares it with (``checkpoints/compare.json``, text models only), the
vectors are computed as the app computes them and written as int8 rows with a per-row scale, in files under 10 MB, to
``checkpoints/vectors/<checkpoint>/<key>-NN.safetensors``. The key covers the model's weights, the
catalogue's content and the text config: a retrained model or a changed catalogue no longer matches, and
the app encodes again.

  python scripts/ship_item_vectors.py                       # every app dataset present
  python scripts/ship_item_vectors.py --dataset ml-100k      # one
"""
from __future__ import annotations

import argparse
import sys
import time

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append", default=None, help="app dataset (repeatable; default: all present)")
    p.add_data_root_argument()
    p.add_threads_argument()
    args = p.parse_args(argv)
    from app.service import APP_DATASETS, AppService

    from jepa4rec.data import load_dataset

    service = AppService(data_root=args.data_root)
    names = args.dataset or [n for n in APP_DATASETS if service.is_present(n)]
    unknown = [n for n in names if n not in APP_DATASETS]
    if unknown:
        raise UserError(f"not an app dataset: {', '.join(unknown)}", hint=f"choose among {', '.join(APP_DATASETS)}")
    total = 0
    for name in names:
        dataset = load_dataset(name, root=args.data_root)
        folders = [service.checkpoint_for(name)[0]]
        folders += [service.checkpoints_dir / by[name if name in by else "default"]
                    for label, by in service.compare_index.items()
                    if label != "SASRec" and (name in by or "default" in by)]
        for folder in dict.fromkeys(folders):
            started = time.perf_counter()
            rec = service._recommender(folder, dataset)
            rec.catalogue.shipped = None  # computed afresh, not read back from an earlier shipment
            paths = rec.save_item_vectors(service.vectors_dir(folder))
            size = sum(f.stat().st_size for f in paths)
            total += size
            print(f"{name} / {folder.name}: {dataset.n_items:,} items in {time.perf_counter() - started:.1f} s "
                  f"({rec.precision}) -> {len(paths)} file(s), {size / 1e6:.1f} MB in {paths[0].parent}")
    print(f"{total / 1e6:.1f} MB written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
