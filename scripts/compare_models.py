"""The app's "Compare models" view from the command line: for test users of a dataset, JEPA4Rec's top 10
beside those of the models ``checkpoints/compare.json`` names for it (the RecFormer-style model, JEPA4Rec with
recency pooling and, where one was trained on the dataset, SASRec), for the user's history as the app's
"Load this user" builds it, with how many items the lists share.

  python scripts/compare_models.py                         # ml-100k, test users 0 1 2
  python scripts/compare_models.py --dataset Scientific_UniSRec --users 5 8

Writes scripts/results/compare_models_<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.paths import RESULTS_DIR


@command
def main(argv=None) -> int:
    from app import handlers as H
    from app.service import DEFAULT_DATASET, AppService

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="a dataset the app offers")
    p.add_argument("--users", type=int, nargs="+", default=[0, 1, 2], help="test users (as in the app)")
    p.add_data_root_argument()
    args = p.parse_args(argv)
    service = AppService(data_root=args.data_root)
    served = service.get(args.dataset)
    out = []
    for user in args.users:
        history, target = H.load_user(served, user)
        view = H.compare_view(service, args.dataset, history)
        titles = view["titles"]
        print(f"\nuser {user} ({len(history)} history items, most recent: {served.recommender.titles[history[-1]]!r}; "
              f"true next item: {served.recommender.titles[target]!r})")
        for m in view["models"]:
            score = f"{m['ndcg']:.4f}" if m["ndcg"] is not None else "not measured"
            hit = " (true next item in the list)" if target in m["items"] else ""
            print(f"  {m['model']} ({m['mode']}, test NDCG@10 {score}){hit}:")
            print("    " + " | ".join(titles[i] for i in m["items"]))
        print("  shared: " + "; ".join(f"{k} {v}" for k, v in view["overlaps"].items()) + f"; in all {view['in_all']}")
        out.append({"user": user, "target": target, "models": [{k: m[k] for k in ("model", "mode", "ndcg", "items")}
                                                               for m in view["models"]],
                    "overlaps": view["overlaps"], "in_all": view["in_all"]})
    path = RESULTS_DIR / f"compare_models_{args.dataset}.json"
    path.write_text(json.dumps({"dataset": args.dataset, "users": out, "date": time.strftime("%Y-%m-%d"),
                                "command": command_line("scripts/compare_models.py", argv)},
                               indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
