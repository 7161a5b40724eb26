"""The app's reveal demo, measured as a visitor would see it: for the first N test users of a dataset,
load the user (the app's "Load this user": the last 20 history items and the true next item), and read
the target's rank from the history alone and at each reveal share, with the app's default scoring and
history exclusion.

  python scripts/measure_reveal_demo.py                       # ml-100k, the app's default, 200 users
  python scripts/measure_reveal_demo.py --dataset Scientific_UniSRec --scoring "next-item predictor (paper's FFN2)"

Prints the share of targets in the top 10 at each reveal share, the mean reciprocal rank, and whether
0% equals the history-only ranking for every user; writes scripts/results/reveal_demo_<dataset>.json (``_predictor`` added for the predictor scoring).

Whether the rank rises with the share revealed is a paired question (the same users at two shares), so the
JSON also keeps every user's rank (``ranks``) and, for each step up (history alone → 25%, 25% → 50%, ...,
and history alone → 100%), the paired ratio of MRR with its 95% bootstrap interval
(:func:`jepa4rec.significance.compare`, ``steps``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.paths import RESULTS_DIR

FRACTIONS = (0, 25, 50, 75, 100)
HISTORY_ONLY = "history only"
# Each step up the slider, and the whole slider against the history alone: the paired tests the JSON keeps.
STEPS = ((HISTORY_ONLY, "25"), ("25", "50"), ("50", "75"), ("75", "100"), (HISTORY_ONLY, "100"))


def view_excludes(served, repeats) -> bool:
    return not (served.repeats_by_default if repeats is None else repeats)


def share_label(name: str) -> str:
    return name if name == HISTORY_ONLY else f"{name}%"


def paired_steps(ranks: dict[str, list[int]], resamples: int = 10_000) -> list[dict]:
    """For each of :data:`STEPS`, the same users' MRR at the higher share over the lower one, with the paired
    bootstrap interval and sign-flip p-value of :func:`jepa4rec.significance.compare`."""
    from jepa4rec.significance import compare
    steps = []
    for a, b in STEPS:
        c = compare(ranks[a], ranks[b], metric="MRR", resamples=resamples)
        steps.append({"from": a, "to": b, "mrr_ratio": c.ratio, "ratio_low": c.ratio_low, "ratio_high": c.ratio_high,
                      "p_value": c.p_value})
    return steps


@command
def main(argv=None) -> int:
    from app import handlers as H
    from app.service import DEFAULT_DATASET

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="a dataset the app offers")
    p.add_argument("--users", type=int, default=200, help="the first N users of the test split")
    p.add_argument("--scoring", default=H.DEFAULT_SCORING, choices=list(H.SCORINGS), help="the app's Scoring choice")
    p.add_argument("--order", default="sequential", choices=["sequential", "random"], help="which words are revealed first")
    p.add_argument("--allow-repeats", choices=["default", "yes", "no"], default="default",
                   help="the app's repeat-purchase switch (default: the dataset's default)")
    p.add_data_root_argument()
    p.add_threads_argument()
    p.add_argument("--out", default=None, help="JSON file (default scripts/results/reveal_demo_<dataset>.json, "
                   "reveal_demo_<dataset>_predictor.json for the predictor's scoring)")
    p.add_argument("--checkpoints-dir", default=None,
                   help="the app's checkpoints folder (index.json: which model serves which dataset); default the "
                        "shipped checkpoints/. Point it at a copy whose index names a candidate to measure that "
                        "candidate as the app would serve it")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from app.service import AppService
    started = time.time()
    service = AppService(data_root=args.data_root, **({"checkpoints_dir": Path(args.checkpoints_dir)}
                                                      if args.checkpoints_dir else {}))
    served = service.get(args.dataset)
    repeats = None if args.allow_repeats == "default" else args.allow_repeats == "yes"
    n = min(args.users, len(served.dataset.test_cases()))
    ranks = {f: [] for f in FRACTIONS}
    history_only, zero_equal = [], 0
    for user in range(n):
        history, target = H.load_user(served, user)
        view = H.rank_view(served, history, target, 0, args.order, args.scoring, repeats)
        # The same call the app's chart makes, at the shares asked for here.
        curve = served.recommender.reveal_curve(history, target, [f / 100 for f in FRACTIONS], order=args.order,
                                                mode=H.SCORINGS[args.scoring], exclude_history=view_excludes(served, repeats))
        by_pct = dict(zip(FRACTIONS, curve))
        history_only.append(int(view.target_rank_history))
        for f in FRACTIONS:
            ranks[f].append(int(by_pct[f]))
        same_list = [r["item"] for r in view.revealed] == [r["item"] for r in view.history_only]
        zero_equal += int(same_list and by_pct[0] == view.target_rank_history)
    seconds = time.time() - started

    def summary(values):
        v = np.asarray(values, dtype=float)
        return {"mrr": float((1 / v).mean()), "top10": float((v <= 10).mean()), "median_rank": float(np.median(v))}

    by_name = {HISTORY_ONLY: history_only, **{str(f): ranks[f] for f in FRACTIONS}}
    steps = paired_steps(by_name)

    result = {
        "dataset": args.dataset, "users": n, "scoring": args.scoring, "order": args.order,
        "history_excluded": view_excludes(served, repeats),
        "checkpoint": served.checkpoint.name, "mode": served.mode,
        # bf16 where the CPU has it natively, else fp32: ranks can move between machines at the third decimal.
        "precision": served.recommender.precision,
        "history_only": summary(history_only),
        "reveal": {str(f): summary(ranks[f]) for f in FRACTIONS},
        "zero_equals_history_only": f"{zero_equal}/{n}",
        "steps": steps,
        "ranks": by_name,
        "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"), "command": command_line("scripts/measure_reveal_demo.py", argv),
    }
    print(f"{args.dataset}, first {n} test users, scoring '{args.scoring}', {served.mode} ({served.checkpoint.name})")
    print(f"{'':>14} {'MRR':>7} {'top-10':>7} {'median':>7}")
    print(f"{'history only':>14} {result['history_only']['mrr']:7.4f} {result['history_only']['top10']:7.3f} "
          f"{result['history_only']['median_rank']:7.0f}")
    for f in FRACTIONS:
        r = result["reveal"][str(f)]
        print(f"{f'{f}% revealed':>14} {r['mrr']:7.4f} {r['top10']:7.3f} {r['median_rank']:7.0f}")
    for st in steps:
        print(f"MRR {share_label(st['to']):>12} / {share_label(st['from']):<12} {st['mrr_ratio']:7.3f}× [{st['ratio_low']:.3f}, "
              f"{st['ratio_high']:.3f}]  p {st['p_value']:.3g}")
    print(f"0% equals the history-only ranking (list and target rank): {result['zero_equals_history_only']} users; "
          f"{seconds:.0f} s")
    suffix = "_predictor" if "predictor" in args.scoring else ""  # one file per scoring, never one over the other
    out = Path(args.out) if args.out else RESULTS_DIR / f"reveal_demo_{args.dataset}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
