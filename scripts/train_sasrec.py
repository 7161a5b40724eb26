#!/usr/bin/env python
"""Train the ID-only SASRec baseline on a named dataset and report full-ranking test metrics.

Also scores the most-popular baseline (seconds), so every result file carries a floor. Metrics
follow :mod:`jepa4rec.evaluation`: leave-one-out, all items ranked, ties against the target, under both
protocols from one scoring pass (history kept, history excluded). For the score priors fitted on
validation beside every other model, use scripts/results_table.py --models sasrec popularity.

    python scripts/train_sasrec.py --dataset Scientific_UniSRec --epochs 200 --out runs/sasrec_scientific.json
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

from jepa4rec.baselines import PopularityScorer, SASRecConfig, save_sasrec, train_sasrec
from jepa4rec.cli import ArgumentParser, command
from jepa4rec.data import load_dataset
from jepa4rec.evaluation import compute_cell_ranks, format_cells, format_metrics, metrics_from_ranks


def parse_args(argv=None) -> argparse.Namespace:
    defaults = SASRecConfig()
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="Scientific_UniSRec", help="named dataset or a dataset folder")
    p.add_data_root_argument()
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=defaults.patience, help="validations without improvement before stopping")
    p.add_device_argument(default=defaults.device)
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the initialisation and batches")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training sequences per step")
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    p.add_argument("--hidden-size", type=int, default=defaults.hidden_size, help="width of the item embeddings and blocks")
    p.add_argument("--n-layers", type=int, default=defaults.n_layers, help="self-attention blocks")
    p.add_argument("--n-heads", type=int, default=defaults.n_heads, help="attention heads per block")
    p.add_argument("--max-len", type=int, default=defaults.max_len, help="most recent history items kept")
    p.add_argument("--dropout", type=float, default=defaults.dropout, help="dropout of embeddings and blocks")
    p.add_argument("--eval-every", type=int, default=defaults.eval_every, help="epochs between validation runs (early stopping)")
    p.add_threads_argument()
    p.add_argument("--out", default=None, help="write a JSON results file here")
    p.add_argument("--save", default=None,
                   help="save the trained model here (model.safetensors + sasrec_config.json with the dataset, its "
                        "catalogue digest and the test metrics), e.g. for the app's model comparison")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


@command
def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config_names = {f.name for f in fields(SASRecConfig)}
    config = SASRecConfig(**{k: v for k, v in vars(args).items() if k in config_names})

    t0 = time.perf_counter()
    dataset = load_dataset(args.dataset, root=args.data_root)
    print(f"dataset {dataset.name}: {dataset.stats()}  ({time.perf_counter() - t0:.1f}s)")
    test_cases = dataset.test_cases()

    def both_protocols(scorer, desc: str, batch_size: int = 256) -> dict:
        ranks = compute_cell_ranks(scorer, test_cases, batch_size=batch_size, progress=not args.quiet, desc=desc)
        return {cell: {**metrics_from_ranks(r), "users": len(test_cases)} for cell, r in ranks.items()}

    pop = PopularityScorer.from_dataset(dataset)
    pop_test = both_protocols(pop, "popularity test")
    print(f"popularity test:\n{format_cells(pop_test)}")

    model, log = train_sasrec(dataset, config, progress=not args.quiet)
    test = both_protocols(model, "SASRec test", config.eval_batch_size)
    print(
        f"SASRec best epoch {log['best_epoch']} of {len(log['epochs'])} ({log['train_seconds']:.0f}s on {log['device']}); "
        f"valid {format_metrics(log['best_valid'])}"
    )
    print(f"SASRec test:\n{format_cells(test)}")

    results = {
        "dataset": dataset.name,
        "stats": dataset.stats(),
        "protocol": "leave-one-out; all items ranked; ties count against the target; test: {kept, excluded}: history "
                    "items compete / do not compete (the target always does)",
        "popularity": {"test": pop_test},
        "sasrec": {"test": test, **log},
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    if args.save:
        from jepa4rec.recommender import catalogue_digest

        saved = save_sasrec(model, args.save, card={
            "dataset": dataset.name, "catalogue_digest": catalogue_digest(dataset.items), "test": test["kept"],
            "test_excluded": test["excluded"],
            "best_epoch": log["best_epoch"], "train_seconds": round(log["train_seconds"], 1), "command": " ".join(sys.argv)})
        print(f"saved the model to {saved}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
