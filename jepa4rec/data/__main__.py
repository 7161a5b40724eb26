"""Datasets: stats NAME_OR_PATH ... (statistics after processing), download NAME ... | --all (from the public
repository and commit each was published in, every file's sha256 checked).

The library behind the download is :mod:`jepa4rec.data.sources`."""
from __future__ import annotations

import logging
import sys

from ..cli import ArgumentParser, command
from ..errors import UserError
from .registry import DATASETS, available_datasets, load_dataset


def _stats(args) -> int:
    names = args.datasets or (available_datasets(args.data_root) if args.all else [])
    if not names:
        raise UserError("stats: no dataset given", hint="name a dataset or a folder, or pass --all")
    overrides = {}
    if args.k_core is not None:
        overrides["k_core"] = args.k_core
    if args.max_seq_len is not None:
        overrides["max_seq_len"] = args.max_seq_len
    if args.item_key:
        overrides["item_key"] = args.item_key
    rows = []
    for name in names:
        spec = DATASETS.get(name)
        kwargs = dict(overrides)
        if "item_key" in kwargs and spec is not None and spec.reader != "online_retail":
            kwargs.pop("item_key")  # --item-key only concerns Online Retail
        ds = load_dataset(name, root=args.data_root, **kwargs)
        rows.append(ds.stats())
        if rows[-1]["items_with_text"] < 0.5:  # a text model sees these items as empty sentences
            without = round((1 - rows[-1]["items_with_text"]) * ds.n_items)
            print(f"warning: {name}: {without:,} of {ds.n_items:,} items have no text (attributes); a text model "
                  "cannot tell them apart - check the catalogue file", file=sys.stderr)
        if args.verbose:
            for line in ds.report:
                print(f"  [{name}] {line}", file=sys.stderr)
    cols = ["dataset", "users", "items", "interactions", "avg_len", "min_len", "max_len", "items_with_text"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |")
    return 0


def _download(args) -> int:
    from tqdm.auto import tqdm

    from .sources import SOURCES, download, download_root, is_downloaded

    names = sorted({n for n in SOURCES}) if args.all else args.datasets
    if not names:
        raise UserError("download: no dataset given", hint=f"name one of {', '.join(sorted(SOURCES))}, or pass --all")
    seen = set()
    for name in names:
        folder = SOURCES[name].folder if name in SOURCES else name
        if folder in seen:  # two names of one folder (OnlineRetail and OnlineRetail_raw_BenJMcCarty)
            continue
        seen.add(folder)
        if name in SOURCES and is_downloaded(name, args.data_root):
            print(f"{name}: already in {download_root(args.data_root) / folder}")
            continue
        size = SOURCES[name].size if name in SOURCES else 0
        with tqdm(total=size, unit="B", unit_scale=True, desc=name, disable=args.quiet) as bar:
            path = download(name, args.data_root, base_url=args.base_url,
                            progress=lambda done, total: bar.update(done - bar.n))
        source = SOURCES[name]
        print(f"{name}: {len(source.files)} files, {source.size:,} bytes, sha256 checked, from "
              f"github.com/{source.repo}@{source.commit[:10]} into {path}")
    return 0


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stats", help="print users / items / interactions / lengths / share of items with text")
    p.add_argument("datasets", nargs="*", help=f"dataset names ({', '.join(DATASETS)}) or folders/files")
    p.add_argument("--all", action="store_true", help="every named dataset found under the data root, plus ml-100k")
    p.add_data_root_argument()
    p.add_argument("--k-core", type=int, default=None, help="override the preset's k-core threshold (0 = off)")
    p.add_argument("--max-seq-len", type=int, default=None, help="keep only each user's most recent N items")
    p.add_argument("--item-key", choices=["Description", "StockCode"], default=None, help="Online Retail item key")
    p.add_argument("-v", "--verbose", action="store_true", help="print what every filter dropped")
    d = sub.add_parser("download", help="fetch a dataset's files from the public repository and commit SOURCES.md "
                       "names, checking each file's sha256")
    d.add_argument("datasets", nargs="*", help="dataset names (the app's datasets and both Online Retail copies)")
    d.add_argument("--all", action="store_true", help="every downloadable dataset")
    d.add_data_root_argument()
    d.add_argument("--base-url", default=None, help="a mirror of https://raw.githubusercontent.com (default: it, or "
                   "$JEPA4REC_DATA_URL)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return _download(args) if args.command == "download" else _stats(args)


if __name__ == "__main__":
    sys.exit(main())
