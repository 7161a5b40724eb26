"""Bring-your-own-catalogue, measured: export a dataset's items (or a synthetic catalogue) to a CSV file,
then hand it to the app's service as a visitor's upload would be (read, encoded by the default
pre-trained model, popularity, first ranking), timing each and reading the process's resident memory.

  python scripts/benchmark_catalogue.py                                   # Scientific's 4,385 items
  python scripts/benchmark_catalogue.py --synthetic 50000                 # 50,000 made-up products
  python scripts/benchmark_catalogue.py --export-only --out sci_items.csv # just write the CSV

Writes scripts/results/benchmark_catalogue_<name>.json (unless --export-only).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.errors import UserError
from jepa4rec.paths import RESULTS_DIR

COLUMNS = ["item_id", "title", "brand", "categories"]
WORDS = ("steel cotton wireless compact digital classic premium portable vintage organic ceramic bamboo leather "
         "glass solar magnetic ergonomic waterproof adjustable foldable").split()
THINGS = ("lamp mug kettle backpack keyboard speaker notebook tripod blender wallet jacket drill charger "
          "thermometer microscope guitar amplifier tent bottle clock").split()
BRANDS = ("Acme Northwind Contoso Fabrikam Globex Initech Umbrella Stark Wayne Tyrell").split()


def export_dataset(name: str, out: Path, data_root: str | None) -> int:
    from jepa4rec.data import load_dataset

    ds = load_dataset(name, root=data_root)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for key, item in zip(ds.item_keys, ds.items):
            writer.writerow([key] + [item.get(c, "") for c in COLUMNS[1:]])
    return ds.n_items


def synthetic(n: int, out: Path, seed: int) -> int:
    rng = random.Random(seed)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i in range(n):
            thing = rng.choice(THINGS)
            title = f"{' '.join(rng.sample(WORDS, 3))} {thing} model {rng.randrange(1000, 9999)}"
            writer.writerow([f"p{i}", title.title(), rng.choice(BRANDS), f"Home {thing.title()}s"])
    return n


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="Scientific_UniSRec", help="dataset whose items are exported")
    p.add_argument("--synthetic", type=int, default=None, help="make N synthetic items instead")
    p.add_argument("--out", default=None, help="where to write the CSV (default: a temporary file)")
    p.add_argument("--export-only", action="store_true", help="write the CSV and stop")
    p.add_data_root_argument()
    p.add_threads_argument()
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogue (--synthetic)")
    args = p.parse_args(argv)
    if args.synthetic is not None and args.synthetic < 1:
        raise UserError(f"--synthetic must be at least 1, got {args.synthetic}", "see --help")
    if args.export_only and not args.out:
        raise UserError("--export-only needs --out FILE", "see --help")
    import torch
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "catalogue.csv"
    n = synthetic(args.synthetic, out, args.seed) if args.synthetic else export_dataset(args.dataset, out, args.data_root)
    label = f"synthetic{args.synthetic}" if args.synthetic else args.dataset
    print(f"wrote {out} ({n:,} items, {out.stat().st_size / 1e6:.1f} MB)")
    if args.export_only:
        return 0

    from app import handlers as H
    from app.service import AppService, resident_mb

    service = AppService(data_root=args.data_root)
    service._base_recommender()  # the shared model, loaded once per server: not part of an upload's time
    rss_before = resident_mb()
    started = time.perf_counter()
    served = service.add_upload("benchmark", out, label=out.name)
    loaded_s = time.perf_counter() - started
    view = H.rank_view(served, [0, 1, 2], 3, 50)
    first_ranking_s = time.perf_counter() - started
    result = {"catalogue": label, "items": served.dataset.n_items, "file_mb": round(out.stat().st_size / 1e6, 2),
              "read_and_encode_s": round(loaded_s, 1), "first_ranking_s": round(first_ranking_s, 1),
              "items_per_s": round(served.dataset.n_items / loaded_s, 1), "rss_mb_before": round(rss_before),
              "rss_mb_after": round(resident_mb()), "threads": torch.get_num_threads(),
              "precision": served.recommender.precision, "date": time.strftime("%Y-%m-%d"),
              "command": command_line("scripts/benchmark_catalogue.py", argv)}
    service.drop_session("benchmark")
    result["rss_mb_after_drop"] = round(resident_mb())
    print(f"{label}: {result['items']:,} items read and encoded in {result['read_and_encode_s']} s "
          f"({result['items_per_s']} items/s), first ranking after {result['first_ranking_s']} s "
          f"(target rank {view.target_rank_revealed} at 50%); RSS {result['rss_mb_before']} -> {result['rss_mb_after']} MB, "
          f"{result['rss_mb_after_drop']} MB after the visitor left")
    path = RESULTS_DIR / f"benchmark_catalogue_{label}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
