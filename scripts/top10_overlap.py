"""How alike two models recommend: for the test users of a dataset, how many items the two models' top-10
lists share and how often the two lists are the same, under both protocols (history kept: every item
competes; history excluded: the user's history items do not). Each model ranks as it was saved (its own
score priors, none for a pre-trained model), every catalogue item, ties broken by item order as
``torch.topk`` breaks them.

Twins that share 9.8 of 10 items rank alike whatever their metrics say; this is the measurement behind
"JEPA4Rec and its λ2 = 0 twin give the same top-10 lists".

  python scripts/top10_overlap.py --dataset OnlineRetail --users 2000 \\
      --pair "shipped pair" checkpoints/jepa4rec-minilm-pretrain checkpoints/recformer-minilm-pretrain \\
      --pair "twins, step 1000" runs/twins/jepa4rec-lambda1/step-1000 runs/twins/recformer/step-1000

Writes ``scripts/results/top10_overlap_<dataset>.json`` (``--out`` elsewhere): per pair and protocol the mean
number of shared items, the share of identical lists and the distribution of the shared count.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.paths import RESULTS_DIR

if TYPE_CHECKING:
    import torch

K = 10


def top_lists(model_dir: str, dataset, cases, batch_size: int) -> dict[str, torch.Tensor]:
    """Each case's top ``K`` item indexes under each protocol, ``[n_cases, K]``, in case order."""
    import torch

    from jepa4rec.evaluation import batches_by_history_length, history_mask
    from jepa4rec.recommender import Recommender

    rec = Recommender.from_pretrained(model_dir, dataset)
    k = min(K, dataset.n_items)  # a catalogue smaller than K: its whole ranking
    kept = torch.empty(len(cases), k, dtype=torch.long)
    excluded = torch.empty_like(kept)
    batches = batches_by_history_length(cases, batch_size)
    for idx in tqdm(batches, desc=f"top {k} of {Path(model_dir).name}", unit="batch", leave=False):
        histories = [cases[i].history for i in idx]
        scores = rec.score_all(histories).float()
        kept[idx] = scores.topk(k, dim=1).indices.cpu()
        mask = history_mask(histories, scores.shape[1], device=scores.device)
        excluded[idx] = scores.masked_fill(mask, float("-inf")).topk(k, dim=1).indices.cpu()
    return {"kept": kept, "excluded": excluded}


def overlap(a, b) -> dict:
    """Shared items of two ``[n, K]`` top lists, row by row, and how often the lists (in order) are equal."""
    rows = list(zip(a.tolist(), b.tolist()))
    shared = [len(set(x) & set(y)) for x, y in rows]
    identical = sum(x == y for x, y in rows)
    return {"mean_shared": sum(shared) / len(rows), "identical_share": identical / len(rows),
            "shared_counts": {str(k): shared.count(k) for k in range(a.shape[1] + 1)}}


@command
def main(argv=None) -> int:
    from jepa4rec.data import load_dataset
    from jepa4rec.errors import UserError
    from jepa4rec.experiments import write_atomic

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="named dataset or dataset folder (its test split is ranked)")
    p.add_argument("--pair", nargs=3, action="append", required=True, metavar=("LABEL", "MODEL_A", "MODEL_B"),
                   help="a label and two model directories to compare; give --pair once per pair")
    p.add_argument("--users", type=int, default=None, help="the first N test users (default: every user)")
    p.add_argument("--batch-size", type=int, default=128, help="users scored at once (default 128)")
    p.add_argument("--out", default=None, help="the JSON file to write (default scripts/results/top10_overlap_<dataset>.json)")
    p.add_data_root_argument()
    p.add_threads_argument()
    args = p.parse_args(argv)
    if args.users is not None and args.users < 1:
        raise UserError(f"--users must be at least 1, got {args.users}", "leave it out to take every test user")
    for label, *dirs in args.pair:
        for d in dirs:
            if not (Path(d) / "config.json").is_file():
                raise UserError(f"pair {label!r}: {d} is not a model directory (no config.json)",
                                "give a checkpoint folder such as checkpoints/jepa4rec-minilm-pretrain or a run's step-<n>/")
    dataset = load_dataset(args.dataset, args.data_root)
    cases = dataset.test_cases()[:args.users]
    k = min(K, dataset.n_items)
    result = {"dataset": dataset.name, "users": len(cases), "k": k, "pairs": {},
              "date": time.strftime("%Y-%m-%d"), "command": command_line("scripts/top10_overlap.py", argv)}
    print(f"{dataset.name}: the first {len(cases):,} test users; items two top-{k} lists share, history kept / excluded")
    for label, a, b in args.pair:
        lists = [top_lists(d, dataset, cases, args.batch_size) for d in (a, b)]
        cells = {protocol: overlap(lists[0][protocol], lists[1][protocol]) for protocol in ("kept", "excluded")}
        result["pairs"][label] = {"a": a, "b": b, **cells}
        print(f"  {label}: {cells['kept']['mean_shared']:.2f} / {cells['excluded']['mean_shared']:.2f} shared "
              f"({cells['kept']['identical_share']:.1%} / {cells['excluded']['identical_share']:.1%} of lists identical)")
    out = Path(args.out) if args.out else RESULTS_DIR / f"top10_overlap_{dataset.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
