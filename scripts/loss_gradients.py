#!/usr/bin/env python
"""How hard each pre-training loss pulls the encoder: the gradient of L_SI, λ1·L_MLM and λ2·L_map on the
context encoder's weights at one point of a pre-training run, on that run's own batches.

JEPA4Rec and its λ2 = 0 twin can only rank differently where λ2·L_map moves the encoder differently from
what L_SI and L_MLM do. Each loss's gradient is taken on the same batch, the same masking and the same
dropout draws (seeded alike before each backward), so that the three gradients differ by their loss alone:
L_SI's is the gradient at λ1 = λ2 = 0, λ1·L_MLM's the change from adding λ1, λ2·L_map's the change from
adding λ2 (the run's own λs; ``--lambda-map`` measures another λ2 where the run has 0). Printed per
parameter group (the encoder's language-model weights, the new parts, the predictors): each gradient's
norm, its share of the three, and the cosine between L_map's and L_SI's (near 0: L_map pulls another way
than the ranking loss; near ±1: along it).

    python scripts/loss_gradients.py runs/twins/jepa4rec/checkpoint-200 --batches 4
    python scripts/loss_gradients.py checkpoints/jepa4rec-minilm-pretrain --config pretrain_minilm

POINT is a training checkpoint (``checkpoint-<step>/``: its config, weights and EMA target) or a model
directory (its training card's config; the EMA target is taken as the encoder itself, as at step 0).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError

GROUPS = (("language-model weights", lambda n: "longformer.encoder.layer." in n or "embeddings.LayerNorm" in n
           or ("position_embeddings" in n and "item_position" not in n)),
          ("item positions, token types", lambda n: "item_position" in n or "token_type" in n),
          ("predictors", lambda n: "_predictor." in n or "no_mask_vector" in n),
          ("MLM head", lambda n: n.startswith("mlm_head.")),
          ("pooling and the rest", lambda n: True))


def group_of(name: str) -> str:
    return next(label for label, match in GROUPS if match(name))


def point_config(point: Path, config: str | None, overrides: list[str]):
    """The run's PretrainConfig: ``--config`` when given, else the checkpoint's own (trainer_state.json, or a
    model directory's training card), with ``overrides`` on top."""
    from jepa4rec.config import PretrainConfig
    from jepa4rec.options import config_from_dict, load_config

    if config:
        return load_config(PretrainConfig, config, overrides)
    for name in ("trainer_state.json", "training_card.json"):
        data = json.loads((point / name).read_text()).get("config") if (point / name).is_file() else None
        if isinstance(data, dict):
            return config_from_dict(PretrainConfig, data, overrides)
    raise UserError(f"{point} records no pre-training config", hint="give the run's config with --config")


def gradients(model, inputs: dict, target, options: dict, seed: int) -> dict:
    """{name: gradient} of the forward's loss with ``options``, dropout seeded by ``seed``."""
    import torch

    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(**inputs, target_vectors=target, **options)
    out.loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("point", type=Path, help="a pre-training checkpoint-<step>/ folder or a model directory")
    p.add_argument("--config", default=None, help="the run's pre-training config (default: the point's own)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config options, as python -m jepa4rec.pretrain --set")
    p.add_argument("--batches", type=int, default=4, help="pre-training batches to average over (default 4)")
    p.add_argument("--first-batch", type=int, default=0, help="the epoch-0 batch to start from (default 0)")
    p.add_argument("--lambda-map", type=float, default=None,
                   help="λ2 to measure L_map's pull with (default: the run's; needed where the run has λ2 = 0)")
    p.add_argument("--data-root", default=None, help="folder holding the datasets (default: $JEPA4REC_DATA_ROOT)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_threads_argument()
    return p.parse_args(argv)


@command
def main(argv=None) -> int:
    from safetensors.torch import load_file

    from jepa4rec.batches import EncodedCorpus
    from jepa4rec.checkpoint import load_model_dir
    from jepa4rec.modeling import build_target_encoder
    from jepa4rec.masking import masking_generator
    from jepa4rec.pretraining import batch_stream, load_domains, loss_options, mask_batch, pretraining_sequences
    from jepa4rec.pretraining import target_vectors as ema_vectors

    args = parse_args(argv)
    if not args.point.is_dir():
        raise UserError(f"{args.point}: no such folder", hint="a checkpoint-<step>/ of a pre-training run, or a model directory")
    overrides = args.set + ([f"data_root={args.data_root}"] if args.data_root else [])
    cfg = point_config(args.point, args.config, overrides)
    lambda_map = cfg.loss.lambda_map if args.lambda_map is None else args.lambda_map
    if lambda_map <= 0:
        raise UserError("the run has λ2 = 0: there is no L_map to measure", hint="give --lambda-map 0.1")
    model, tok, _ = load_model_dir(args.point)
    target = build_target_encoder(model)
    if (args.point / "target_encoder.safetensors").is_file():
        target.load_state_dict(load_file(str(args.point / "target_encoder.safetensors")))
    if cfg.freeze_word_embeddings:  # as the run trained it
        model.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    datasets = load_domains(cfg)
    corpus = EncodedCorpus(datasets, tok)
    stream = batch_stream(pretraining_sequences(datasets, cfg), cfg, 0, args.first_batch, corpus=corpus)
    base = loss_options(cfg.loss)
    settings = {"L_SI": dict(base, lambda_mlm=0.0, lambda_map=0.0),
                "L_SI + λ1·L_MLM": dict(base, lambda_map=0.0),
                "L_SI + λ2·L_map": dict(base, lambda_mlm=0.0, lambda_map=lambda_map)}
    sums = {label: {} for label in ("L_SI", "λ1·L_MLM", "λ2·L_map")}
    dots = {}
    mask_cfg = replace(cfg.loss, lambda_map=lambda_map)  # L_map's inputs (a masked history item alone) are drawn
    for i in range(args.batches):
        _, b, chunk = next(stream)
        batch = corpus.collate_pairs(chunk)
        inputs = mask_batch(batch, mask_cfg, tok, masking_generator(cfg.seed, i))
        target_vecs = ema_vectors(target, inputs)
        g = {label: gradients(model, inputs, target_vecs, opts, seed=1000 + i) for label, opts in settings.items()}
        # A parameter only one loss reaches (the MLM head, the predictors) has no gradient from L_SI alone.
        parts = {"L_SI": g["L_SI"],
                 "λ1·L_MLM": {n: v - g["L_SI"][n] if n in g["L_SI"] else v for n, v in g["L_SI + λ1·L_MLM"].items()},
                 "λ2·L_map": {n: v - g["L_SI"][n] if n in g["L_SI"] else v for n, v in g["L_SI + λ2·L_map"].items()}}
        for label, grads in parts.items():
            for name, v in grads.items():
                grp = group_of(name)
                sums[label][grp] = sums[label].get(grp, 0.0) + float(v.pow(2).sum())
        for name, v in parts["λ2·L_map"].items():
            if name in parts["L_SI"]:
                grp = group_of(name)
                d = dots.setdefault(grp, [0.0, 0.0, 0.0])
                d[0] += float((v * parts["L_SI"][name]).sum())
                d[1] += float(v.pow(2).sum())
                d[2] += float(parts["L_SI"][name].pow(2).sum())
        print(f"batch {i + 1}/{args.batches} (epoch-0 batch {b})", flush=True)
    rows = []
    for grp, _ in GROUPS:
        norms = {label: math.sqrt(sums[label].get(grp, 0.0) / args.batches) for label in sums}
        if not any(norms.values()):
            continue
        total = sum(norms.values())
        d = dots.get(grp)
        cosine = d[0] / math.sqrt(d[1] * d[2]) if d and d[1] > 0 and d[2] > 0 else None
        rows.append({"group": grp, **{f"norm {k}": v for k, v in norms.items()},
                     **{f"share {k}": v / total for k, v in norms.items()}, "cosine L_map, L_SI": cosine})
    print(f"\n{args.point}: gradient norms (root mean square over {args.batches} batches), λ1 = {cfg.loss.lambda_mlm}, "
          f"λ2 = {lambda_map}")
    print(f"{'parameters':<30} {'L_SI':>10} {'λ1·L_MLM':>10} {'λ2·L_map':>10}   {'L_map share':>11} {'cos(L_map, L_SI)':>17}")
    for r in rows:
        cos = "–" if r["cosine L_map, L_SI"] is None else f"{r['cosine L_map, L_SI']:+.3f}"
        print(f"{r['group']:<30} {r['norm L_SI']:>10.4g} {r['norm λ1·L_MLM']:>10.4g} {r['norm λ2·L_map']:>10.4g}   "
              f"{r['share λ2·L_map']:>11.1%} {cos:>17}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"point": str(args.point), "batches": args.batches, "lambda_mlm": cfg.loss.lambda_mlm,
                                         "lambda_map": lambda_map, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
