"""``python -m jepa4rec.compare``: is model B's ranking better than model A's, or within noise?

Pairs two rank files by user (written by ``python -m jepa4rec.evaluate ... --save-ranks FILE``; both must
rank the same users' same targets), reads both in the same cell of the comparison (``--cell``: history kept
or excluded, without or with the score priors fitted on validation), and prints, for each metric, both means, B − A and B / A with 95%
intervals from a paired bootstrap over users, and the two-sided p-value of a paired sign-flip test
(:mod:`jepa4rec.significance`).

Examples:
  python -m jepa4rec.evaluate --checkpoint minilm --pooling mean --dataset Scientific_UniSRec --save-ranks step0.csv
  python -m jepa4rec.evaluate --checkpoint checkpoints/jepa4rec-minilm-pretrain --dataset Scientific_UniSRec --save-ranks pre.csv
  python -m jepa4rec.compare step0.csv pre.csv --metrics NDCG@10 Recall@10
  python -m jepa4rec.compare runs/results/Scientific_UniSRec/sasrec.ranks.csv \
      runs/results/Scientific_UniSRec/jepa4rec.ranks.csv --cell excluded
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from .cli import ArgumentParser, command
from .evaluation import CELLS, PROTOCOLS
from .significance import compare, format_comparison, paired_ranks, read_ranks


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.compare", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="rank file of model A, the reference (python -m jepa4rec.evaluate --save-ranks)")
    parser.add_argument("b", help="rank file of model B, compared with A on the same cases")
    parser.add_argument("--metrics", nargs="+", default=["NDCG@10", "Recall@10", "MRR"],
                        help="metrics to compare: NDCG@k, Recall@k, MRR (default: NDCG@10 Recall@10 MRR)")
    parser.add_argument("--cell", choices=CELLS, default="kept",
                        help=f"which ranks of both files: {PROTOCOLS['kept']} (kept) or {PROTOCOLS['excluded']} "
                             "(excluded), raw or with the score priors fitted on validation (*_priors); default kept")
    parser.add_argument("--resamples", type=int, default=10_000,
                        help="bootstrap resamples and sign flips (default 10000; the p-value's floor is 1/(resamples+1))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--out", default=None, help="append each comparison as one JSON line to this file (file_a, "
                        "file_b, metric, a and b the two means, diff, ratio and their intervals, p_value)")
    args = parser.parse_args(argv)
    if args.resamples < 1:  # before reading the files, not after the header is printed
        parser.error("--resamples must be >= 1")
    a, b = read_ranks(args.a, args.cell), read_ranks(args.b, args.cell)
    ranks_a, ranks_b = paired_ranks(a, b)
    print(f"A = {a.path}\nB = {b.path}\ncell {args.cell}; {len(ranks_a):,} users paired; 95% intervals from {args.resamples:,} "
          "paired bootstrap resamples; p: two-sided paired sign-flip test")
    results = []
    for metric in args.metrics:
        try:
            c = compare(ranks_a, ranks_b, metric, args.resamples, args.seed)
        except ValueError as err:
            parser.error(str(err))
        results.append(c)
        print(format_comparison(c))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            for c in results:
                fh.write(json.dumps({"file_a": a.path, "file_b": b.path, "cell": args.cell, "resamples": args.resamples,
                                     "seed": args.seed, **asdict(c)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
