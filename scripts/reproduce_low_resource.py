#!/usr/bin/env python
"""Low-resource training (paper Fig. 5): NDCG@10 when only a fraction of the training users is kept.

For each fraction, a seeded random subset of users keeps its training sequences; every model is
trained (and early-stopped) on that subset only and then tested on ALL users' test cases over the
whole catalogue, so items the subset never bought still have to be ranked. The text models start
from the shipped pre-trained checkpoints; SASRec has nothing to start from, so unseen items keep
their random ID embeddings, which is the paper's point.

Writes scripts/results/low_resource.csv (dataset, model, fraction, metric, value) and .json.

    python scripts/reproduce_low_resource.py                       # reduced: Scientific, ~1 h on 2 cores
    python scripts/reproduce_low_resource.py --full                # both datasets, RecFormer-style too, 3 seeds
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jepa4rec.baselines import SASRecConfig, train_sasrec
from jepa4rec.cli import ArgumentParser, command
from jepa4rec.data import load_dataset
from jepa4rec.evaluation import evaluate
from jepa4rec.experiments import add_run_args, config_for, finetune_once, long_rows, write_results
from jepa4rec.recommender import Recommender

TEXT_MODELS = {"jepa4rec": ("JEPA4Rec", "checkpoints/jepa4rec-tiny-pretrain"),
               "recformer": ("RecFormer-style", "checkpoints/recformer-tiny-pretrain")}
MODELS = (*TEXT_MODELS, "sasrec")
REDUCED = dict(datasets=["Scientific_UniSRec"], models=["jepa4rec", "sasrec"], seeds=[42],
               finetune_set=["max_minutes=8", "epochs=20", "patience=3"])
FULL = dict(datasets=["Scientific_UniSRec", "OnlineRetail"], models=list(MODELS), seeds=[42, 43, 44],
            finetune_set=["max_minutes=null", "epochs=30", "patience=5", "max_valid_users=null"])


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the GPU scale: both datasets, all models, 3 seeds, no time limit")
    p.add_argument("--datasets", nargs="*", default=None, help=f"default {REDUCED['datasets']} ({FULL['datasets']} with --full)")
    p.add_argument("--models", nargs="*", default=None, choices=MODELS, help=f"default {REDUCED['models']} (all with --full)")
    p.add_argument("--fractions", nargs="*", type=float, default=[0.01, 0.05, 0.1, 0.5, 1.0],
                   help="shares of the training users kept")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="subset and training seeds (default 42; 42 43 44 with --full)")
    p.add_argument("--finetune-config", default=None,
                   help="fine-tuning config (file or name in jepa4rec/configs; default finetune_<size> for --jepa's "
                        "model size: finetune_tiny or finetune_minilm)")
    p.add_argument("--set", nargs="*", action="extend", default=None, metavar="KEY=VALUE",
                   help=f"fine-tuning overrides on top of --finetune-config (default {REDUCED['finetune_set']})")
    p.add_argument("--jepa", default=TEXT_MODELS["jepa4rec"][1], help="JEPA4Rec pre-trained model directory")
    p.add_argument("--recformer", default=TEXT_MODELS["recformer"][1], help="RecFormer-style pre-trained model directory")
    add_run_args(p, "runs/low_resource", "low_resource")
    args = p.parse_args(argv)
    if any(not 0 < f <= 1 for f in args.fractions):
        p.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    scale = FULL if args.full else REDUCED
    args.datasets = args.datasets or scale["datasets"]
    args.models = args.models or scale["models"]
    args.seeds = args.seeds or scale["seeds"]
    args.set = scale["finetune_set"] if args.set is None else args.set
    args.finetune_config = args.finetune_config or config_for(args.jepa, "finetune")
    return args


def user_subset(n_users: int, fraction: float, seed: int) -> list[int]:
    """A seeded random subset of at least 8 users (one fine-tuning batch needs a few)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = min(n_users, max(8, round(fraction * n_users)))
    return sorted(np.random.default_rng(seed).choice(n_users, k, replace=False).tolist())


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoints = {"jepa4rec": args.jepa, "recformer": args.recformer}
    rows, runs = [], []
    for name in args.datasets:
        dataset = load_dataset(name, root=args.data_root)
        test_cases = dataset.test_cases()
        for seed in args.seeds:
            for fraction in args.fractions:
                subset = dataset.subset_users(user_subset(dataset.n_users, fraction, seed))
                for model in args.models:
                    run_dir = Path(args.runs_dir) / dataset.name / f"{model}_f{fraction:g}_s{seed}"
                    if model == "sasrec":
                        done = run_dir / "metrics.json"
                        if done.exists():
                            metrics = json.loads(done.read_text())
                        else:
                            sas, log = train_sasrec(subset, SASRecConfig(seed=seed), progress=False)
                            metrics = {**evaluate(sas, test_cases, batch_size=1024, progress=False),
                                       "train_seconds": round(log["train_seconds"], 1)}
                            run_dir.mkdir(parents=True, exist_ok=True)
                            done.write_text(json.dumps(metrics))
                        label = "SASRec"
                    else:
                        res = finetune_once(run_dir, subset, checkpoints[model], [f"seed={seed}", "progress=false", *args.set],
                                            args.finetune_config)
                        done = run_dir / "all_users_test.json"
                        if done.exists():
                            metrics = json.loads(done.read_text())
                        else:  # finetune() tests on the subset's users; the figure needs every user
                            best = Recommender.from_pretrained(run_dir / "best", dataset, use_cache=False)
                            metrics = {**evaluate(best, test_cases, progress=False), "train_seconds": res["train_seconds"]}
                            done.write_text(json.dumps(metrics))
                        label = TEXT_MODELS[model][0]
                    base = {"dataset": dataset.name, "model": label, "fraction": fraction, "seed": seed,
                            "train_users": subset.n_users}
                    rows += long_rows(base, metrics)
                    runs.append({**base, "train_seconds": metrics.get("train_seconds"), "run_dir": str(run_dir)})
                    print(f"{dataset.name} {label} fraction {fraction:g} seed {seed} ({subset.n_users} users): "
                          f"NDCG@10 {metrics['NDCG@10']:.4f}  Recall@10 {metrics['Recall@10']:.4f}")
    meta = {"fractions": args.fractions, "seeds": args.seeds, "models": args.models, "datasets": args.datasets,
            "finetune_config": args.finetune_config, "finetune_overrides": args.set, "full": args.full,
            "checkpoints": {m: checkpoints[m] for m in args.models if m in checkpoints}, "runs": runs,
            "protocol": "train on the subset's training sequences; test on every user's test case; all items ranked"}
    path = write_results("low_resource", rows, meta, args.out_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
