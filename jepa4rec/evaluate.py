"""``python -m jepa4rec.evaluate``: full-ranking evaluation of a JEPA4Rec model directory on a dataset.

Zero-shot transfer is simply this command on a domain the model never saw: items are text, so a new
catalogue needs no ID table. ``--random-init`` evaluates an untrained model with the same config and
tokenizer (the floor a pre-training run must beat).

Examples:
  python -m jepa4rec.evaluate --checkpoint runs/pretrain_tiny/final --dataset Scientific_UniSRec
  python -m jepa4rec.evaluate --checkpoint runs/pretrain_tiny/final --dataset Scientific_UniSRec --random-init
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
import transformers

from .checkpoint import CheckpointError, is_model_dir
from .cli import ArgumentParser, command
from .data import load_dataset
from .errors import ConfigError
from .evaluation import evaluate, format_metrics
from .language_models import is_language_model
from .recommend import Recommender


def evaluate_checkpoint(checkpoint: str | Path, dataset, split: str = "test", *, random_init: bool = False,
                        exclude_history: bool = False, batch_size: int = 128, device: str | None = None,
                        max_users: int | None = None, seed: int = 0, pooling: str | None = None,
                        precision: str = "auto", progress: bool = True) -> dict:
    """Metrics (and timing) of one model directory on one dataset's leave-one-out split; ``checkpoint``
    may also name a language model (``minilm``): its converted encoder with no training at all, pooled by
    ``pooling`` (default cls); a model directory pools as it was trained."""
    dataset.require_text()  # before a model is loaded: a text model cannot rank items without text
    if is_language_model(checkpoint):
        rec = Recommender.from_language_model(str(checkpoint), dataset, device=device, batch_size=batch_size,
                                              pooling=pooling or "cls", precision=precision)
    elif pooling is not None:
        raise ConfigError(f"--pooling applies to a language model only; {checkpoint} pools as it was trained",
                          hint="leave --pooling out")
    else:
        rec = Recommender.from_pretrained(checkpoint, dataset, device=device, batch_size=batch_size, precision=precision)
    if random_init:
        torch.manual_seed(seed)
        fresh = type(rec.model)(rec.model.config)
        rec.model = fresh.to(rec.device).eval()
        rec.use_cache = False
    cases = dataset.test_cases() if split == "test" else dataset.valid_cases()
    if max_users:
        cases = cases[:max_users]
    t0 = time.time()
    _ = rec.item_vectors
    encode_s = time.time() - t0
    metrics = evaluate(rec, cases, batch_size=batch_size, exclude_history=exclude_history, progress=progress,
                       desc=f"{dataset.name} {split}")
    # Every option that can change a number goes into the record.
    return {"dataset": dataset.name, "checkpoint": str(checkpoint), "split": split, "random_init": random_init,
            "exclude_history": exclude_history, "seed": seed, "pooling": rec.model.config.pooling,
            "precision": rec.precision, "device": str(rec.device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "users": len(cases), "items": dataset.n_items, "item_encoding_s": round(encode_s, 2), **metrics}


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model directory (config.json + model.safetensors + tokenizer), or a language model "
                        "(minilm: its converted encoder untrained, histories of 20 items / 128 tokens)")
    parser.add_argument("--dataset", required=True, help="dataset name (see `python -m jepa4rec.data stats --help`) or folder")
    parser.add_argument("--data-root", default=None, help="folder holding the datasets (default: $JEPA4REC_DATA_ROOT or ../shared/data)")
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="leave-one-out split to rank (default: test)")
    parser.add_argument("--random-init", action="store_true", help="evaluate an untrained model with the same config and tokenizer")
    parser.add_argument("--exclude-history", action="store_true", help="do not let history items compete (default: they do, as in the paper)")
    parser.add_argument("--batch-size", type=int, default=128, help="users (and items) per forward pass")
    parser.add_argument("--max-users", type=int, default=None, help="evaluate only the first N users")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="encoding precision (auto: bf16 where the hardware computes it natively, else fp32)")
    parser.add_argument("--pooling", choices=["cls", "mean"], default=None,
                        help="language model only: pool token states by [CLS] (default) or their mean")
    parser.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    args = parser.parse_args(argv)
    if not (is_language_model(args.checkpoint) or is_model_dir(args.checkpoint)):
        raise CheckpointError(f"--checkpoint {args.checkpoint!r} is neither a JEPA4Rec model directory (config.json + "
                              "safetensors weights) nor a language model (minilm, or a BERT/RoBERTa folder)",
                              hint="check the path (pretrain and finetune write final/ and best/)")
    logging.basicConfig(level=logging.WARNING)
    dataset = load_dataset(args.dataset, root=args.data_root)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_checkpoint(args.checkpoint, dataset, args.split, random_init=args.random_init,
                                 exclude_history=args.exclude_history, batch_size=args.batch_size,
                                 device=args.device, max_users=args.max_users, seed=args.seed,
                                 pooling=args.pooling, precision=args.precision)
    print(f"{dataset.name} {args.split} ({'random init' if args.random_init else args.checkpoint}): "
          f"{format_metrics(result)}  [{result.get('users_per_s', 0):.1f} users/s]")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
