#!/usr/bin/env python
"""The overall results table (paper Table 2) on one dataset, every model on equal terms.

Every model is ranked in four cells, from one scoring pass of the test split (and one of the validation
split, where the priors are fitted):

  history kept                 every item competes (the paper's code, RecFormer's)
  history excluded             the user's history items do not compete (RecBole's, where the paper's baselines
                               come from); the target always does
  ... + score priors           the repeat bias (an offset on history items; history kept only: under exclusion
                               it cannot apply) and the popularity bias (a weight on log(1 + training count)),
                               fitted on the validation split for *every* model by the same fit
                               (jepa4rec.priors), whatever its units: popularity, SASRec and the text models alike

Models (``--models``, default all):
  popularity          most interacted training items
  sasrec              ID-only SASRec (2 blocks, hidden 64, max length 50), early-stopped
  frozen_last_items   the language model frozen: cosine to the recency-weighted (0.5^k) mean of the
                      history items' mean-pooled sentence vectors; no training at all
  frozen_history_text the language model frozen, in JEPA4Rec's input format (the history as one text, pooled as
                      --step0-pooling): the converted encoder before any training, "step 0" of the twins
  frozen_seq          SASRec over the frozen sentence vectors instead of item IDs (2 blocks, hidden 128):
                      UniSRec-style text features without the MoE adaptor
  zeroshot_recformer  the RecFormer-style pre-trained checkpoint (λ2 = 0), no target-domain training
  zeroshot_jepa4rec   the JEPA4Rec pre-trained checkpoint, no target-domain training
  scratch             JEPA4Rec without recommendation pre-training, fine-tuned (--config's init_from)
  recformer           the RecFormer-style checkpoint fine-tuned
  jepa4rec            the JEPA4Rec checkpoint fine-tuned

A fine-tuned row uses ``<runs-dir>/<dataset>/<model>/best`` when it exists (a run made by
``python -m jepa4rec.finetune`` and linked or written there), else fine-tunes with --config first. Each
model's record (``<model>.json``) and per-user ranks in every cell (``<model>.ranks.csv``, the input of
``python -m jepa4rec.compare --cell CELL``) are kept under ``<runs-dir>/<dataset>/`` and reused on a later
call unless ``--force``; two calls with disjoint ``--models`` can run side by side, and the table is rebuilt
from every record present. Outputs, merged over datasets: ``scripts/results/results_table.csv`` (long format:
dataset, model, priors, protocol, cell, metric, value; the app's Table 2 chart), ``results_table.json`` (one
record per model, every cell, the fitted priors, time, seed and config) and ``results_table.md``.

    python scripts/results_table.py --dataset Scientific_UniSRec --jepa checkpoints/jepa4rec-minilm-pretrain \\
        --recformer checkpoints/recformer-minilm-pretrain --runs-dir runs/results_minilm
    python scripts/results_table.py --dataset ml-100k --models popularity sasrec --threads 2
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from jepa4rec.baselines import PopularityScorer, SASRecConfig, train_sasrec
from jepa4rec.baselines.frozen_text import RecencyCosine, sentence_vectors
from jepa4rec.cli import ArgumentParser, command
from jepa4rec.config import FinetuneConfig, load_config
from jepa4rec.data import load_dataset
from jepa4rec.errors import UserError
from jepa4rec.evaluation import CELL_LABELS, CELLS, PROTOCOLS, format_cells, item_log_popularity
from jepa4rec.experiments import config_for, write_atomic
from jepa4rec.paths import RESULTS_DIR
from jepa4rec.priors import evaluate_on_equal_terms
from jepa4rec.recommender import Recommender
from jepa4rec.significance import write_case_ranks


class Row(NamedTuple):
    label: str  # as the table names it
    kind: str  # popularity | sasrec | frozen | step0 | zeroshot | finetune
    source: str | None = None  # which pre-trained checkpoint: "jepa" or "recformer"


MODELS = {
    "popularity": Row("Popularity", "popularity"),
    "sasrec": Row("SASRec (item IDs)", "sasrec"),
    "frozen_last_items": Row("MiniLM, frozen, last items (no training)", "frozen"),
    "frozen_history_text": Row("MiniLM, frozen, history as one text (step 0 of the twins)", "step0"),
    "frozen_seq": Row("Transformer over frozen MiniLM item vectors", "sasrec"),
    "zeroshot_recformer": Row("RecFormer-style (λ2 = 0), pre-trained, zero-shot", "zeroshot", "recformer"),
    "zeroshot_jepa4rec": Row("JEPA4Rec, pre-trained, zero-shot", "zeroshot", "jepa"),
    "scratch": Row("JEPA4Rec w/o pre-training, fine-tuned", "finetune"),
    "recformer": Row("RecFormer-style (λ2 = 0), pre-trained, fine-tuned", "finetune", "recformer"),
    "jepa4rec": Row("JEPA4Rec, pre-trained, fine-tuned", "finetune", "jepa"),
}
METRICS = ("NDCG@10", "Recall@10", "MRR", "NDCG@5", "Recall@5", "NDCG@20", "Recall@20")
HEADLINE = ("NDCG@10", "Recall@10", "MRR")
# (A, B) pairs whose paired test (B / A, per cell) the table carries when both rows have ranks: the claims the
# README makes between two models come from here.
PAIRS = (("sasrec", "jepa4rec"), ("recformer", "jepa4rec"), ("sasrec", "recformer"),
         ("zeroshot_recformer", "zeroshot_jepa4rec"), ("frozen_history_text", "zeroshot_jepa4rec"),
         ("popularity", "jepa4rec"), ("sasrec", "scratch"), ("popularity", "scratch"),
         ("zeroshot_jepa4rec", "jepa4rec"), ("frozen_seq", "jepa4rec"), ("sasrec", "frozen_seq"))
PRIOR_LABELS = {False: "no score priors", True: "score priors fitted on validation"}
PROTOCOL_NOTE = ("leave-one-out; all items ranked; ties count against the target; each model under history kept and "
                 "history excluded, raw and with score priors fitted on the validation split (repeat & popularity "
                 "bias under history kept; popularity bias only under history excluded, where a repeat bias cannot "
                 "apply)")


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="named dataset or dataset folder (e.g. Scientific_UniSRec, OnlineRetail); "
                   "not needed with --table-only")
    p.add_data_root_argument()
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                   help=f"models to run (default: all): {', '.join(MODELS)}")
    p.add_argument("--jepa", default="checkpoints/jepa4rec-tiny-pretrain", help="JEPA4Rec pre-trained model directory")
    p.add_argument("--recformer", default="checkpoints/recformer-tiny-pretrain", help="RecFormer-style pre-trained model directory")
    p.add_argument("--language-model", default="minilm", help="language model of the frozen rows (a name or folder)")
    p.add_argument("--step0-pooling", choices=["mean", "cls"], default="mean",
                   help="how frozen_history_text pools (default mean, as the MiniLM twins were pre-trained)")
    p.add_argument("--config", default=None, help="fine-tuning config of a row that has no run yet (file or name in "
                   "jepa4rec/configs; default finetune_<size> for --jepa's model size: finetune_tiny or finetune_minilm)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="fine-tuning overrides, e.g. max_minutes=10")
    p.add_argument("--sasrec-epochs", type=int, default=SASRecConfig.epochs, help="SASRec's maximum epochs (early stopping ends sooner)")
    p.add_argument("--seed", type=int, default=42, help="seed of every model")
    p.add_argument("--batch-size", type=int, default=128, help="users per scoring pass of a text model")
    p.add_device_argument()
    p.add_threads_argument()
    p.add_argument("--runs-dir", default="runs/results", help="where each model's run, record and ranks live")
    p.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the merged table files are written")
    p.add_argument("--force", action="store_true", help="re-evaluate models whose record exists (a fine-tuned run's "
                   "best/ is re-scored, never trained over)")
    p.add_argument("--table-only", action="store_true", help="run nothing; rebuild the table from the records present")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of each paired test (default 10000)")
    args = p.parse_args(argv)
    if not args.table_only and not args.dataset:
        p.error("--dataset is required unless --table-only")
    args.config = args.config or config_for(args.jepa, "finetune")
    return args


def _training_info(run: Path) -> dict:
    """What a fine-tuned row's record keeps of its run: results.json when the run finished here, else the
    model directory's training card (a shipped checkpoint linked in)."""
    results = run / "results.json"
    if results.exists():
        res = json.loads(results.read_text())
        return {"train_seconds": res["train_seconds"], "seed": res["seed"], "best_epoch": res["best_epoch"],
                "epochs_run": len(res["history"]) - 1, "checkpoint": res.get("init_from"), "config": res["config"],
                "threads": res.get("threads"), "precision": res.get("precision")}
    card_path = run / "best" / "training_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    config = card.get("config", {})
    return {"train_seconds": card.get("train_seconds"), "seed": config.get("seed"), "best_epoch": card.get("epoch"),
            "checkpoint": card.get("init_from"), "config": config}


def pretrain_seconds(checkpoint: str | None) -> float | None:
    card = Path(checkpoint) / "training_card.json" if checkpoint else None
    return json.loads(card.read_text()).get("train_seconds") if card and card.exists() else None


def build_scorer(key: str, dataset, args, run_dir: Path):
    """(scorer, what the record keeps of how it was made) for one row; trains what needs training."""
    row = MODELS[key]
    checkpoint = {"jepa": args.jepa, "recformer": args.recformer}.get(row.source)
    if row.kind == "popularity":
        return PopularityScorer.from_dataset(dataset), {"train_seconds": 0.0, "config": {}}
    if row.kind == "frozen":
        scorer = RecencyCosine(sentence_vectors(dataset.items, args.language_model, device=args.device))
        return scorer, {"train_seconds": 0.0, "config": {"language_model": args.language_model, "decay": scorer.decay,
                                                         "pooling": "mean"}}
    if row.kind == "step0":
        rec = Recommender.from_language_model(args.language_model, dataset, pooling=args.step0_pooling,
                                              device=args.device, batch_size=args.batch_size)
        return rec, {"train_seconds": 0.0, "config": {"language_model": args.language_model, "max_items": 20,
                                                      "max_tokens": 128, "pooling": args.step0_pooling}}
    if row.kind == "sasrec":
        features = sentence_vectors(dataset.items, args.language_model, device=args.device) if key == "frozen_seq" else None
        cfg = SASRecConfig(seed=args.seed, epochs=args.sasrec_epochs, device=args.device or SASRecConfig.device,
                           **({"hidden_size": 128} if features is not None else {}))
        model, log = train_sasrec(dataset, cfg, item_features=features)
        return model, {"train_seconds": round(log["train_seconds"], 1), "seed": args.seed,
                       "best_epoch": log["best_epoch"], "config": log["config"]}
    if row.kind == "zeroshot":
        rec = Recommender.from_pretrained(checkpoint, dataset, device=args.device, batch_size=args.batch_size)
        card = json.loads((Path(checkpoint) / "training_card.json").read_text())
        return rec, {"train_seconds": 0.0, "pretrain_seconds": card.get("train_seconds"), "checkpoint": checkpoint,
                     "seed": card.get("config", {}).get("seed"), "config": {}}
    run = run_dir / key
    if run.exists() and any(run.iterdir()) and not (run / "best").exists():
        # An interrupted or foreign run: fine-tuning here would train over it with this command's options.
        raise UserError(f"{run} holds a fine-tuning run without best/; this command would train over it",
                        hint=f"resume it with python -m jepa4rec.finetune --resume (its output_dir), or delete {run}")
    if not (run / "best").exists():
        from jepa4rec.finetuning import finetune

        overrides = [f"dataset={args.dataset}", f"output_dir={run}", f"seed={args.seed}", *args.set]
        if args.data_root:
            overrides.append(f"data_root={args.data_root}")
        if checkpoint:
            overrides.append(f"init_from={checkpoint}")
        finetune(load_config(FinetuneConfig, args.config, overrides), dataset)
    info = _training_info(run)
    rec = Recommender.from_pretrained(run / "best", dataset, device=args.device, batch_size=args.batch_size,
                                      use_cache=False)
    return rec, {**info, "pretrain_seconds": pretrain_seconds(info.get("checkpoint"))}


def run_model(key: str, dataset, args, run_dir: Path) -> dict:
    t0 = time.time()
    scorer, info = build_scorer(key, dataset, args, run_dir)
    log_popularity = item_log_popularity(dataset.train_sequences(), dataset.n_items)
    result = evaluate_on_equal_terms(scorer, dataset.test_cases(), dataset.valid_cases(), log_popularity,
                                     batch_size=args.batch_size, desc=f"{key} test")
    write_case_ranks(run_dir / f"{key}.ranks.csv", dataset, dataset.test_cases(), result["ranks"])
    row = MODELS[key]
    return {"dataset": dataset.name, "model_key": key, "model": row.label, "kind": row.kind,
            "cells": {cell: {m: metrics[m] for m in METRICS} for cell, metrics in result["cells"].items()},
            "fits": result["fits"], "users": len(dataset.test_cases()), "items": dataset.n_items,
            "evaluate_seconds": round(time.time() - t0, 1), "threads": torch.get_num_threads(), **info}


def record_path(run_dir: Path, key: str) -> Path:
    return run_dir / f"{key}.json"


def _cell_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        for cell, metrics in r["cells"].items():
            protocol = cell.removesuffix("_priors")
            for metric in HEADLINE:
                rows.append({"dataset": r["dataset"], "model": r["model"], "priors": PRIOR_LABELS[cell.endswith("_priors")],
                             "protocol": PROTOCOLS[protocol], "cell": CELL_LABELS[cell], "metric": metric,
                             "value": metrics[metric]})
    return pd.DataFrame(rows)


def markdown(records: list[dict]) -> str:
    """Per dataset, one block without priors and one with them; each block has both protocols side by side."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        users = rows[0].get("users")
        lines += [f"### {dataset}" + (f" ({users:,} test users, all {rows[0].get('items', 0):,} items ranked)" if users else ""), ""]
        for with_priors in (False, True):
            kept, excluded = ("kept_priors", "excluded_priors") if with_priors else ("kept", "excluded")
            title = ("With score priors fitted on the validation split (history kept: repeat & popularity bias; "
                     "history excluded: popularity bias only, a repeat bias cannot apply)" if with_priors
                     else "Without score priors (each model's own scores)")
            lines += [f"{title}:", "",
                      "| model | history kept: NDCG@10 | Recall@10 | MRR | history excluded: NDCG@10 | Recall@10 | MRR |",
                      "|---|---|---|---|---|---|---|"]
            for r in rows:
                cells = r["cells"]
                if kept not in cells:
                    continue
                values = [f"{cells[c][m]:.4f}" for c in (kept, excluded) for m in HEADLINE]
                lines.append(f"| {r['model']} | " + " | ".join(values) + " |")
            lines.append("")
        timing = ["| model | training min | pre-training min | repeat bias (kept) | popularity bias (kept / excluded) |",
                  "|---|---|---|---|---|"]
        for r in rows:
            train, pre = r.get("train_seconds"), r.get("pretrain_seconds")
            fits = r.get("fits", {})
            rb = fits.get("kept", {}).get("repeat_bias")
            pb = [fits.get(p, {}).get("popularity_bias") for p in PROTOCOLS]
            timing.append(f"| {r['model']} | {'' if train is None else f'{train / 60:.1f}'} | "
                          f"{'' if pre is None else f'{pre / 60:.0f}'} | {'' if rb is None else f'{rb:+.3f}'} | "
                          + " / ".join('' if b is None else f'{b:+.4f}' for b in pb) + " |")
        lines += ["Training time and the fitted priors (in each model's score units):", "", *timing, ""]
    return "\n".join(lines)


def paired_tests(runs_dir: Path, resamples: int = 10_000) -> list[dict]:
    """B / A on NDCG@10 with its 95% paired-bootstrap interval and sign-flip p-value, for every pair of
    :data:`PAIRS` whose two rank files exist under a dataset of ``runs_dir``, in every cell both have (what
    ``python -m jepa4rec.compare A.ranks.csv B.ranks.csv --cell CELL --metrics NDCG@10`` prints)."""
    from jepa4rec.significance import compare, paired_ranks, read_ranks

    out = []
    for folder in sorted(p for p in runs_dir.glob("*") if p.is_dir()):
        for a_key, b_key in PAIRS:
            a_path, b_path = folder / f"{a_key}.ranks.csv", folder / f"{b_key}.ranks.csv"
            if not (a_path.exists() and b_path.exists()):
                continue
            for cell in CELLS:
                try:
                    ra, rb = paired_ranks(read_ranks(a_path, cell), read_ranks(b_path, cell))
                except UserError:  # a file without this cell
                    continue
                c = compare(ra, rb, "NDCG@10", resamples=resamples)
                out.append({"dataset": folder.name, "a": a_key, "b": b_key, "cell": cell, "metric": c.metric,
                            "users": c.users, "a_value": c.a, "b_value": c.b, "ratio": c.ratio, "ratio_low": c.ratio_low,
                            "ratio_high": c.ratio_high, "diff": c.diff, "diff_low": c.diff_low, "diff_high": c.diff_high,
                            "p_value": c.p_value, "command": f"python -m jepa4rec.compare {a_path} {b_path} --cell {cell} "
                                                            f"--metrics NDCG@10 --resamples {resamples}"})
    return out


def paired_markdown(pairs: list[dict]) -> str:
    if not pairs:
        return ""
    lines = ["### Paired tests (B / A on test NDCG@10, 95% paired-bootstrap interval, sign-flip p)", "",
             "| dataset | A | B | cell | A | B | B / A [95% interval] | p |", "|---|---|---|---|---|---|---|---|"]
    for r in pairs:
        lines.append(f"| {r['dataset']} | {MODELS[r['a']].label} | {MODELS[r['b']].label} | {CELL_LABELS[r['cell']]} | "
                     f"{r['a_value']:.4f} | {r['b_value']:.4f} | {r['ratio']:.3f}× [{r['ratio_low']:.3f}, "
                     f"{r['ratio_high']:.3f}] | {r['p_value']:.3g} |")
    return "\n".join(lines) + "\n"


def write_tables(runs_dir: Path, out_dir: Path, resamples: int = 10_000) -> list[dict]:
    """Merge the records under ``runs_dir`` into the tables already in ``out_dir`` (a record replaces only the
    row of its own dataset and model, so a fresh clone's run never drops committed rows; rows of the format
    before the two protocols are dropped) and write the CSV / JSON / markdown outputs atomically."""
    fresh = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/*.json")) if p.stem in MODELS]
    fresh = [r for r in fresh if "cells" in r]
    existing = out_dir / "results_table.json"
    kept = json.loads(existing.read_text())["records"] if existing.exists() else []
    kept = [r for r in kept if "cells" in r]
    if not fresh and not kept:
        raise UserError(f"no model records under {runs_dir} or in {existing}", hint="run without --table-only first")
    merged = {(r["dataset"], r["model_key"]): r for r in kept + fresh}  # fresh records last: they win
    order = {k: i for i, k in enumerate(MODELS)}
    records = sorted(merged.values(), key=lambda r: (r["dataset"], order.get(r["model_key"], len(order))))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(existing, json.dumps({"protocol": PROTOCOL_NOTE, "cells": CELL_LABELS, "records": records},
                                      indent=2, default=str))
    write_atomic(out_dir / "results_table.csv", _cell_frame(records).to_csv(index=False))
    pairs_path = out_dir / "results_table_paired.json"
    fresh_pairs = paired_tests(runs_dir, resamples)
    old_pairs = json.loads(pairs_path.read_text())["pairs"] if pairs_path.exists() else []
    pairs = {(r["dataset"], r["a"], r["b"], r["cell"]): r for r in old_pairs + fresh_pairs}  # fresh ones win
    pairs = sorted(pairs.values(), key=lambda r: (r["dataset"], PAIRS.index((r["a"], r["b"])) if (r["a"], r["b"]) in PAIRS
                                                   else len(PAIRS), CELLS.index(r["cell"])))
    if pairs:
        write_atomic(pairs_path, json.dumps({"resamples": resamples, "pairs": pairs}, indent=2))
    text = markdown(records) + "\n" + paired_markdown(pairs)
    write_atomic(out_dir / "results_table.md", text)
    print(text)
    return records


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jepa4rec.finetuning").setLevel(logging.INFO)  # each epoch's validation, as it happens
    runs_dir = Path(args.runs_dir)
    if not args.table_only:
        dataset = load_dataset(args.dataset, root=args.data_root)
        run_dir = runs_dir / dataset.name
        run_dir.mkdir(parents=True, exist_ok=True)
        for key in args.models:
            rec_path = record_path(run_dir, key)
            if rec_path.exists() and not args.force and "cells" in json.loads(rec_path.read_text()):
                print(f"{key}: reusing {rec_path}")
                continue
            print(f"{key}: running on {dataset.name}")
            row = run_model(key, dataset, args, run_dir)
            row.update(torch=torch.__version__, python=platform.python_version())
            rec_path.write_text(json.dumps(row, indent=2, default=str))
            print(f"{key} ({row['evaluate_seconds']:.0f} s):\n{format_cells(row['cells'])}")
    write_tables(runs_dir, Path(args.out_dir), args.resamples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
