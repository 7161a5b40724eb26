"""Fine-tuning throughput: training pairs per second of the real fine-tuning step, in each precision.

Times ``--steps`` steps of :func:`jepa4rec.finetuning.batch_loss` + backward + clip + AdamW (what an epoch
repeats) on the real target dataset, from a model directory, after ``--warmup`` untimed steps, once per
``--precision`` (each in its own subprocess, so peak memory is its own). The step's options come from a
fine-tuning recipe (``--config``, ``--set``), so the figure is the shipped recipe's.

  python scripts/benchmark_finetune.py --init-from checkpoints/jepa4rec-minilm-pretrain --threads 2
  python scripts/benchmark_finetune.py --init-from checkpoints/jepa4rec-minilm-pretrain --precision no bf16 \\
      --set loss.lambda_map=0.1 --dataset ml-100k
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from jepa4rec.cli import ArgumentParser, command


def run_one(args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from jepa4rec.batches import finetuning_pairs, group_by_length
    from jepa4rec.config import FinetuneConfig, load_config
    from jepa4rec.data import load_dataset
    from jepa4rec.finetuning import batch_loss, build_model
    from jepa4rec.optim import build_optimizer, resolve_mixed_precision
    from jepa4rec.encoding import CatalogueVectors, ItemEncoder

    cfg = load_config(FinetuneConfig, args.config, [f"init_from={args.init_from}", f"dataset={args.dataset}",
                                                   f"mixed_precision={args.phase}", *args.set])
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.dataset, root=args.data_root)
    model, tok, _ = build_model(cfg, dataset)
    items = CatalogueVectors(ItemEncoder(model, tok, device=args.device, batch_size=cfg.eval_batch_size), dataset.items)
    precision = resolve_mixed_precision(cfg.mixed_precision, items.encoder.device)
    rng = np.random.default_rng(cfg.seed)
    pairs = finetuning_pairs(dataset, cfg.pairs, cfg.max_items, rng)
    if cfg.group_by_length:
        pairs = group_by_length(pairs, [tok.history_length([items.encoded[i] for i in p.history]) for p in pairs],
                                cfg.batch_size, rng)
    t0 = time.perf_counter()
    item_matrix = F.normalize(items.refresh(), dim=-1).detach()
    refresh_s = time.perf_counter() - t0
    optimizer = build_optimizer(model, cfg.optim)
    model.train()
    timed, elapsed = 0, 0.0
    for b in range(args.warmup + args.steps):
        chunk = pairs[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        t0 = time.perf_counter()
        loss = batch_loss(model, tok, items, chunk, item_matrix, cfg, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        if b >= args.warmup:
            elapsed += time.perf_counter() - t0
            timed += len(chunk)
    return {"precision": precision, "asked": args.phase, "dataset": dataset.name, "pairs_per_s": round(timed / elapsed, 2),
            "s_per_step": round(elapsed / args.steps, 3), "batch_size": cfg.batch_size, "steps": args.steps,
            "item_matrix_refresh_s": round(refresh_s, 1), "n_items": dataset.n_items,
            "epoch_pairs": len(pairs), "epoch_minutes": round(len(pairs) / (timed / elapsed) / 60, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "threads": torch.get_num_threads(), "device": str(items.encoder.device), "torch": torch.__version__,
            "config": args.config, "overrides": args.set}


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init-from", required=True, help="model directory (or language model) to fine-tune")
    p.add_argument("--dataset", default="Scientific_UniSRec", help="target dataset (default Scientific_UniSRec)")
    p.add_argument("--config", default="finetune_minilm", help="fine-tuning recipe (default finetune_minilm)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="recipe overrides")
    p.add_argument("--precision", nargs="+", default=["no", "auto"], choices=["no", "bf16", "fp16", "auto"],
                   help="mixed_precision values to time (default: no auto = fp32 against the default)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per precision (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_data_root_argument()
    p.add_device_argument(default="cpu")
    p.add_threads_argument()
    p.add_argument("--out", default=None, help="append the results as JSON lines to this file")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(run_one(args)))
        return 0
    # Mistakes are reported here, in one line, before any subprocess starts.
    from jepa4rec.checkpoint import CheckpointError, is_model_dir
    from jepa4rec.data import load_dataset
    from jepa4rec.language_models import is_language_model

    if not (is_model_dir(args.init_from) or is_language_model(args.init_from)):
        raise CheckpointError(f"--init-from {args.init_from!r} is neither a JEPA4Rec model directory nor a language model")
    load_dataset(args.dataset, root=args.data_root)
    results = []
    own = [a for a in (argv if argv is not None else sys.argv[1:])]
    for precision in args.precision:
        out = subprocess.run([sys.executable, __file__, *own, "--phase", precision], capture_output=True, text=True,
                             env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'mixed_precision':<18}{'computes':>9}{'pairs/s':>9}{'s/step':>8}{'epoch min':>11}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['asked']:<18}{r['precision']:>9}{r['pairs_per_s']:>9.2f}{r['s_per_step']:>8.2f}"
              f"{r['epoch_minutes']:>11.1f}{r['peak_rss_mb']:>13.0f}")
    print(f"{results[0]['dataset']}, batch {results[0]['batch_size']}, {results[0]['epoch_pairs']:,} pairs an epoch, "
          f"{results[0]['threads']} threads, {results[0]['device']}")
    if args.out:
        with open(args.out, "a") as fh:
            for r in results:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
