#!/usr/bin/env python
"""Pre-training data (paper Fig. 3) and zero-shot transfer (Fig. 4).

Fig. 3: JEPA4Rec fine-tuned on each target after pre-training on nothing (from scratch), on ONE
pre-training domain, or on all of them. The one-domain model gets the same tokenizer, config, seed
and number of steps (with the same LR and EMA schedules) as the all-domains checkpoint, so only the
data differ. Fine-tuning uses the config of the checkpoint's size (finetune_tiny by default) and
shares its run directories with ``scripts/results_table.py`` (runs/results/<dataset>/{scratch,jepa4rec}),
so runs are not repeated.

Fig. 4: zero-shot NDCG@10 / Recall@10 on every target of the JEPA4Rec and RecFormer-style
checkpoints (same data and budget) and of the one-domain model; for a checkpoint pre-trained from a
language model, also that model untrained (step 0), the floor pre-training must add to.

Writes scripts/results/pretrain_data.csv (Fig. 3) and zeroshot.csv (Fig. 4), each with a .json.

    python scripts/reproduce_pretrain_data.py                      # reduced: ~2 h on 2 cores (with results_table.py's runs)
    python scripts/reproduce_pretrain_data.py --full               # every domain alone; all targets
    python scripts/reproduce_pretrain_data.py --skip-finetune --jepa checkpoints/jepa4rec-minilm-pretrain \\
        --recformer checkpoints/recformer-minilm-pretrain           # Fig. 4 with MiniLM
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.data import load_dataset
from jepa4rec.data.registry import PRETRAIN_DOMAINS
from jepa4rec.experiments import (add_run_args, config_for, evaluate_test_split, finetune_once, long_rows,
                                  matched_pretraining, pretrain_once, untrained_start, write_results)

REDUCED = dict(single=["Electronics2014-1M_SeqRecBench"], finetune_targets=["Scientific_UniSRec", "OnlineRetail"],
               zeroshot_targets=["Scientific_UniSRec", "Instruments_IISAN", "OnlineRetail"])
FULL = dict(single=list(PRETRAIN_DOMAINS), finetune_targets=["Scientific_UniSRec", "OnlineRetail"],
            zeroshot_targets=["Scientific_UniSRec", "Instruments_IISAN", "OnlineRetail", "ml-100k"])


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="every pre-training domain alone, and ml-100k as a zero-shot target too")
    p.add_argument("--single", nargs="*", default=None, help=f"one-domain pre-training runs (default {REDUCED['single']})")
    p.add_argument("--finetune-targets", nargs="*", default=None, help=f"Fig. 3 targets (default {REDUCED['finetune_targets']})")
    p.add_argument("--zeroshot-targets", nargs="*", default=None, help=f"Fig. 4 targets (default {REDUCED['zeroshot_targets']})")
    p.add_argument("--jepa", default="checkpoints/jepa4rec-tiny-pretrain", help="the all-domains JEPA4Rec checkpoint")
    p.add_argument("--recformer", default="checkpoints/recformer-tiny-pretrain", help="the all-domains RecFormer-style checkpoint")
    p.add_argument("--pretrain-config", default=None, help="config of the one-domain runs (default pretrain_<size> "
                   "for --jepa's model size; every option --jepa was trained with is matched, its data excepted)")
    p.add_argument("--pretrain-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra one-domain pre-training overrides")
    p.add_argument("--finetune-config", default=None,
                   help="fine-tuning config (file or name in jepa4rec/configs; default finetune_<size> for --jepa's "
                        "model size: finetune_tiny or finetune_minilm)")
    p.add_argument("--finetune-set", nargs="*", default=[], metavar="KEY=VALUE", help="fine-tuning overrides on top of --finetune-config")
    p.add_argument("--eval-users", type=int, default=None, help="zero-shot: test only the first N users of each target")
    p.add_argument("--skip-finetune", action="store_true", help="only the zero-shot part (Fig. 4)")
    add_run_args(p, "runs", "pretrain_data / zeroshot")
    args = p.parse_args(argv)
    scale = FULL if args.full else REDUCED
    args.single = scale["single"] if args.single is None else args.single
    args.finetune_targets = scale["finetune_targets"] if args.finetune_targets is None else args.finetune_targets
    args.zeroshot_targets = scale["zeroshot_targets"] if args.zeroshot_targets is None else args.zeroshot_targets
    args.pretrain_config = args.pretrain_config or config_for(args.jepa, "pretrain")
    args.finetune_config = args.finetune_config or config_for(args.jepa, "finetune")
    return args


def short(domain: str) -> str:
    """A domain's display name: the folder name of a path, without the ``_SeqRecBench`` suffix."""
    return Path(domain).name.replace("_SeqRecBench", "")


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    runs = Path(args.runs_dir)
    card, matched = matched_pretraining(args.jepa)
    steps, all_domains = card["step"], card["domains"]
    matched += args.pretrain_set
    singles = {d: pretrain_once(runs / "pretrain_data" / short(d), [f"domains=[{d}]", *matched], args.pretrain_config)
               for d in args.single}
    pretrainings = {"none": None, **{f"{short(d)} only": path for d, path in singles.items()},
                    f"all {len(all_domains)}": args.jepa}

    models = {"JEPA4Rec": args.jepa, "RecFormer-style": args.recformer,
              **{f"JEPA4Rec ({short(d)} only)": path for d, path in singles.items()}}
    # A model pre-trained from a language model is measured against that model untrained (pooled as the
    # checkpoint pools): pre-training must add to its zero-shot ranking, not erase it.
    start = untrained_start(card["config"])
    if start:
        models[start.label] = start.checkpoint
    rows = []
    for target in args.zeroshot_targets:
        dataset = load_dataset(target, root=args.data_root)
        for label, checkpoint in models.items():
            metrics = evaluate_test_split(checkpoint, dataset, args.eval_users,
                                          start.pooling if start and checkpoint == start.checkpoint else None,
                                          cache_dir=runs / "pretrain_data" / "zeroshot")
            rows += long_rows({"dataset": dataset.name, "model": label, "users": metrics["users"],
                               "users_per_s": round(metrics["users_per_s"], 1)}, metrics, ("NDCG@10", "Recall@10"))
            print(f"zero-shot {label} on {dataset.name}: NDCG@10 {metrics['NDCG@10']:.4f}  Recall@10 {metrics['Recall@10']:.4f}")
    path = write_results("zeroshot", rows, {"checkpoints": {k: str(v) for k, v in models.items()},
                                             "eval_users": args.eval_users}, args.out_dir)
    print(f"wrote {path}")

    if not args.skip_finetune:
        rows, records = [], []
        for target in args.finetune_targets:
            dataset = load_dataset(target, root=args.data_root)
            for label, init in pretrainings.items():
                key = {"none": "scratch", f"all {len(all_domains)}": "jepa4rec"}.get(label, f"jepa4rec_{label.split()[0]}")
                res = finetune_once(runs / "results" / dataset.name / key, dataset, init, args.finetune_set,
                                    args.finetune_config)
                base = {"dataset": dataset.name, "pretraining": label, "init_from": init}
                rows += long_rows(base, res["test"], ("Recall@10", "NDCG@10"))
                records.append({**base, "train_seconds": res["train_seconds"], "best_epoch": res["best_epoch"]})
                print(f"fine-tuned on {dataset.name} after pre-training on {label}: "
                      f"Recall@10 {res['test']['Recall@10']:.4f}  NDCG@10 {res['test']['NDCG@10']:.4f}")
        path = write_results("pretrain_data", rows, {"pretrain_steps": steps, "all_domains": all_domains,
                                                     "single": args.single, "finetune_config": args.finetune_config,
                                                     "finetune_overrides": args.finetune_set, "runs": records}, args.out_dir)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
