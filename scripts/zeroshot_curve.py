#!/usr/bin/env python
"""Zero-shot against pre-training steps: the twins (JEPA4Rec and its λ2 = 0 RecFormer-style twin) on unseen
datasets at every step a pre-training run exported, with a paired test between the twins at each step.

Each twin is given as ``LABEL=PATH``. PATH is a pre-training run folder (``python -m jepa4rec.pretrain``'s
output_dir: every ``step-<n>/`` it exported through ``export_steps`` and its ``final/``) or one model directory
(a shipped checkpoint: one point, at the step its training card records). Step 0 is the language model both
twins start from (their config's ``init_from``), untrained and pooled as they pool: one point shared by both.

Every point is ranked on the test split of each ``--datasets`` dataset, every user, every item, under both
protocols (history kept, history excluded), from one scoring pass, without score priors (zero-shot models
have no validation data of the target to fit them on). At each step both twins reached, the paired test
(first twin / second, NDCG@10, 95% bootstrap interval) is what ``python -m jepa4rec.compare`` prints for
their rank files. Each point's record and ranks are kept under ``--runs-dir`` and reused while the model's
files do not change, so the command is resumable and cheap to rerun as a run exports more steps.

``--split valid`` ranks the validation targets instead (each user's second-last item, the history before
it), for choosing which exported step to ship or fine-tune without looking at the test split: it writes
``zeroshot_curve_valid.{csv,json}`` and names each twin's best step (the highest NDCG@10 averaged over the
datasets and both protocols, each dataset weighing the same).

Writes ``scripts/results/zeroshot_curve.csv`` (long format: model, step, dataset, protocol, metric, value;
the Experiments tab's chart; step 0, measured once, is written under both twins' names, where both lines start) and ``zeroshot_curve.json`` (the rows, the paired tests, where each point came
from, and how far each point's weights moved from the language model: ``encoder_drift``).

    python scripts/zeroshot_curve.py --twins "JEPA4Rec=runs/twins/jepa4rec" "RecFormer-style (λ2 = 0)=runs/twins/recformer"
    python scripts/zeroshot_curve.py --datasets ml-100k    # the shipped pair (365 steps): steps 0 and 365
    python scripts/zeroshot_curve.py --split valid --twins ...   # pick the step on validation targets
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.data import load_dataset
from jepa4rec.errors import UserError
from jepa4rec.evaluation import PROTOCOLS
from jepa4rec.experiments import add_run_args, files_stamp, pretraining_card, write_atomic, write_results

DATASETS = ("Scientific_UniSRec", "Instruments_IISAN", "OnlineRetail", "ml-100k")
METRICS = ("NDCG@10", "Recall@10", "MRR")
STEP0 = "step 0 (untrained start)"
SPLITS = ("test", "valid")
SHIPPED_TWINS = ("JEPA4Rec=checkpoints/jepa4rec-minilm-pretrain", "RecFormer-style (λ2 = 0)=checkpoints/recformer-minilm-pretrain")


class Point(NamedTuple):
    model: str  # the twin's label, or STEP0
    step: int
    checkpoint: str  # a model directory, or the language model (a name or folder) for step 0
    start: dict | None = None  # step 0 only: the twins' model_size, model overrides (pooling included) and text budget


def twin_points(label: str, path: Path, steps: set[int] | None = None) -> list[Point]:
    """Every exported step of one twin, in step order (a model directory: its one step). A run's ``final/``
    short of its ``max_steps`` is a run still going (re-exported at every stop): it is left out, saying so,
    unless ``steps`` names its step."""
    if not path.is_dir():
        raise UserError(f"{path}: no such folder", hint=f"the pre-training run or model directory of {label}")
    if (path / "training_card.json").is_file():
        folders = [path]
    else:
        folders = sorted(p for p in path.iterdir() if p.is_dir() and re.fullmatch(r"step-\d+", p.name))
        if (path / "final").is_dir():
            folders.append(path / "final")
        if not folders:
            raise UserError(f"{path} holds no step-<n>/ or final/ model directory",
                            hint="pre-train with --set export_steps=[365,1000,2000,4000], or give a model directory")
    points = {}
    for folder in folders:
        card = pretraining_card(folder)
        step = card.get("step")
        if not isinstance(step, int):
            raise UserError(f"{folder}/training_card.json records no step", hint="a pre-training run's export has one")
        max_steps = card.get("config", {}).get("max_steps")
        if (folder.name == "final" and folder != path and isinstance(max_steps, int) and step < max_steps
                and not (steps and step in steps)):
            print(f"{folder}: step {step} of {max_steps}, a run still going: left out (--steps {step} ranks it)")
            continue
        points[step] = Point(label, step, str(folder))  # final/ at an exported step: the same weights
    return [points[s] for s in sorted(points)]


def parse_twins(specs: list[str]) -> list[tuple[str, Path]]:
    twins = []
    for spec in specs:
        label, sep, path = spec.rpartition("=")  # a label may hold "=" (λ2 = 0); a path seldom does
        if not sep or not label.strip() or not path.strip():
            raise UserError(f"--twins {spec!r} is not LABEL=PATH", hint='e.g. --twins "JEPA4Rec=runs/twins/jepa4rec"')
        twins.append((label.strip(), Path(path.strip())))
    if len(twins) != 2 or twins[0][0] == twins[1][0]:
        raise UserError(f"--twins takes two differently labelled models, got {len(twins)}",
                        hint='--twins "JEPA4Rec=PATH" "RecFormer-style (λ2 = 0)=PATH"')
    return twins


def start_point(points: list[Point]) -> Point:
    """Step 0: the language model the twins start from, shaped, pooled and given the text budget as they
    were: both must share it."""
    starts = set()
    for point in points:
        config = pretraining_card(point.checkpoint).get("config", {})
        if not config.get("init_from"):
            raise UserError(f"{point.checkpoint} was trained from scratch: there is no language model at step 0",
                            hint="the curve is for twins pre-trained from a language model (init_from)")
        starts.add(json.dumps({"init_from": config["init_from"], "model_size": config.get("model_size"),
                               "model": config.get("model") or {}, "max_items": config.get("max_items"),
                               "max_tokens": config.get("max_tokens")}, sort_keys=True))
    if len(starts) != 1:
        raise UserError(f"the twins do not start alike: {sorted(starts)}",
                        hint="twins share their start (init_from), shape, pooling and text budget")
    start = json.loads(starts.pop())
    return Point(STEP0, 0, start.pop("init_from"), start)


def recommender(point: Point, dataset, batch_size: int):
    from jepa4rec.modeling import JepaConfig
    from jepa4rec.recommender import Recommender

    if point.start is None:
        return Recommender.from_pretrained(point.checkpoint, dataset, batch_size=batch_size)
    model = dict(point.start["model"])
    pooling = model.pop("pooling", JepaConfig().pooling)
    return Recommender.from_language_model(point.checkpoint, dataset, model_size=point.start["model_size"],
                                           max_items=point.start["max_items"], max_tokens=point.start["max_tokens"],
                                           pooling=pooling, model_overrides=model, batch_size=batch_size)


def legacy_slug(point: Point) -> str:
    """How a point's files were named before :func:`point_slug` added the model's path (label and step only)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", point.model).strip("_").lower() + f"_step{point.step}"


def point_slug(point: Point) -> str:
    """The file name of a point's record and ranks: label, step and a digest of the model's path, so that two
    models with one label at one step (the shipped pair's "RecFormer-style (λ2 = 0)" at 365 and the long run's
    twin) keep a record each instead of overwriting, and re-ranking, each other's."""
    return f"{legacy_slug(point)}_{hashlib.sha256(point.checkpoint.encode()).hexdigest()[:8]}"


def evaluate_point(point: Point, dataset, runs_dir: Path, batch_size: int, split: str = "test") -> dict:
    """The point's record (metrics in every cell), measured once per model files, dataset and split."""
    from jepa4rec.priors import evaluate_on_equal_terms
    from jepa4rec.significance import write_case_ranks

    folder = runs_dir / dataset.name if split == "test" else runs_dir / dataset.name / split
    record_path, ranks_path = folder / f"{point_slug(point)}.json", folder / f"{point_slug(point)}.ranks.csv"
    key = {"checkpoint": point.checkpoint, "files": files_stamp(point.checkpoint), "start": point.start,
           "size": [dataset.n_users, dataset.n_items, dataset.n_interactions]}
    if split != "test":  # test records keep the key they were written with
        key["split"] = split
    legacy = folder / f"{legacy_slug(point)}.json", folder / f"{legacy_slug(point)}.ranks.csv"
    for stored_record, stored_ranks in ((record_path, ranks_path), legacy):
        if not (stored_record.is_file() and stored_ranks.is_file()):
            continue
        stored = json.loads(stored_record.read_text())
        if stored.get("key") != key:
            continue
        if stored_record != record_path:  # this model's record under the name before the digest: renamed
            os.replace(stored_ranks, ranks_path)
            stored["ranks"] = str(ranks_path)
            write_atomic(record_path, json.dumps(stored, indent=2))
            stored_record.unlink()
        print(f"reusing {record_path}")
        return stored
    folder.mkdir(parents=True, exist_ok=True)
    rec = recommender(point, dataset, batch_size)
    cases = dataset.test_cases() if split == "test" else dataset.valid_cases()
    t0 = time.time()
    result = evaluate_on_equal_terms(rec, cases, batch_size=batch_size, desc=f"{dataset.name} {split} step {point.step}")
    write_case_ranks(ranks_path, dataset, cases, result["ranks"])
    record = {"key": key, "model": point.model, "step": point.step, "dataset": dataset.name, "split": split,
              "cells": {p: {m: result["cells"][p][m] for m in METRICS} for p in PROTOCOLS},
              "users": len(cases), "precision": rec.precision, "seconds": round(time.time() - t0, 1),
              "ranks": str(ranks_path)}
    write_atomic(record_path, json.dumps(record, indent=2))
    return record


def encoder_drift(point: Point) -> dict:
    """How far the twin's weights at this point moved from the language model it started from (every converted
    tensor but the frozen word embeddings; :func:`jepa4rec.language_models.drift_from_language_model`), and the
    digest of its weights (a run trained again with the same recipe, seed and data order reproduces it)."""
    from jepa4rec.checkpoint import load_model_dir, weights_digest
    from jepa4rec.language_models import drift_from_language_model

    model, _, _ = load_model_dir(point.checkpoint)
    source = pretraining_card(point.checkpoint)["config"]["init_from"]
    return {"model": point.model, "step": point.step, **drift_from_language_model(model, source),
            "weights_sha256": weights_digest(point.checkpoint)}


def best_steps(records: list[dict], twins: list[str]) -> dict[str, dict]:
    """Each twin's step with the highest NDCG@10 averaged over the datasets and both protocols (step 0, the
    shared start, competes for both), with every step's average; only steps ranked on every dataset count."""
    datasets = {r["dataset"] for r in records}
    out = {}
    for twin in twins:
        by_step: dict[int, list[float]] = {}
        for r in records:
            if r["model"] in (twin, STEP0):
                by_step.setdefault(r["step"], []).extend(r["cells"][p]["NDCG@10"] for p in PROTOCOLS)
        means = {step: sum(v) / len(v) for step, v in by_step.items() if len(v) == 2 * len(datasets)}
        if means:
            out[twin] = {"step": max(means, key=lambda s: (means[s], -s)), "mean_ndcg10": means}
    return out


def paired(records: list[dict], twins: list[str], resamples: int) -> list[dict]:
    """First twin / second at every (dataset, step) both reached, per protocol."""
    from jepa4rec.significance import compare, paired_ranks, read_ranks

    by = {(r["dataset"], r["step"], r["model"]): r for r in records}
    out = []
    for (ds, step, model), b in sorted(by.items()):
        a = by.get((ds, step, twins[1]))  # compare() gives b / a: the first twin over the second
        if model != twins[0] or a is None:
            continue
        for protocol in PROTOCOLS:
            c = compare(*paired_ranks(read_ranks(a["ranks"], protocol), read_ranks(b["ranks"], protocol)),
                        "NDCG@10", resamples=resamples)
            out.append({"dataset": ds, "step": step, "protocol": protocol, "a": twins[1], "b": twins[0],
                        "users": c.users, "a_value": c.a, "b_value": c.b, "ratio": c.ratio, "ratio_low": c.ratio_low,
                        "ratio_high": c.ratio_high, "p_value": c.p_value,
                        "command": f"python -m jepa4rec.compare {a['ranks']} {b['ranks']} --cell {protocol} "
                                   f"--metrics NDCG@10 --resamples {resamples}"})
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--twins", nargs=2, default=list(SHIPPED_TWINS), metavar="LABEL=PATH",
                   help="the two twins, each a label and a pre-training run folder or model directory; the paired "
                        "ratio is the first / the second (JEPA4Rec first: JEPA4Rec / RecFormer-style). Default: "
                        "the shipped pair, " + " ".join(f'"{t}"' for t in SHIPPED_TWINS))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), help=f"unseen datasets (default {' '.join(DATASETS)})")
    p.add_argument("--steps", nargs="*", type=int, default=None,
                   help="only these steps (default: every exported step, the end and step 0; a run's final/ counts "
                        "as its end once it reached max_steps, and is ranked before that only when named here)")
    p.add_argument("--batch-size", type=int, default=128, help="users per scoring pass (default 128)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of each paired test (default 10000)")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="test (default; the curve) or valid: the validation targets, to choose a step without the "
                        "test split (writes zeroshot_curve_valid.csv/.json)")
    add_run_args(p, "runs/zeroshot_curve", "zeroshot_curve")
    return p.parse_args(argv)


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    twins = parse_twins(args.twins)
    wanted = set(args.steps) if args.steps is not None else None
    points = [pt for label, path in twins for pt in twin_points(label, path, wanted)]
    points = [start_point(points), *points]
    if args.steps is not None:
        points = [pt for pt in points if pt.step in set(args.steps)]
        if not points:
            raise UserError(f"no exported step among --steps {args.steps}", hint="leave --steps out to take them all")
    runs_dir = Path(args.runs_dir)
    records = []
    for name in args.datasets:
        dataset = load_dataset(name, root=args.data_root)
        for point in points:
            print(f"== {name}: {point.model}, step {point.step}")
            records.append(evaluate_point(point, dataset, runs_dir, args.batch_size, args.split))
    labels = [label for label, _ in twins]
    # Step 0, measured once, starts both twins' lines: it is written under each twin's name.
    rows = [{"model": model, "step": r["step"], "dataset": r["dataset"], "protocol": PROTOCOLS[protocol], "metric": m,
             "value": r["cells"][protocol][m]}
            for r in records for model in (labels if r["model"] == STEP0 else [r["model"]])
            for protocol in PROTOCOLS for m in METRICS]
    tests = paired(records, labels, args.resamples)
    drift = [encoder_drift(pt) for pt in points if pt.model != STEP0]
    best = best_steps(records, labels)
    stem = "zeroshot_curve" if args.split == "test" else f"zeroshot_curve_{args.split}"
    write_results(stem, rows, {"split": args.split, "twins": {label: str(path) for label, path in twins},
                               "points": [pt._asdict() for pt in points], "paired": tests, "encoder_drift": drift,
                               "best_step": best}, args.out_dir)
    print(f"\nNDCG@10 on the {args.split} split, history kept / excluded:")
    for r in records:
        print(f"  {r['dataset']:<20} {r['model']:<28} step {r['step']:>6}: "
              f"{r['cells']['kept']['NDCG@10']:.4f} / {r['cells']['excluded']['NDCG@10']:.4f}")
    print("\nWeights moved from the language model, ||W - W0|| / ||W0|| (all converted tensors but the word embeddings;"
          " the median tensor; the largest):")
    for d in drift:
        print(f"  {d['model']:<28} step {d['step']:>6}: {d['relative_l2']:.4f}; {d['median_tensor']:.4f}; "
              f"{d['max_tensor']:.4f} ({d['max_tensor_name']})")
    print(f"\n{twins[0][0]} / {twins[1][0]}, paired NDCG@10:")
    for t in tests:
        print(f"  {t['dataset']:<20} step {t['step']:>6} {t['protocol']:<9} {t['ratio']:.3f}× "
              f"[{t['ratio_low']:.3f}, {t['ratio_high']:.3f}], p {t['p_value']:.3g}")
    print(f"\nBest step on the {args.split} split (NDCG@10 averaged over the datasets and both protocols):")
    for twin, b in best.items():
        curve = ", ".join(f"{s}: {m:.4f}" for s, m in sorted(b["mean_ndcg10"].items()))
        print(f"  {twin:<28} step {b['step']} ({curve})")
    if args.split == "test" and best:
        print("  (chosen on the test split: a description, not a selection; choose with --split valid)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
