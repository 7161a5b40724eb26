"""Pre-training on Hugging Face Accelerate: one loop that reads top to bottom.

Per step: draw the batch (deterministic in (seed, epoch, batch index)), forward the context encoder
and the EMA target (no grad) inside :func:`jepa4rec.losses.pretrain_losses`, back-propagate, clip,
step AdamW and the warm-up/decay schedule, then update the target with the momentum schedule.
Checkpoints hold model, target, optimizer, scheduler, RNG and data position (see
:mod:`jepa4rec.checkpoint`), so ``resume`` continues exactly where a run stopped.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .batches import EncodedCorpus, batches_per_epoch, iterate_batches, pretraining_pairs
from .checkpoint import (
    latest_checkpoint,
    load_training_checkpoint,
    save_model_dir,
    save_training_checkpoint,
)
from .config import PretrainConfig, to_dict
from .data import load_dataset
from .errors import ConfigError, TrainingDiverged
from .language_models import language_model_dir
from .losses import pretrain_losses
from .modeling import JEPA4RecModel, build_target_encoder, ema_update, momentum_at, new_model
from .text import ItemTokenizer, TextConfig, load_tokenizer, sentence_text, train_tokenizer

logger = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "lr", "loss", "loss_si", "loss_mlm", "loss_map", "item_spread", "momentum",
              "negatives", "tokens", "elapsed_s"]


class PretrainingModule(nn.Module):
    """Wraps the model so that DDP sees the whole pre-training forward as one ``forward`` call."""

    def __init__(self, model: JEPA4RecModel, cfg: PretrainConfig, item_tokenizer: ItemTokenizer):
        super().__init__()
        self.model = model
        self.loss_cfg = cfg.loss
        tok = item_tokenizer
        self.token_ids = dict(cls_id=tok.cls_id, pad_id=tok.pad_id, mask_id=tok.mask_id, special_ids=tok.special_ids)

    def forward(self, batch: dict, target_encoder, generator=None) -> dict:
        out = pretrain_losses(self.model, target_encoder, batch, self.loss_cfg, generator=generator, **self.token_ids)
        return dict(vars(out))


def _to_device(batch, device):
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if torch.is_tensor(batch) else batch


def is_encoder_weight(name: str) -> bool:
    """Weights a language model provides (``optim.encoder_lr``); item positions are new in JEPA4Rec."""
    name = name.removeprefix("model.")
    return name.startswith("encoder.") and "item_position_embeddings" not in name


def build_optimizer(model: nn.Module, optim_cfg) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights get no weight decay; the encoder's weights take
    ``optim.encoder_lr`` when it is set (frozen weights are left out)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((is_encoder_weight(name), no_decay), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": 0.0 if no_decay else optim_cfg.weight_decay,
         "lr": optim_cfg.encoder_lr if encoder and optim_cfg.encoder_lr is not None else optim_cfg.lr}
        for (encoder, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas))


def build_scheduler(optimizer, optim_cfg, total_steps: int):
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[optim_cfg.schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=optim_cfg.warmup_steps, num_training_steps=total_steps)


def resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def build_item_tokenizer(cfg: PretrainConfig, datasets, output_dir: Path, is_main: bool) -> ItemTokenizer:
    text_cfg = TextConfig(max_attr_tokens=cfg.max_attr_tokens, max_items=cfg.max_items, max_tokens=cfg.max_tokens)
    if cfg.tokenizer:
        return ItemTokenizer(load_tokenizer(cfg.tokenizer), text_cfg)
    if cfg.init_from:
        return ItemTokenizer(load_tokenizer(language_model_dir(cfg.init_from)), text_cfg)
    # The vocabulary comes from the pre-training catalogues only: a target domain's words are then
    # split into sub-words that pre-training has seen, which is what zero-shot transfer needs.
    tok_dir = output_dir / "tokenizer"
    if is_main and not (tok_dir / "tokenizer.json").exists():
        texts = (sentence_text(item, text_cfg) for ds in datasets for item in ds.items)
        ItemTokenizer(train_tokenizer(texts, cfg.vocab_size), text_cfg).save_pretrained(tok_dir)
    return ItemTokenizer(load_tokenizer(tok_dir), text_cfg)


def load_domains(cfg: PretrainConfig) -> list:
    datasets = []
    for name in cfg.domains:
        ds = load_dataset(name, root=cfg.data_root)
        if cfg.max_users_per_domain and ds.n_users > cfg.max_users_per_domain:
            keep = np.random.default_rng(cfg.seed).choice(ds.n_users, cfg.max_users_per_domain, replace=False)
            ds = ds.subset_users(sorted(keep.tolist()))
        datasets.append(ds)
    return datasets


def pretraining_sequences(datasets, cfg: PretrainConfig) -> list[list[list[int]]]:
    """Per domain, the sequences pairs are cut from: whole, or the training part only (``train_split_only``)."""
    return [ds.train_sequences() if cfg.train_split_only else ds.sequences for ds in datasets]


def pretrain(cfg: PretrainConfig, resume: bool = False) -> Path:
    """Run (or resume) pre-training; returns the exported model directory ``<output_dir>/final``."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.optim.grad_accum,
        cpu=not torch.cuda.is_available(),
        # Unused parameters are expected in ablations (λ_map = 0 leaves the predictors idle).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # max_steps counts optimizer steps whatever the number of processes: by default Accelerate
        # steps the scheduler num_processes times per step, which would end the schedule early.
        step_scheduler_with_optimizer=False,
    )
    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    is_main = accelerator.is_main_process
    # The data (readable, enough for one batch) is checked before anything is written to output_dir.
    datasets = load_domains(cfg)
    sequences = pretraining_sequences(datasets, cfg)
    per_domain = [sum(len(s) >= 2 for s in seqs) for seqs in sequences]  # one pair per user and epoch
    n_pairs = sum(per_domain)
    n_batches = (sum(batches_per_epoch(n, cfg.batch_size, accelerator.num_processes) for n in per_domain)
                 if cfg.batch_domains == "single" else batches_per_epoch(n_pairs, cfg.batch_size, accelerator.num_processes))
    if n_batches == 0:  # else the loop never ends
        raise ConfigError(f"{n_pairs} pre-training pairs per epoch do not fill one batch of {cfg.batch_size} x "
                          f"{accelerator.num_processes} process(es)", hint="lower batch_size or add users")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    item_tok = build_item_tokenizer(cfg, datasets, out, is_main) if is_main else None
    accelerator.wait_for_everyone()
    if item_tok is None:
        item_tok = build_item_tokenizer(cfg, datasets, out, is_main)
    corpus = EncodedCorpus(datasets, item_tok)

    model = new_model(item_tok, model_size=cfg.model_size, overrides=cfg.model, max_items=cfg.max_items,
                      max_tokens=cfg.max_tokens, init_from=cfg.init_from, token_init=cfg.token_init,
                      freeze_word_embeddings=cfg.freeze_word_embeddings, seed=cfg.seed)
    target = build_target_encoder(model).to(accelerator.device)

    optimizer = build_optimizer(model, cfg.optim)
    schedule_steps = cfg.schedule_steps or cfg.max_steps
    scheduler = build_scheduler(optimizer, cfg.optim, schedule_steps)
    module = PretrainingModule(model, cfg, item_tok)

    step, epoch, batch_start = 0, 0, 0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        state = load_training_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler,
                                         target_encoder=target, device="cpu")
        target.to(accelerator.device)
        step, epoch, batch_start = state["step"], state["epoch"], state["next_batch"]
        accelerator.print(f"resumed from {ckpt} at step {step} (epoch {epoch}, batch {batch_start})")
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
    unwrapped: PretrainingModule = accelerator.unwrap_model(module)

    log_path = out / "train_log.csv"
    if is_main and not (log_path.exists() and ckpt is not None):
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerow(LOG_FIELDS)
    elif is_main:  # resuming: rows logged after the checkpoint (a run killed between saves) are redone
        with open(log_path, newline="") as fh:
            rows = list(csv.reader(fh))
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerows(rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step])
    card = {"kind": "pretrain", "config": to_dict(cfg), "domains": cfg.domains,
            "users": int(sum(ds.n_users for ds in datasets)), "items": int(sum(ds.n_items for ds in datasets))}

    def save(next_batch: int) -> None:
        if not is_main:
            return
        save_training_checkpoint(
            out / f"checkpoint-{step}", model=unwrapped.model, item_tokenizer=item_tok, optimizer=optimizer,
            scheduler=scheduler, target_encoder=target,
            trainer_state={"step": step, "epoch": epoch, "next_batch": next_batch, "config": to_dict(cfg)},
            card={**card, "step": step},
        )
        old = sorted(out.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[-1]))
        for p in old[:-cfg.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)

    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (is_main and cfg.progress), desc="pre-train", dynamic_ncols=True)
    start = time.time()
    tokens = 0
    last: dict = {}
    module.train()
    done = step >= cfg.max_steps
    while not done:
        group = cfg.batch_size * accelerator.num_processes if cfg.batch_domains == "single" else None
        pairs = pretraining_pairs(sequences, epoch, cfg.seed, cfg.max_items, group)
        for b, chunk in iterate_batches(pairs, cfg.batch_size, batch_start, accelerator.process_index, accelerator.num_processes):
            batch = _to_device(corpus.collate_pairs(chunk), accelerator.device)
            tokens += int(batch["history"]["attention_mask"].sum() + batch["next_item"]["attention_mask"].sum())
            # Masking draws from a generator seeded by the step: a resumed run masks identically.
            gen = torch.Generator(device=accelerator.device).manual_seed(cfg.seed * 1_000_003 + step * 7919 + accelerator.process_index)
            with accelerator.accumulate(module), accelerator.autocast():
                outputs = module(batch, target, gen)
                accelerator.backward(outputs["loss"])
                if accelerator.sync_gradients and cfg.optim.grad_clip:
                    accelerator.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            momentum = momentum_at(step, schedule_steps, cfg.ema_momentum_start, cfg.ema_momentum_end)
            ema_update(target, unwrapped.model.encoder, momentum)
            step += 1
            last = {k: float(v.detach()) for k, v in outputs.items()}
            if not math.isfinite(last["loss"]):
                kept = latest_checkpoint(out)
                raise TrainingDiverged(
                    f"loss is {last['loss']} at step {step} (epoch {epoch}, batch {b}); nothing was saved after it, the "
                    f"last good state is {kept or 'not saved yet'}")
            # At initialisation every item vector is nearly the same (spread ~0.001); only after the
            # warm-up does a low spread mean the encoder is collapsing.
            if step > cfg.optim.warmup_steps and last["item_spread"] < cfg.collapse_threshold:
                warnings.warn(f"step {step}: item-vector spread {last['item_spread']:.4f} is below "
                              f"{cfg.collapse_threshold}: the representations may be collapsing")
            bar.update(1)
            bar.set_postfix(si=f"{last['loss_si']:.3f}", mlm=f"{last['loss_mlm']:.3f}", map=f"{last['loss_map']:.3f}",
                            spread=f"{last['item_spread']:.3f}")
            if is_main and (step % cfg.log_every == 0 or step == 1):
                with open(log_path, "a", newline="") as fh:
                    csv.writer(fh).writerow([step, epoch, scheduler.get_last_lr()[0], last["loss"], last["loss_si"],
                                             last["loss_mlm"], last["loss_map"], last["item_spread"], momentum,
                                             cfg.batch_size * accelerator.num_processes, tokens,
                                             round(time.time() - start, 2)])
            out_of_time = cfg.max_minutes is not None and time.time() - start > cfg.max_minutes * 60
            if step >= cfg.max_steps or out_of_time:
                done = True
                save(b + 1)
                break
            if step % cfg.save_every == 0:
                save(b + 1)
        else:
            epoch += 1
            batch_start = 0
            continue
        break
    bar.close()
    accelerator.wait_for_everyone()
    final = out / "final"
    if is_main:
        elapsed = time.time() - start
        card.update(step=step, last_losses=last, train_seconds=round(elapsed, 1),
                    tokens_per_s=round(tokens * accelerator.num_processes / max(elapsed, 1e-9), 1))
        save_model_dir(final, unwrapped.model, item_tok, card)
    accelerator.end_training()
    return final
