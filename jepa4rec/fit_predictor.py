"""``python -m jepa4rec.fit_predictor``: fit a fine-tuned model's next-item predictor (FFN2) to its item space.

Fine-tuning packs the catalogue into a narrow cone and masks the target differently from the app, so the
predictor a model brings from pre-training no longer finds the target even with every word shown (the
app's "next-item predictor" scoring). This command trains FFN2 alone, the encoder fixed, on the dataset's
training pairs with the app's masking (whole value words hidden, a uniform share, random order), keeps the
epoch with the best validation MRR over the reveal shares, and writes the model with the new predictor.
The encoder and the score priors are copied unchanged, so every history-only ranking stays as it was. The
library behind it is :mod:`jepa4rec.predictor_fitting`; the test split is never read.

Examples:
  python -m jepa4rec.fit_predictor --checkpoint checkpoints/jepa4rec-minilm-ml100k --dataset ml-100k \\
      --output runs/ml100k_predictor_fit
  python -m jepa4rec.fit_predictor --checkpoint runs/finetune_minilm/best --dataset Scientific_UniSRec \\
      --output runs/finetune_minilm/best_predictor --objective mse --threads 2
"""
from __future__ import annotations

import argparse
import logging
import sys

from .checkpoint import fine_tuned_model_dir
from .cli import ArgumentParser, command
from .data import load_dataset
from .predictor_fitting import OBJECTIVES, PredictorFitConfig, fit_predictor_dir

DEFAULTS = PredictorFitConfig()


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.fit_predictor", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a model directory with a predictor (a JEPA4Rec "
                        "fine-tuned from a pre-trained one, or any model directory the app serves)")
    parser.add_argument("--dataset", required=True, help="the dataset whose catalogue it ranks: its training pairs "
                        "train the predictor, its validation users choose the epoch")
    parser.add_argument("--output", required=True, help="where the model directory with the fitted predictor goes")
    parser.add_argument("--objective", choices=OBJECTIVES, default=DEFAULTS.objective,
                        help="softmax: cross-entropy of cos(prediction, item) / tau over every item (ranking); "
                             f"mse: the paper's mapping loss on unit vectors (default: {DEFAULTS.objective})")
    parser.add_argument("--cuts-per-user", type=int, default=DEFAULTS.cuts_per_user,
                        help=f"training pairs drawn from each user's training sequence (default: {DEFAULTS.cuts_per_user})")
    parser.add_argument("--masks-per-pair", type=int, default=DEFAULTS.masks_per_pair,
                        help=f"masked copies of each pair's target, each at its own share (default: {DEFAULTS.masks_per_pair})")
    parser.add_argument("--max-pairs", type=int, default=DEFAULTS.max_pairs, help="cap on the training pairs, whose "
                        f"histories are encoded once (the slow part; default: {DEFAULTS.max_pairs})")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help=f"most epochs (default: {DEFAULTS.epochs})")
    parser.add_argument("--patience", type=int, default=DEFAULTS.patience,
                        help=f"epochs without a better validation MRR before stopping (default: {DEFAULTS.patience})")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"AdamW learning rate (default: {DEFAULTS.lr})")
    parser.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                        help=f"tau of the softmax objective (default: {DEFAULTS.temperature})")
    parser.add_argument("--valid-users", type=int, default=DEFAULTS.valid_users,
                        help=f"the first N validation users choose the epoch (default: {DEFAULTS.valid_users}; 0: all)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"seed of the pairs and masks (default: {DEFAULTS.seed})")
    parser.add_argument("--batch-size", type=int, default=128, help="histories (and items) per encoder pass")
    parser.add_data_root_argument()
    parser.add_device_argument()
    parser.add_threads_argument()
    args = parser.parse_args(argv)
    cfg = PredictorFitConfig(objective=args.objective, cuts_per_user=args.cuts_per_user, masks_per_pair=args.masks_per_pair,
                             max_pairs=args.max_pairs or None, epochs=args.epochs, patience=args.patience, lr=args.lr,
                             temperature=args.temperature, valid_users=args.valid_users or None, seed=args.seed)
    checkpoint = fine_tuned_model_dir(args.checkpoint)
    logging.basicConfig(level=logging.WARNING)
    dataset = load_dataset(args.dataset, root=args.data_root)
    fit, _ = fit_predictor_dir(checkpoint, dataset, args.output, cfg, device=args.device, batch_size=args.batch_size)
    shares = list(fit["valid_mrr_after"])
    print(f"{dataset.name} valid, {fit['valid_users']:,} users, {fit['pairs']:,} pairs x {cfg.masks_per_pair} masks, "
          f"best epoch {fit['best_epoch']} of {len(fit['epochs'])}, {fit['seconds']:.0f} s")
    print(f"  predictor MRR at {' / '.join(f'{float(s):.0%}' for s in shares)} revealed: "
          + " / ".join(f"{fit['valid_mrr_before'][s]:.4f}" for s in shares) + " -> "
          + " / ".join(f"{fit['valid_mrr_after'][s]:.4f}" for s in shares)
          + f"; history alone {fit['history_only_mrr']:.4f}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
