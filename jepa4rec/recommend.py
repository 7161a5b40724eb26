"""``python -m jepa4rec.recommend``: recommend from a catalogue file, zero-shot, for a history of its ids.

The catalogue is a CSV or JSON-lines file with an id column (``item_id`` or ``id``) and text columns in
the order the item sentences are written (see :mod:`jepa4rec.data.catalogue`); the model ranks every
item of it for the history, with no training on it. ``--target`` reports an item's rank and ``--reveal``
shows the model a share of that item's words (the paper's case study).

Examples:
  python -m jepa4rec.recommend --items shop.csv --history p12 p40 p7
  python -m jepa4rec.recommend --items shop.csv --history p12 p40 --target p99 --reveal 0.3 --k 5 --json
"""
from __future__ import annotations

import argparse
import json
import sys

from .cli import ArgumentParser, command
from .errors import UserError


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.recommend", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", required=True, help="catalogue file: CSV or JSON lines, an id column and text columns")
    parser.add_argument("--history", nargs="+", required=True, help="item ids of the catalogue, oldest first")
    parser.add_argument("--model", default=None,
                        help="model directory (default: the shipped pre-trained checkpoint that serves catalogues "
                             "zero-shot, 'default' in checkpoints/index.json)")
    parser.add_argument("--k", type=int, default=10, help="how many items to list (default: 10)")
    parser.add_argument("--target", default=None, help="an item id whose rank to report")
    parser.add_argument("--reveal", type=float, default=None, help="share (0-1) of the target's words shown to the model")
    parser.add_argument("--scoring", choices=["evidence", "predictor"], default="evidence",
                        help="how revealed words count: evidence (0%% = history only) or the paper's predictor")
    parser.add_argument("--allow-repeats", action="store_true", help="let history items be recommended again")
    parser.add_device_argument()
    parser.add_threads_argument()
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.k < 1:
        raise UserError(f"--k must be at least 1, got {args.k}", "see --help")
    if args.reveal is not None and (args.target is None or not 0.0 <= args.reveal <= 1.0):
        raise UserError("--reveal needs --target and a share within 0..1", "see --help")

    from .checkpoint import default_checkpoint
    from .data.catalogue import missing_ids
    from .recommender import Recommender

    rec = Recommender.from_catalogue(args.model or default_checkpoint(), args.items, device=args.device)
    index = rec.dataset.item_index()
    unknown = [i for i in args.history + ([args.target] if args.target else []) if i not in index]
    if unknown:
        raise UserError(missing_ids(args.items, unknown, rec.dropped_items),
                        "give ids from the catalogue's id column" if set(unknown) - set(rec.dropped_items)
                        else "give the row a title or other text, or leave its id out")
    history = [index[i] for i in args.history]
    target = index[args.target] if args.target else None
    if not args.allow_repeats and len(set(history) - {target}) >= rec.dataset.n_items:
        # Otherwise the list is empty and the command says nothing.
        raise UserError(f"{args.items}: all {rec.dataset.n_items:,} items of the catalogue are in the history, "
                        "so none is left to recommend", "add --allow-repeats to rank history items too")
    out = rec.recommend(history, k=args.k, target=target, reveal=args.reveal, reveal_mode=args.scoring,
                        exclude_history=not args.allow_repeats)
    if args.json:
        print(json.dumps({"items": [{"id": r.key, "title": r.title, "score": r.score} for r in out.items],
                          "target_rank": out.target_rank, "revealed_words": out.revealed_words,
                          "catalogue": rec.dataset.n_items, "report": rec.dataset.report}, indent=2))
        return 0
    for line in rec.dataset.report:
        print(f"note: {line}", file=sys.stderr)
    width = max(len(r.key) for r in out.items) if out.items else 2
    for rank, r in enumerate(out.items, 1):
        print(f"{rank:>3}  {r.key:<{width}}  {r.score:.3f}  {r.title}")
    if target is not None:
        shown = f" with {args.reveal:.0%} of its words revealed ({', '.join(out.revealed_words) or 'none'})" \
            if args.reveal is not None else ""
        print(f"target {args.target}: rank {out.target_rank:,} of {rec.dataset.n_items:,}{shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
