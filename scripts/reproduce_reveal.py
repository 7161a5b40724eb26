"""Reveal case study (paper Fig. 7, Appendix D): zero-shot Recall@10 / NDCG@10 as a share of the
target item's words is revealed, JEPA4Rec against the RecFormer-style model (λ2 = 0, same data,
budget and tokenizer), plus a per-user case list (the target's rank before and after revealing two words).

Each model is scored through ``Recommender.reveal_scores``; a mode is how the partly revealed target
meets the history (see jepa4rec/recommender.py): ``evidence`` ranks by cos(h_CLS, h_i) + s · cos(h_{n+1,M}, h_i),
s the share of words revealed, so 0% is the history-only ranking; it is what the app's slider drives and
runs for both models. ``predictor`` is the paper's FFN2(h_CLS ⊕ h_{n+1,M}) (untrained in a λ2 = 0
model, so it is run for JEPA4Rec only). Reduced scale: the first ``--users`` test users of each
dataset; ``--full``: all of them.

  python scripts/reproduce_reveal.py                    # reduced: the shipped MiniLM pair, 500 users per dataset, ~18 min on one core
  python scripts/reproduce_reveal.py --jepa checkpoints/jepa4rec-tiny-pretrain --recformer checkpoints/recformer-tiny-pretrain
  python scripts/reproduce_reveal.py --full --device cuda

Writes scripts/results/reveal_curve.csv (model, dataset, metric, reveal, value), reveal_cases.csv and
reveal_curve.json (config, seeds, timing).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.checkpoint import compare_index, default_checkpoint
from jepa4rec.paths import CHECKPOINTS_DIR, RESULTS_DIR

MODE_LABELS = {"evidence": "history + revealed words", "predictor": "next-item predictor"}  # as the app names them


def run(args) -> dict:
    import pandas as pd
    import torch

    from jepa4rec.data import load_dataset
    from jepa4rec.evaluation import metrics_from_ranks, rank_of_targets
    from jepa4rec.recommender import Recommender

    torch.manual_seed(args.seed)
    reveals = [round(i / 10, 1) for i in range(11)]
    models = [("JEPA4Rec", args.jepa, ["evidence", "predictor"]), ("RecFormer-style", args.recformer, ["evidence"])]
    rows, cases, started = [], [], time.time()
    for ds_name in args.datasets:
        ds = load_dataset(ds_name, root=args.data_root)
        test = ds.test_cases() if args.full else ds.test_cases()[: args.users]
        hist, tgt = [c.history for c in test], [c.target for c in test]
        for model_name, ckpt, modes in models:
            if not Path(ckpt).exists():
                print(f"skip {model_name}: {ckpt} not found", file=sys.stderr)
                continue
            rec = Recommender.from_pretrained(ckpt, ds, device=args.device, batch_size=args.batch_size)

            h_all = rec.embed_history(hist)  # encoded once, reused for every reveal fraction
            bs = args.batch_size

            def ranks_for(reveal, mode, n_words=None):
                out = []
                for s in range(0, len(hist), bs):
                    scores = rec.reveal_scores(hist[s:s + bs], tgt[s:s + bs], reveal, order=args.order, seed=args.seed + s,
                                               mode=mode, n_words=n_words, h_cls=h_all[s:s + bs])
                    out.append(rank_of_targets(scores, tgt[s:s + bs]).cpu())
                return torch.cat(out)

            unit = torch.nn.functional.normalize(h_all, dim=-1)
            plain = torch.cat([rank_of_targets(unit[s:s + bs] @ rec.unit_item_vectors.T, tgt[s:s + bs]).cpu()
                               for s in range(0, len(hist), bs)])
            m = metrics_from_ranks(plain)
            for metric in ("Recall@10", "NDCG@10"):
                rows.append({"model": f"{model_name} (history only)", "dataset": ds_name, "metric": metric,
                             "reveal": 0.0, "value": m[metric]})
            for mode in modes:
                label = f"{model_name} ({MODE_LABELS[mode]})"
                for r in reveals:
                    m = metrics_from_ranks(ranks_for(r, mode))
                    for metric in ("Recall@10", "NDCG@10"):
                        rows.append({"model": label, "dataset": ds_name, "metric": metric, "reveal": r, "value": m[metric]})
                    print(f"{ds_name} {label} reveal {r:.1f}: Recall@10 {m['Recall@10']:.4f} NDCG@10 {m['NDCG@10']:.4f}")
                before, after = ranks_for(0.0, mode), ranks_for(0.0, mode, n_words=2)
                for i in torch.argsort(before - after, descending=True)[: args.cases].tolist():
                    _, words = rec.masked_item(tgt[i], 0.0, args.order, args.seed, n_words=2)
                    cases.append({"dataset": ds_name, "model": label, "user": ds.user_keys[test[i].user],
                                  "target": rec.titles[tgt[i]], "revealed": " ".join(words),
                                  "rank_before": int(before[i]), "rank_after_two_words": int(after[i]),
                                  "history_tail": " | ".join(rec.titles[j] for j in hist[i][-3:])})
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(RESULTS_DIR / "reveal_curve.csv", index=False)
    pd.DataFrame(cases).to_csv(RESULTS_DIR / "reveal_cases.csv", index=False)
    meta = {"config": vars(args), "seconds": round(time.time() - started, 1), "rows": len(rows)}
    (RESULTS_DIR / "reveal_curve.json").write_text(json.dumps(meta, indent=2))
    return meta


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The app's default model and the RecFormer-style twin it is compared with (checkpoints/index.json, compare.json).
    p.add_argument("--jepa", default=str(default_checkpoint()), help="JEPA4Rec model directory (default: the app's default)")
    p.add_argument("--recformer", default=str(CHECKPOINTS_DIR / compare_index()["RecFormer-style"]["default"]),
                   help="RecFormer-style (λ2 = 0) model directory with the same pre-training data and budget "
                        "(default: the one the app compares with)")
    p.add_argument("--datasets", nargs="+", default=["Instruments_IISAN", "Scientific_UniSRec"],
                   help="named datasets or dataset folders (the paper's reveal study: Instruments and Scientific)")
    p.add_argument("--users", type=int, default=500, help="test users per dataset at the reduced scale")
    p.add_argument("--full", action="store_true", help="every test user")
    p.add_argument("--order", choices=["sequential", "random"], default="sequential", help="which words are revealed first")
    p.add_argument("--cases", type=int, default=10, help="users listed per model and dataset in reveal_cases.csv")
    p.add_argument("--batch-size", type=int, default=128, help="users (and items) encoded per batch")
    p.add_device_argument()
    p.add_data_root_argument()
    p.add_argument("--seed", type=int, default=0, help="seed of the random reveal order (--order random)")
    args = p.parse_args(argv)
    meta = run(args)
    print(f"wrote {RESULTS_DIR / 'reveal_curve.csv'} ({meta['rows']} rows) in {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
