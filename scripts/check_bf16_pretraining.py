#!/usr/bin/env python
"""Is bf16 pre-training safe? The same run in fp32 and in bf16 autocast, compared step by step and zero-shot.

Runs the pre-training recipe twice for ``--steps`` steps (same seed, same data order, same MiniLM start; only
``mixed_precision`` differs: ``no`` and ``bf16``), each resumable under ``--runs-dir``, then:

* the loss curves: per loss component, the largest and the mean absolute difference over the steps, and
  over a moving average of ``--window`` steps (single steps are noisy in either precision);
* zero-shot on ``--datasets`` (test split, every user, every item, both protocols): each model's NDCG@10 and
  the paired test bf16 / fp32 (95% interval), which says whether the two differ by more than noise;
* tokens/s of both runs.

Writes ``scripts/results/bf16_check.json`` and prints a summary.

    python scripts/check_bf16_pretraining.py --steps 200 --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.paths import RESULTS_DIR

LOSSES = ("loss", "loss_si", "loss_mlm", "loss_map")


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="pre-training steps of each run (default 200)")
    p.add_argument("--config", default="pretrain_minilm", help="pre-training recipe (default pretrain_minilm)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="recipe overrides for both runs")
    p.add_argument("--datasets", nargs="+", default=["Scientific_UniSRec", "OnlineRetail"],
                   help="zero-shot datasets (default Scientific_UniSRec OnlineRetail)")
    p.add_argument("--window", type=int, default=20, help="moving-average window of the loss comparison (default 20)")
    p.add_argument("--runs-dir", default="runs/bf16_check", help="where the two runs and their rank files live")
    p.add_argument("--out", default=str(RESULTS_DIR / "bf16_check.json"), help="the summary file")
    p.add_data_root_argument()
    p.add_threads_argument()
    return p.parse_args(argv)


def run(precision: str, args) -> Path:
    from jepa4rec.config import PretrainConfig, load_config
    from jepa4rec.pretraining import pretrain

    out = Path(args.runs_dir) / precision
    if (out / "final" / "training_card.json").exists():
        return out / "final"
    cfg = load_config(PretrainConfig, args.config, [*args.set, f"output_dir={out}", f"max_steps={args.steps}",
                                                   f"schedule_steps={args.steps}", "max_minutes=null", "log_every=1",
                                                   f"save_every={max(args.steps // 4, 1)}", f"mixed_precision={precision}",
                                                   *([f"data_root={args.data_root}"] if args.data_root else [])])
    return pretrain(cfg, resume=True)


def loss_agreement(a: pd.DataFrame, b: pd.DataFrame, window: int) -> dict:
    out = {}
    for name in LOSSES:
        d = (a[name] - b[name]).abs()
        smooth = (a[name].rolling(window).mean() - b[name].rolling(window).mean()).abs().dropna()
        out[name] = {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "mean_fp32": float(a[name].mean()),
                     f"max_abs_ma{window}": float(smooth.max()) if len(smooth) else None,
                     "last_fp32": float(a[name].iloc[-1]), "last_bf16": float(b[name].iloc[-1])}
    return out


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import evaluate_checkpoint
    from jepa4rec.significance import compare, paired_ranks, read_ranks

    datasets = [load_dataset(name, root=args.data_root) for name in args.datasets]  # a bad name fails before training
    finals = {p: run(p, args) for p in ("no", "bf16")}
    logs = {p: pd.read_csv(f.parent / "train_log.csv") for p, f in finals.items()}
    agreement = loss_agreement(logs["no"], logs["bf16"], args.window)
    cards = {p: json.loads((f / "training_card.json").read_text()) for p, f in finals.items()}
    zero_shot = {}
    for ds in datasets:
        ranks, cells = {}, {}
        for p, f in finals.items():
            ranks[p] = Path(args.runs_dir) / f"{ds.name}_{p}.ranks.csv"
            # fp32 scoring for both: the comparison is of the trained weights, not of the scoring precision.
            cells[p] = evaluate_checkpoint(f, ds, precision="fp32", ranks_path=ranks[p])["cells"]
        zero_shot[ds.name] = {}
        for cell in ("kept", "excluded"):
            a, b = paired_ranks(read_ranks(ranks["no"], cell), read_ranks(ranks["bf16"], cell))
            c = compare(a, b, "NDCG@10")
            zero_shot[ds.name][cell] = {"fp32": c.a, "bf16": c.b, "ratio": c.ratio, "ratio_low": c.ratio_low,
                                        "ratio_high": c.ratio_high, "p_value": c.p_value}
    summary = {"steps": args.steps, "config": args.config, "overrides": args.set, "window": args.window,
               "losses": agreement, "zero_shot_ndcg10": zero_shot,
               "tokens_per_s": {p: cards[p].get("tokens_per_s") for p in finals},
               "train_seconds": {p: cards[p].get("train_seconds") for p in finals}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"{args.steps} steps, fp32 vs bf16 (tokens/s {summary['tokens_per_s']['no']} vs {summary['tokens_per_s']['bf16']}):")
    for name, a in agreement.items():
        print(f"  {name:<9} max |Δ| {a['max_abs']:.4f}  mean |Δ| {a['mean_abs']:.4f}  max |Δ| of {args.window}-step means "
              f"{a[f'max_abs_ma{args.window}']:.4f}  (fp32 mean {a['mean_fp32']:.3f})")
    for name, cells in zero_shot.items():
        for cell, z in cells.items():
            print(f"  zero-shot {name} ({cell}): fp32 {z['fp32']:.4f}  bf16 {z['bf16']:.4f}  bf16/fp32 "
                  f"{z['ratio']:.3f}× [{z['ratio_low']:.3f}, {z['ratio_high']:.3f}]  p {z['p_value']:.3g}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
