"""``python -m jepa4rec.evaluate``: full-ranking evaluation of a JEPA4Rec model directory on a dataset.

Every result is given under both protocols, ranked from one scoring pass: *history kept* (every item
competes, as in the paper's code) and *history excluded* (the user's history items do not compete, as in
RecBole, where the paper's baselines come from). ``--priors fit`` adds the score priors fitted on the
validation split (a repeat bias and a popularity bias; only the popularity bias under exclusion), the same
fit every model of a comparison gets (``scripts/results_table.py`` does this for every row).

Zero-shot transfer is simply this command on a domain the model never saw: items are text, so a new
catalogue needs no ID table. ``--random-init`` evaluates an untrained model with the same config and
tokenizer (the floor a pre-training run must beat).

Examples:
  python -m jepa4rec.evaluate --checkpoint runs/pretrain_tiny/final --dataset Scientific_UniSRec
  python -m jepa4rec.evaluate --checkpoint runs/pretrain_tiny/final --dataset Scientific_UniSRec --random-init
  python -m jepa4rec.evaluate --checkpoint minilm --pooling mean --dataset Scientific_UniSRec --save-ranks step0.csv
  python -m jepa4rec.evaluate --checkpoint checkpoints/jepa4rec-minilm-ml100k --dataset ml-100k --priors fit
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .checkpoint import CheckpointError, is_model_dir
from .cli import ArgumentParser, command
from .data import load_dataset
from .evaluation import format_cells
from .language_models import is_language_model
from .recommender import PRIOR_CHOICES, evaluate_checkpoint


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model directory (config.json + model.safetensors + tokenizer), or a language model "
                        "(minilm, or a BERT folder of a named size: its converted encoder untrained, histories of 20 "
                        "items / 128 tokens)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dataset", help="dataset name (see `python -m jepa4rec.data stats --help`) or folder")
    where.add_argument("--items", metavar="FILE", help="a catalogue of your own (CSV or JSON lines: an id column and "
                       "text columns), read as the app's 'Your catalogue' tab reads it; needs --interactions")
    parser.add_argument("--interactions", metavar="FILE", help="with --items: the purchases (user, item, optional time) "
                        "whose leave-one-out split is ranked")
    parser.add_data_root_argument()
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="leave-one-out split to rank (default: test)")
    parser.add_argument("--random-init", action="store_true", help="evaluate an untrained model with the same config and tokenizer")
    parser.add_argument("--priors", choices=PRIOR_CHOICES, default="own",
                        help="score priors: own (default: as the model directory's config says; 0 for the paper's "
                             "model), none (scored raw), or fit (raw, and with the priors fitted on the validation "
                             "split under each protocol: four cells)")
    parser.add_argument("--batch-size", type=int, default=128, help="users (and items) per forward pass")
    parser.add_argument("--max-users", type=int, default=None, help="evaluate only the first N users (with --priors fit, the "
                        "priors are fitted on the same users' validation cases: the app's scoreboard sample)")
    parser.add_device_argument()
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    parser.add_threads_argument()
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="encoding precision (auto: bf16 where the hardware computes it natively, else fp32)")
    parser.add_argument("--pooling", choices=["cls", "mean"], default=None,
                        help="language model only: pool token states by [CLS] (default) or their mean")
    parser.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    parser.add_argument("--save-ranks", default=None, metavar="FILE",
                        help="also write each user's rank of the target in every cell (CSV user,target,rank_kept,"
                             "rank_excluded[,rank_kept_priors,rank_excluded_priors]), the input of python -m jepa4rec.compare")
    args = parser.parse_args(argv)
    if not (is_language_model(args.checkpoint) or is_model_dir(args.checkpoint)):
        raise CheckpointError(f"--checkpoint {args.checkpoint!r} is neither a JEPA4Rec model directory (config.json + "
                              "safetensors weights) nor a language model (minilm, or a BERT/RoBERTa folder)",
                              hint="check the path (pretrain and finetune write final/ and best/)")
    logging.basicConfig(level=logging.WARNING)
    if args.items and not args.interactions:
        parser.error("--items needs --interactions: a catalogue alone has no held-out purchases to rank")
    dataset = load_dataset(args.dataset, root=args.data_root) if args.dataset else None
    result = evaluate_checkpoint(args.checkpoint, dataset, args.split, random_init=args.random_init,
                                 catalogue=(args.items, args.interactions) if args.items else None,
                                 priors=args.priors, batch_size=args.batch_size,
                                 device=args.device, max_users=args.max_users, seed=args.seed,
                                 pooling=args.pooling, precision=args.precision,
                                 ranks_path=args.save_ranks)
    print(f"{result['dataset']} {args.split}, {result['users']:,} users, all {result['items']:,} items ranked "
          f"({'random init' if args.random_init else args.checkpoint}, priors: {args.priors}) "
          f"[{result['users_per_s']:.1f} users/s]:\n{format_cells(result['cells'])}")
    for protocol, fit in result["fits"].items():
        print(f"  priors fitted on {fit['users']:,} validation users, {protocol}: repeat bias {fit['repeat_bias']:+.4f}, "
              f"popularity bias {fit['popularity_bias']:+.4f} (score units)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
