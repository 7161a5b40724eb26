"""``python -m jepa4rec.calibrate``: fit a model's score priors on the validation split.

A text model's history vector is built from the history's own words, so the items a user already bought
are the ones most like it; and text says nothing of how often an item sells. The repeat bias is one
number added to the score of every item already in the history; the popularity bias (--popularity) is
one weight on each item's log(1 + training-split count). Both are 0 in the paper's model; they are
fitted by minimising the full-softmax cross-entropy on the validation split (never the test), the scores'
scale fitted with them, and stored in the model's weights (its ``score_priors``). This is the "history kept" protocol's
fit (history items still compete, every item is ranked); ``python -m jepa4rec.evaluate --priors fit``
fits and reports both protocols for any model without writing anything. The library behind this command
is :mod:`jepa4rec.calibration` (the fit itself: :mod:`jepa4rec.priors`).

Examples:
  python -m jepa4rec.calibrate --checkpoint runs/finetune_minilm/best --dataset Scientific_UniSRec \\
      --output runs/finetune_minilm/best_calibrated
  python -m jepa4rec.calibrate --checkpoint runs/finetune_minilm/best --dataset Scientific_UniSRec \\
      --output runs/finetune_minilm/best_priors --popularity
"""
from __future__ import annotations

import argparse
import logging
import sys

from .calibration import calibrate
from .checkpoint import fine_tuned_model_dir
from .cli import ArgumentParser, command
from .data import load_dataset
from .evaluation import format_metrics


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.calibrate", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a fine-tuned model directory (e.g. runs/finetune_minilm/best)")
    parser.add_argument("--dataset", required=True, help="the dataset it was fine-tuned on: its validation split is used")
    parser.add_argument("--output", required=True, help="where the calibrated model directory goes (the checkpoint "
                        "itself to update it in place; the weights are copied, not changed)")
    parser.add_argument("--popularity", action="store_true", help="also fit the popularity bias (a weight on each "
                        "item's log(1 + count) in the training split); default: the repeat bias only")
    parser.add_argument("--keep-repeat-bias", action="store_true", help="keep the repeat bias the model has (e.g. "
                        "learned with the loss) instead of fitting it")
    parser.add_data_root_argument()
    parser.add_argument("--max-users", type=int, default=None, help="fit on a random sample of this many validation users (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-users sample")
    parser.add_argument("--batch-size", type=int, default=128, help="users (and items) per forward pass")
    parser.add_device_argument()
    parser.add_threads_argument()
    args = parser.parse_args(argv)
    checkpoint = fine_tuned_model_dir(args.checkpoint)
    logging.basicConfig(level=logging.WARNING)
    dataset = load_dataset(args.dataset, root=args.data_root)
    fit, _ = calibrate(checkpoint, dataset, args.output, popularity=args.popularity,
                       keep_repeat_bias=args.keep_repeat_bias, max_users=args.max_users,
                       seed=args.seed, device=args.device, batch_size=args.batch_size)
    print(f"{dataset.name} valid, {fit['users']:,} users ({fit['repeat_share']:.1%} of next purchases repeat one): "
          f"repeat bias {fit['repeat_bias']:+.4f}"
          f"{'' if 'repeat_bias' in fit['fitted'] else ' (kept)'}, popularity bias {fit['popularity_bias']:+.4f}, loss {fit['loss_before']:.4f} -> {fit['loss_after']:.4f}")
    print(f"  before: {format_metrics(fit['before'])}")
    print(f"  after:  {format_metrics(fit['after'])}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
