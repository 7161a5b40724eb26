"""Pre-training throughput and memory: the full JEPA4Rec step against transformers' Longformer alone.

Each phase runs in its own subprocess so that its peak resident memory is its own:
* ``step``: the whole pre-training step (masking, context encoder on history + next items, EMA
  target forward, three losses, backward, AdamW, EMA update) on real pre-training batches;
* ``encoder``: ``transformers.LongformerModel`` with the same dimensions, forward + backward on the
  same history batches (input ids, attention mask, [CLS] global attention), nothing else.
Tokens are the non-padding tokens fed per step (history + next item for ``step``, history only for
``encoder``), so the encoder's share of a step is visible.

  python scripts/benchmark_pretrain.py                      # tiny, batch 32, Beauty2014 + Toys2014
  python scripts/benchmark_pretrain.py --size base --device cuda --steps 20 --mixed-precision bf16
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_phase(args) -> dict:
    import torch

    from jepa4rec.batches import EncodedCorpus, iterate_batches, pretraining_pairs
    from jepa4rec.builder import item_tokenizer, new_model
    from jepa4rec.config import PretrainConfig
    from jepa4rec.devices import resolve_device
    from jepa4rec.modeling import build_target_encoder, ema_update
    from jepa4rec.optim import autocast, build_optimizer
    from jepa4rec.pretraining import load_domains, pretrain_losses
    from jepa4rec.text import TextConfig, sentence_text

    torch.manual_seed(0)
    device = resolve_device(args.device)
    cfg = PretrainConfig(model_size=args.size, domains=args.domains, data_root=args.data_root,
                         max_users_per_domain=args.users, batch_size=args.batch_size, max_tokens=args.max_tokens)
    datasets = load_domains(cfg)
    tok = item_tokenizer(TextConfig(max_tokens=args.max_tokens), vocab_size=8000,
                         texts=(sentence_text(i) for ds in datasets for i in ds.items))
    corpus = EncodedCorpus(datasets, tok)
    pairs = pretraining_pairs([ds.sequences for ds in datasets], 0, 0)
    batches = [corpus.collate_pairs(chunk) for _, chunk in iterate_batches(pairs, args.batch_size)][: args.warmup + args.steps]

    def to(batch):
        return {k: to(v) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}

    if args.phase == "step":
        model = new_model(tok, model_size=args.size, overrides={}, max_items=cfg.max_items, max_tokens=args.max_tokens).to(device)
        target = build_target_encoder(model)
        model.train()
        opt = build_optimizer(model, cfg.optim)

        def step(batch):
            with autocast(device, args.mixed_precision):
                loss = pretrain_losses(model, target, batch, cfg.loss, tok).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            ema_update(target, model.encoder, 0.996)
            return int(batch["history"]["attention_mask"].sum() + batch["next_item"]["attention_mask"].sum())
    else:
        from transformers import LongformerModel

        from jepa4rec.modeling import JepaConfig

        mcfg = JepaConfig.from_size(args.size, vocab_size=len(tok.tokenizer), pad_token_id=tok.pad_id,
                                    max_position_embeddings=args.max_tokens)
        encoder = LongformerModel(mcfg.longformer_config(), add_pooling_layer=False).to(device).train()
        opt = torch.optim.AdamW(encoder.parameters(), lr=1e-4)

        def step(batch):
            h = batch["history"]
            with autocast(device, args.mixed_precision):
                out = encoder(input_ids=h["input_ids"], attention_mask=h["attention_mask"],
                              global_attention_mask=h["global_attention_mask"]).last_hidden_state
            out[:, 0].float().pow(2).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return int(h["attention_mask"].sum())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tokens, elapsed = 0, 0.0
    for i, batch in enumerate(batches):
        batch = to(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        n = step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            tokens += n
            elapsed += time.perf_counter() - t0
    steps = len(batches) - args.warmup
    result = {"phase": args.phase, "size": args.size, "batch_size": args.batch_size, "steps": steps,
              "tokens_per_s": round(tokens / elapsed, 1), "s_per_step": round(elapsed / steps, 3),
              "tokens_per_step": round(tokens / steps, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
              "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="tiny", help="model size: tiny | small | base")
    p.add_argument("--batch-size", type=int, default=32, help="histories per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per phase")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--max-tokens", type=int, default=512, help="history token cap (the tiny config's)")
    p.add_argument("--domains", nargs="+", default=["Beauty2014_SeqRecBench", "Toys2014_SeqRecBench"],
                   help="pre-training domains the batches are drawn from")
    p.add_argument("--users", type=int, default=3000, help="users sampled per domain")
    p.add_data_root_argument()
    p.add_device_argument(default="cpu")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no", help="autocast dtype of the timed steps")
    p.add_argument("--phase", choices=["step", "encoder"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON line per phase only")
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args)))
        return 0
    results = []
    for phase in ("step", "encoder"):
        cmd = [sys.executable, __file__, "--phase", phase] + [a for a in (argv or sys.argv[1:]) if a != "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        for r in results:
            print(json.dumps(r))
        return 0
    step, enc = results
    print(f"{'phase':<28}{'tokens/s':>10}{'s/step':>9}{'tokens/step':>13}{'peak RSS MB':>13}")
    for name, r in (("JEPA4Rec pre-training step", step), ("Longformer encoder alone", enc)):
        print(f"{name:<28}{r['tokens_per_s']:>10.0f}{r['s_per_step']:>9.3f}{r['tokens_per_step']:>13.0f}{r['peak_rss_mb']:>13.0f}"
              + (f"  peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""))
    print(f"encoder alone on the history takes {100 * enc['s_per_step'] / step['s_per_step']:.0f}% of a full step's time "
          f"({step['size']}, batch {step['batch_size']}, {step['threads']} threads, {step['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
