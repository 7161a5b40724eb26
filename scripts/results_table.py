#!/usr/bin/env python
"""The overall results table (paper Table 2) on one dataset: train and evaluate every model.

Models (``--models``, default all):
  popularity          most interacted training items
  sasrec              ID-only SASRec (2 blocks, hidden 64, max length 50), early-stopped
  frozen_last_items   the language model frozen: cosine to the recency-weighted (0.5^k) mean of the
                      history items' mean-pooled sentence vectors; no training at all
  frozen_history_text the language model frozen, in JEPA4Rec's input format (the history as one text,
                      [CLS] vectors): the converted encoder before any training ("step 0")
  frozen_seq          SASRec over the frozen sentence vectors instead of item IDs (2 blocks, hidden
                      128): UniSRec-style text features without the MoE adaptor
  zeroshot_recformer  the RecFormer-style pre-trained checkpoint (λ2 = 0), no target-domain training
  zeroshot_jepa4rec   the JEPA4Rec pre-trained checkpoint, no target-domain training
  scratch             JEPA4Rec without pre-training (fine-tuned from a random init, target tokenizer)
  recformer           the RecFormer-style checkpoint fine-tuned
  jepa4rec            the JEPA4Rec checkpoint fine-tuned
  frozen_last_items_rb, scratch_rb, recformer_rb, jepa4rec_rb
                      the same models with a repeat bias (one score offset for items already in the
                      history, fitted on the validation split by ``python -m jepa4rec.calibrate``; the
                      fine-tuned ones start from that model's run under the same --runs-dir)
  recformer_rbl, jepa4rec_rbl
                      fine-tuned with the repeat bias learned with the loss (``repeat_bias=learn``)
  frozen_last_items_rbp, scratch_rbp, recformer_rbp, jepa4rec_rbp
                      the same models with both score priors: the repeat bias and a popularity bias (a
                      weight on each item's log training-split count), fitted together on the validation
                      split (``python -m jepa4rec.calibrate --popularity``)

Every model goes through the one evaluator (leave-one-out, all items ranked, ties against the
target). Each model's record is kept under ``<runs-dir>/<dataset>/`` and reused on a later call
unless ``--force``; so two calls with disjoint ``--models`` can run side by side (one CPU thread
each), and the table is rebuilt from every record present. Outputs, merged over datasets:
``scripts/results/results_table.csv`` (long format: dataset, model, metric, value, charted by the
app), ``results_table.json`` (one record per model with its time, seed and config) and
``results_table.md``.

    python scripts/results_table.py --dataset Scientific_UniSRec
    python scripts/results_table.py --dataset OnlineRetail --models scratch recformer --threads 1
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from jepa4rec.baselines import PopularityScorer, SASRecConfig, train_sasrec
from jepa4rec.baselines.frozen_text import RecencyCosine, sentence_vectors
from jepa4rec.calibration import Calibrated, calibrate, fit_score_priors
from jepa4rec.cli import ArgumentParser, command
from jepa4rec.config import FinetuneConfig, load_config
from jepa4rec.data import load_dataset
from jepa4rec.errors import UserError
from jepa4rec.evaluation import evaluate, format_metrics, item_log_popularity
from jepa4rec.experiments import config_for, write_atomic
from jepa4rec.paths import RESULTS_DIR
from jepa4rec.recommender import evaluate_checkpoint

# key -> (label in the table, kind, which pre-trained checkpoint)
MODELS = {
    "popularity": ("Popularity", "popularity", None),
    "sasrec": ("SASRec", "sasrec", None),
    "frozen_last_items": ("MiniLM, frozen, last items", "frozen", None),
    "frozen_history_text": ("MiniLM, frozen, history text", "frozen", None),
    "frozen_seq": ("Transformer over frozen MiniLM item vectors", "sasrec", None),
    "zeroshot_recformer": ("RecFormer-style, zero-shot", "zeroshot", "recformer"),
    "zeroshot_jepa4rec": ("JEPA4Rec, zero-shot", "zeroshot", "jepa"),
    "scratch": ("JEPA4Rec w/o pre-training", "finetune", None),
    "recformer": ("RecFormer-style", "finetune", "recformer"),
    "jepa4rec": ("JEPA4Rec", "finetune", "jepa"),
    "frozen_last_items_rb": ("MiniLM, frozen, last items + repeat bias", "frozen", None),
    "scratch_rb": ("JEPA4Rec w/o pre-training + repeat bias", "calibrated", None),
    "recformer_rb": ("RecFormer-style + repeat bias", "calibrated", "recformer"),
    "jepa4rec_rb": ("JEPA4Rec + repeat bias", "calibrated", "jepa"),
    "recformer_rbl": ("RecFormer-style, repeat bias learned", "finetune", "recformer"),
    "jepa4rec_rbl": ("JEPA4Rec, repeat bias learned", "finetune", "jepa"),
    "frozen_last_items_rbp": ("MiniLM, frozen, last items + repeat & popularity bias", "frozen", None),
    "scratch_rbp": ("JEPA4Rec w/o pre-training + repeat & popularity bias", "calibrated", None),
    "recformer_rbp": ("RecFormer-style + repeat & popularity bias", "calibrated", "recformer"),
    "jepa4rec_rbp": ("JEPA4Rec + repeat & popularity bias", "calibrated", "jepa"),
}
# A calibrated row fits its priors on the fine-tuned run of another row; *_rbp rows also fit the popularity bias.
CALIBRATED_FROM = {f"{base}_{suffix}": base for base in ("frozen_last_items", "scratch", "recformer", "jepa4rec")
                   for suffix in ("rb", "rbp")}
METRICS = ("NDCG@10", "Recall@10", "MRR", "NDCG@5", "Recall@5", "NDCG@20", "Recall@20")


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="named dataset or dataset folder (e.g. Scientific_UniSRec, OnlineRetail)")
    p.add_data_root_argument()
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                   help=f"models to run (default: all): {', '.join(MODELS)}")
    p.add_argument("--jepa", default="checkpoints/jepa4rec-tiny-pretrain", help="JEPA4Rec pre-trained model directory")
    p.add_argument("--recformer", default="checkpoints/recformer-tiny-pretrain", help="RecFormer-style pre-trained model directory")
    p.add_argument("--language-model", default="minilm", help="language model of the frozen rows (a name or folder)")
    p.add_argument("--config", default=None, help="fine-tuning config (file or name in jepa4rec/configs; default "
                   "finetune_<size> for --jepa's model size: finetune_tiny or finetune_minilm)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="fine-tuning overrides, e.g. max_minutes=10")
    p.add_argument("--sasrec-epochs", type=int, default=SASRecConfig.epochs, help="SASRec's maximum epochs (early stopping ends sooner)")
    p.add_argument("--seed", type=int, default=42, help="seed of every model")
    p.add_threads_argument()
    p.add_argument("--runs-dir", default="runs/results", help="where each model's run and record live")
    p.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the merged table files are written")
    p.add_argument("--force", action="store_true", help="re-run models whose record exists (a finished fine-tuning "
                   "run in the model's directory is never trained over: delete it first)")
    p.add_argument("--table-only", action="store_true", help="run nothing; rebuild the table from the records present")
    args = p.parse_args(argv)
    args.config = args.config or config_for(args.jepa, "finetune")
    return args


def _row(dataset, key: str, metrics: dict, **extra) -> dict:
    label, kind, _ = MODELS[key]
    return {"dataset": dataset.name, "model_key": key, "model": label, "kind": kind,
            **{m: metrics[m] for m in METRICS}, "users_per_s": metrics.get("users_per_s"),
            "users": metrics.get("users"), **extra}


def run_model(key: str, dataset, args, run_dir: Path) -> dict:
    _, kind, source = MODELS[key]
    checkpoint = {"jepa": args.jepa, "recformer": args.recformer}.get(source)
    threads = torch.get_num_threads()
    t0 = time.time()
    if kind == "popularity":
        metrics = evaluate(PopularityScorer.from_dataset(dataset), dataset.test_cases(), progress=False)
        return _row(dataset, key, metrics, train_seconds=round(time.time() - t0, 1), seed=None, threads=threads, config={})
    popularity = key.endswith("_rbp")
    if key.startswith("frozen_last_items"):
        scorer = RecencyCosine(sentence_vectors(dataset.items, args.language_model))
        config = {"language_model": args.language_model, "decay": scorer.decay, "pooling": "mean"}
        if key in CALIBRATED_FROM:
            log_pop = item_log_popularity(dataset.train_sequences(), dataset.n_items) if popularity else None
            fit = fit_score_priors(scorer, dataset.valid_cases(), log_popularity=log_pop)
            scorer = Calibrated(scorer, fit["repeat_bias"], fit["popularity_bias"], log_pop)
            config = {**config, "repeat_bias_fit": fit}
        metrics = evaluate(scorer, dataset.test_cases(), desc="frozen last items")
        return _row(dataset, key, metrics, train_seconds=round(time.time() - t0, 1) if key in CALIBRATED_FROM else 0.0,
                    seed=None, threads=threads, config=config)
    if kind == "calibrated":
        base = run_dir / CALIBRATED_FROM[key]
        if not (base / "results.json").exists():
            raise UserError(f"{key} calibrates the fine-tuned run in {base}, which has no results.json",
                            hint=f"run --models {CALIBRATED_FROM[key]} first (or link a finished run there)")
        res = json.loads((base / "results.json").read_text())
        # rec: the calibrated copy, loaded and with its catalogue encoded
        fit, rec = calibrate(base / "best", dataset, base / ("best_priors" if popularity else "best_repeat_bias"),
                             popularity=popularity)
        metrics = evaluate(rec, dataset.test_cases(), desc=f"{key} test")
        return _row(dataset, key, metrics, train_seconds=round(res["train_seconds"] + time.time() - t0, 1),
                    pretrain_seconds=finetune_row(key, dataset, base / "results.json")["pretrain_seconds"],
                    seed=res["seed"], threads=threads, best_epoch=res["best_epoch"], checkpoint=res.get("init_from"),
                    config={**res["config"], "repeat_bias_fit": fit})
    if key == "frozen_history_text":
        metrics = evaluate_checkpoint(args.language_model, dataset, "test")
        return _row(dataset, key, metrics, train_seconds=0.0, seed=None, threads=threads,
                    config={"language_model": args.language_model, "max_items": 20, "max_tokens": 128})
    if kind == "sasrec":
        features = sentence_vectors(dataset.items, args.language_model) if key == "frozen_seq" else None
        cfg = SASRecConfig(seed=args.seed, epochs=args.sasrec_epochs, **({"hidden_size": 128} if features is not None else {}))
        model, log = train_sasrec(dataset, cfg, item_features=features)
        metrics = evaluate(model, dataset.test_cases(), batch_size=cfg.eval_batch_size, desc="SASRec test")
        return _row(dataset, key, metrics, train_seconds=round(log["train_seconds"], 1), seed=args.seed,
                    threads=threads, best_epoch=log["best_epoch"], config=log["config"])
    if kind == "zeroshot":
        metrics = evaluate_checkpoint(checkpoint, dataset, "test")
        card = json.loads((Path(checkpoint) / "training_card.json").read_text())
        return _row(dataset, key, metrics, train_seconds=0.0, pretrain_seconds=card.get("train_seconds"),
                    seed=card.get("config", {}).get("seed"), threads=threads, checkpoint=checkpoint, config={})
    from jepa4rec.finetuning import finetune

    overrides = [f"dataset={args.dataset}", f"output_dir={run_dir / key}", f"seed={args.seed}", *args.set]
    if key.endswith("_rbl"):
        overrides.append("repeat_bias=learn")
    if args.data_root:
        overrides.append(f"data_root={args.data_root}")
    if checkpoint:
        overrides.append(f"init_from={checkpoint}")
    cfg = load_config(FinetuneConfig, args.config, overrides)
    finetune(cfg, dataset)
    return finetune_row(key, dataset, run_dir / key / "results.json")


def finetune_row(key: str, dataset, path: Path) -> dict:
    """A fine-tuning run's results.json as a table row (also for runs started by ``jepa4rec.finetune``)."""
    res = json.loads(path.read_text())
    pretrain_s = None
    if res.get("init_from"):
        card = Path(res["init_from"]) / "training_card.json"
        pretrain_s = json.loads(card.read_text()).get("train_seconds") if card.exists() else None
    return _row(dataset, key, res["test"], train_seconds=res["train_seconds"], pretrain_seconds=pretrain_s,
                seed=res["seed"], threads=res.get("threads"), best_epoch=res["best_epoch"],
                epochs_run=len(res["history"]) - 1, checkpoint=res.get("init_from"), config=res["config"])


def record_path(run_dir: Path, key: str) -> Path:
    return run_dir / f"{key}.json"


def write_tables(runs_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Merge the records under ``runs_dir`` into the tables already in ``out_dir`` (a record replaces only
    the row of its own dataset and model, so a fresh clone's run never drops committed rows) and write
    the CSV / JSON / markdown outputs atomically; returns the wide table."""
    fresh = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/*.json")) if p.stem in MODELS]
    if not fresh:
        raise UserError(f"no model records under {runs_dir}", hint="run without --table-only first")
    existing = out_dir / "results_table.json"
    kept = json.loads(existing.read_text())["records"] if existing.exists() else []
    merged = {(r["dataset"], r["model_key"]): r for r in kept + fresh}  # fresh records last: they win
    order = {k: i for i, k in enumerate(MODELS)}
    records = sorted(merged.values(), key=lambda r: (r["dataset"], order.get(r["model_key"], len(order))))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "results_table.json", json.dumps(
        {"protocol": "leave-one-out; all items ranked; ties count against the target; history items not excluded",
         "records": records}, indent=2, default=str))
    long = pd.DataFrame([{"dataset": r["dataset"], "model": r["model"], "metric": m, "value": r[m]}
                         for r in records for m in ("NDCG@10", "Recall@10", "MRR")])
    write_atomic(out_dir / "results_table.csv", long.to_csv(index=False))
    wide = pd.DataFrame(records)
    lines = ["| dataset | model | NDCG@10 | Recall@10 | MRR | fine-tune min | pre-train min | test users/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        pre, speed = r.get("pretrain_seconds"), r.get("users_per_s")
        pre = "" if pre is None else f"{pre / 60:.0f}"
        speed = "" if speed is None else f"{speed:,.0f}"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['NDCG@10']:.4f} | {r['Recall@10']:.4f} | {r['MRR']:.4f} | "
                     f"{r['train_seconds'] / 60:.1f} | {pre} | {speed} |")
    write_atomic(out_dir / "results_table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return wide


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
            finetuned = run_dir / key / "results.json"
            if rec_path.exists() and not args.force:
                print(f"{key}: reusing {rec_path}")
                continue
            if MODELS[key][1] == "finetune" and finetuned.exists() and args.force:
                # The directory may hold a run made by another command (a MiniLM run linked in):
                # training over it with this command's defaults would destroy that model.
                raise UserError(f"{finetuned.parent} holds a finished fine-tuning run; --force would train over it "
                                f"with this command's options",
                                hint=f"delete {finetuned.parent} to re-train, or delete {rec_path} (without --force) "
                                     "to re-import it")
            if MODELS[key][1] == "finetune" and finetuned.exists():
                row = finetune_row(key, dataset, finetuned)  # a run finished outside this script
            else:
                print(f"{key}: running on {dataset.name}")
                row = run_model(key, dataset, args, run_dir)
            row.update(torch=torch.__version__, python=platform.python_version())
            rec_path.write_text(json.dumps(row, indent=2, default=str))
            print(f"{key}: {format_metrics(row)}  [{row['train_seconds']:.0f} s training]")
    write_tables(runs_dir, Path(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
