"""Latency of the app's "A brand-new item" and "Why this item?" as a visitor meets them: the app's
service and handlers, the dataset's served checkpoint, real test users.

* new item: a typed item (a test user's target, re-typed with its title changed) ranked for the user's
  history, with its 10 nearest items; p50 / p95 over ``--tries`` users;
* why: the leave-one-out history bars and the masked-word bars for a user's target, on histories of
  ``--history`` items; p50 / p95 over ``--tries`` users.

  python scripts/benchmark_explain.py                      # ml-100k, 50 tries, 20-item histories
  python scripts/benchmark_explain.py --dataset Scientific_UniSRec --threads 2

Writes scripts/results/benchmark_explain_<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.errors import UserError
from jepa4rec.paths import RESULTS_DIR


@command
def main(argv=None) -> int:
    from app import handlers as H
    from app.service import DEFAULT_DATASET, AppService

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="a dataset the app offers")
    p.add_argument("--tries", type=int, default=50, help="users timed for each feature")
    p.add_argument("--history", type=int, default=20, help="history length for 'why' (users with fewer are skipped)")
    p.add_threads_argument()
    p.add_data_root_argument()
    args = p.parse_args(argv)
    if args.tries < 1 or args.history < 1:
        raise UserError(f"--tries and --history must be at least 1, got {args.tries} and {args.history}", "see --help")
    import torch
    served = AppService(data_root=args.data_root).get(args.dataset)
    cases = [c for c in served.dataset.test_cases() if len(c.history) >= args.history][: args.tries]
    if not cases:
        raise UserError(f"{args.dataset}: no test user has {args.history} history items", "lower --history")
    new_ms, why_ms = [], []
    for case in cases:
        history = list(case.history[-args.history:])
        served.recommender.history_vector(history)  # the history is encoded when it is built, as in the app
        attrs = dict(served.dataset.items[case.target])
        attrs["title"] = f"{attrs.get('title', '')} (new edition)"
        t = time.perf_counter()
        H.new_item_view(served, history, attrs)
        new_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        H.explain_item(served, history, case.target)
        why_ms.append((time.perf_counter() - t) * 1000)

    def pct(values):
        return {"p50_ms": round(float(np.percentile(values, 50)), 1), "p95_ms": round(float(np.percentile(values, 95)), 1)}

    result = {"dataset": args.dataset, "checkpoint": served.checkpoint.name, "tries": len(cases),
              "history_items": args.history, "new_item": pct(new_ms), "why": pct(why_ms),
              "threads": torch.get_num_threads(), "precision": served.recommender.precision,
              "date": time.strftime("%Y-%m-%d"),
              "command": command_line("scripts/benchmark_explain.py", argv)}
    print(f"{args.dataset} ({served.dataset.n_items:,} items, {len(cases)} users, {result['threads']} threads): "
          f"new item p50 {result['new_item']['p50_ms']} ms, p95 {result['new_item']['p95_ms']} ms; "
          f"why ({args.history}-item history) p50 {result['why']['p50_ms']} ms, p95 {result['why']['p95_ms']} ms")
    out = RESULTS_DIR / f"benchmark_explain_{args.dataset}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
