#!/usr/bin/env python
"""Ablations (paper Table 3): full JEPA4Rec, without the MLM loss, without pre-training, and without
the token type embedding, each fine-tuned on Scientific and Online Retail.

The reduced scale matches the shipped all-domains checkpoint (checkpoints/jepa4rec-tiny-pretrain):
"full" IS that checkpoint, and each ablated model is pre-trained with the same tokenizer, seed,
number of steps and schedules, changing one thing (``loss.lambda_mlm=0`` or
``model.use_token_type_embeddings=false``). Fine-tuning uses the config of the checkpoint's size
(finetune_tiny by default) and shares its run
directories with scripts/results_table.py (full = runs/results/<dataset>/jepa4rec, without
pre-training = .../scratch), so nothing is trained twice. ``--full`` pre-trains every variant,
"full" included, for ``--full-steps`` steps.

Writes scripts/results/ablations.csv (dataset, variant, metric, value) and ablations.json.

    python scripts/reproduce_ablations.py                # reduced: ~1 h on 2 cores after results_table.py
    python scripts/reproduce_ablations.py --full         # GPU scale
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.data import load_dataset
from jepa4rec.experiments import (add_run_args, config_for, finetune_once, long_rows, matched_pretraining,
                                  pretrain_once, write_results)

# variant -> (run key under runs/results/<dataset>, pre-training overrides; None = no pre-training)
VARIANTS = {
    "JEPA4Rec": ("jepa4rec", []),
    "w/o MLM loss": ("ablation_no_mlm", ["loss.lambda_mlm=0"]),
    "w/o pre-training": ("scratch", None),
    "w/o token type emb.": ("ablation_no_token_type", ["model.use_token_type_embeddings=false"]),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="pre-train every variant (full included) for --full-steps steps")
    p.add_argument("--full-steps", type=int, default=20000, help="pre-training steps of each variant with --full")
    p.add_argument("--datasets", nargs="*", default=["Scientific_UniSRec", "OnlineRetail"], help="fine-tuning targets")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                   help=f"default all: {', '.join(VARIANTS)}")
    p.add_argument("--jepa", default="checkpoints/jepa4rec-tiny-pretrain",
                   help="the full model's checkpoint; its tokenizer, seed and steps are matched")
    p.add_argument("--pretrain-config", default=None, help="pre-training config of the ablated variants (default "
                   "pretrain_<size> for --jepa's model size; every option --jepa was trained with is matched anyway)")
    p.add_argument("--pretrain-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra pre-training overrides (every variant)")
    p.add_argument("--finetune-config", default=None,
                   help="fine-tuning config (file or name in jepa4rec/configs; default finetune_<size> for --jepa's "
                        "model size: finetune_tiny or finetune_minilm)")
    p.add_argument("--finetune-set", nargs="*", default=[], metavar="KEY=VALUE", help="fine-tuning overrides on top of --finetune-config")
    add_run_args(p, "runs", "ablations")
    args = p.parse_args(argv)
    args.pretrain_config = args.pretrain_config or config_for(args.jepa, "pretrain")
    args.finetune_config = args.finetune_config or config_for(args.jepa, "finetune")
    return args


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    runs = Path(args.runs_dir)
    card, matched = matched_pretraining(args.jepa)
    if args.full:  # later overrides win: a longer budget with its own schedules
        matched += [f"max_steps={args.full_steps}", "schedule_steps=null"]
    matched += [f"domains=[{','.join(card['domains'])}]", *args.pretrain_set]
    tag = "full" if args.full else "matched"

    inits = {}
    for variant in args.variants:
        key, overrides = VARIANTS[variant]
        if overrides is None:
            inits[variant] = None
        elif variant == "JEPA4Rec" and not args.full:
            inits[variant] = args.jepa
        else:
            inits[variant] = pretrain_once(runs / "ablations" / f"{key}_{tag}", [*matched, *overrides], args.pretrain_config)

    rows, records = [], []
    for name in args.datasets:
        dataset = load_dataset(name, root=args.data_root)
        for variant in args.variants:
            key = VARIANTS[variant][0] + ("" if not args.full or VARIANTS[variant][1] is None else "_full")
            res = finetune_once(runs / "results" / dataset.name / key, dataset, inits[variant], args.finetune_set,
                                args.finetune_config)
            base = {"dataset": dataset.name, "variant": variant}
            rows += long_rows(base, res["test"], ("NDCG@10", "Recall@10", "MRR"))
            records.append({**base, "init_from": str(inits[variant]), "train_seconds": res["train_seconds"],
                            "best_epoch": res["best_epoch"]})
            print(f"{dataset.name} {variant}: NDCG@10 {res['test']['NDCG@10']:.4f}  Recall@10 {res['test']['Recall@10']:.4f}  "
                  f"MRR {res['test']['MRR']:.4f}")
    path = write_results("ablations", rows, {"pretraining": tag, "matched_overrides": matched,
                                             "variants": {v: VARIANTS[v][1] for v in args.variants},
                                             "finetune_config": args.finetune_config, "finetune_overrides": args.finetune_set,
                                             "runs": records}, args.out_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
