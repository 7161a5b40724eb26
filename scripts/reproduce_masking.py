#!/usr/bin/env python
"""Next-item masking ratio (paper Fig. 8 / appendix F): pre-train from scratch at each ratio, several seeds.

As in the paper, each model is pre-trained on the target dataset itself (its training part only:
``train_split_only``, so validation and test items never leak) with ``loss.next_item_mask_ratio``
set to the ratio, then evaluated on that dataset's test split over all items. Everything else is
pretrain_tiny; each dataset's runs share one tokenizer (trained by its first run). With
``--config pretrain_minilm`` every run starts from MiniLM (its weights and tokenizer) instead.

Writes scripts/results/masking_ratio.csv (dataset, model, ratio, seed, metric, value) and .json; the app
plots the mean over seeds with the standard deviation as error bars. Runs that start from a language
model are measured against it untrained (step 0) on the same users: rows with model "<name> untrained
(step 0)" and no ratio or seed, drawn as a dashed line across the ratios.

    python scripts/reproduce_masking.py                  # reduced: 5 ratios x 3 seeds x 2 datasets, ~2 h 15 min on 1 thread
    python scripts/reproduce_masking.py --datasets Scientific_UniSRec --threads 1 --out-dir /tmp/sci &  # or 2 cores,
    python scripts/reproduce_masking.py --datasets OnlineRetail --threads 1 --out-dir /tmp/or         # ~70 min,
    python scripts/reproduce_masking.py                  # then this reuses all 30 runs and writes the file
    python scripts/reproduce_masking.py --full           # 0.1 ... 0.9, 5 seeds, 3,000 steps each, every test user
    python scripts/reproduce_masking.py --config pretrain_minilm --datasets Scientific_UniSRec --seeds 0 \\
        --runs-dir runs/masking_minilm --threads 1           # from MiniLM: ~15 min a run on one core
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.config import PretrainConfig, load_config, to_dict
from jepa4rec.data import load_dataset
from jepa4rec.experiments import (add_run_args, evaluate_test_split, long_rows, pretrain_once, untrained_start,
                                  write_results)

REDUCED = dict(ratios=[0.1, 0.3, 0.5, 0.7, 0.9], seeds=[0, 1, 2], steps=150, eval_users=2000)
FULL = dict(ratios=[round(0.1 * i, 1) for i in range(1, 10)], seeds=[0, 1, 2, 3, 4], steps=3000, eval_users=None)


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="GPU scale: 9 ratios, 5 seeds, 3,000 steps, every test user")
    p.add_argument("--datasets", nargs="*", default=["Scientific_UniSRec", "OnlineRetail"],
                   help="pre-training and test datasets (the paper: Scientific small, Office large)")
    p.add_argument("--ratios", nargs="*", type=float, default=None, help=f"default {REDUCED['ratios']}")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help=f"default {REDUCED['seeds']}")
    p.add_argument("--steps", type=int, default=None, help=f"pre-training steps per run (default {REDUCED['steps']})")
    p.add_argument("--eval-users", type=int, default=None, help=f"test only the first N users (default {REDUCED['eval_users']})")
    p.add_argument("--config", default="pretrain_tiny",
                   help="pre-training config (pretrain_minilm: every run starts from MiniLM instead of from scratch)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="extra pre-training overrides")
    add_run_args(p, "runs/masking", "masking_ratio")
    args = p.parse_args(argv)
    scale = FULL if args.full else REDUCED
    for key in ("ratios", "seeds", "steps"):
        if getattr(args, key) is None:
            setattr(args, key, scale[key])
    if args.eval_users is None and not args.full:
        args.eval_users = REDUCED["eval_users"]
    if any(not 0 < r < 1 for r in args.ratios):
        p.error(f"ratios must lie strictly between 0 and 1, got {args.ratios}")
    return args


def trained_tokenizer(dataset_runs: Path) -> Path | None:
    """The vocabulary that an earlier run of this dataset trained (its config names no tokenizer).

    Sharing it, rather than the first run of this process, lets other seeds or ratios run as separate
    processes (once the first run has started) and still be reused by the full command later: a second
    tokenizer trained on the same data by another seed's run came out different."""
    for config in sorted(dataset_runs.glob("*/config.json")):
        if json.loads(config.read_text()).get("tokenizer") is None and (config.parent / "tokenizer").is_dir():
            return config.parent / "tokenizer"
    return None


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    rows, runs = [], []
    # A run that starts from a language model reads with that model's tokenizer; only runs from scratch
    # train one, which the dataset's later runs then share.
    start = untrained_start(to_dict(load_config(PretrainConfig, args.config, args.set)))
    for name in args.datasets:
        dataset = load_dataset(name, root=args.data_root)
        if start:
            # The floor each run is read against: the same users ranked by the start.
            metrics = evaluate_test_split(start.checkpoint, dataset, args.eval_users, pooling=start.pooling,
                                          cache_dir=Path(args.runs_dir) / dataset.name / "step0")
            base = {"dataset": dataset.name, "model": start.label, "ratio": None, "seed": None}
            rows += long_rows(base, metrics)
            print(f"{dataset.name} {base['model']}: NDCG@10 {metrics['NDCG@10']:.4f}  "
                  f"Recall@10 {metrics['Recall@10']:.4f}")
        for seed in args.seeds:
            for ratio in args.ratios:
                run_dir = Path(args.runs_dir) / dataset.name / f"ratio{ratio:g}_seed{seed}"
                tokenizer = None if start else trained_tokenizer(run_dir.parent)
                shared_tok = [f"tokenizer={tokenizer}"] if tokenizer and tokenizer.parent != run_dir else []
                overrides = [f"domains=[{name}]", "train_split_only=true", f"loss.next_item_mask_ratio={ratio}",
                             f"seed={seed}", f"max_steps={args.steps}", "max_minutes=null", "progress=false",
                             *([f"data_root={args.data_root}"] if args.data_root else []), *shared_tok, *args.set]
                model_dir = pretrain_once(run_dir, overrides, args.config)
                metrics = evaluate_test_split(model_dir, dataset, args.eval_users, cache_dir=run_dir / "evaluations")
                base = {"dataset": dataset.name, "model": "pre-trained", "ratio": ratio, "seed": seed}
                rows += long_rows(base, metrics)
                runs.append({**base, "run_dir": str(run_dir), "users": metrics["users"]})
                print(f"{dataset.name} ratio {ratio:g} seed {seed}: NDCG@10 {metrics['NDCG@10']:.4f}  "
                      f"Recall@10 {metrics['Recall@10']:.4f}")
    path = write_results("masking_ratio", rows, {"ratios": args.ratios, "seeds": args.seeds, "steps": args.steps,
                                                 "eval_users": args.eval_users, "config": args.config,
                                                 "overrides": args.set, "runs": runs},
                         args.out_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
