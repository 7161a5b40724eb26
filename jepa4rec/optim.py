"""What every training loop shares: AdamW and its schedule, the mixed-precision choice, early stopping.

Pre-training (:mod:`jepa4rec.pretraining`), fine-tuning (:mod:`jepa4rec.finetuning`) and the SASRec
baseline (:mod:`jepa4rec.baselines.sasrec`) build on these; none of them imports another training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .devices import native_bf16

if TYPE_CHECKING:  # annotations only: this module sits below the configs
    from .config import OptimConfig


def build_optimizer(model: nn.Module, optim_cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the groups the model declares (:meth:`jepa4rec.modeling.JepaPreTrainedModel.optimizer_groups`):
    the encoder's weights take ``optim.encoder_lr``, the recency pooling's ``optim.pooling_lr`` and the item
    positions ``optim.item_position_lr`` when they are set, everything new (and a score prior being learned)
    ``optim.lr``; biases and LayerNorm weights get no weight decay; frozen weights are left out."""
    rates = {"new": optim_cfg.lr, "encoder": optim_cfg.lr if optim_cfg.encoder_lr is None else optim_cfg.encoder_lr,
             "pooling": optim_cfg.lr if optim_cfg.pooling_lr is None else optim_cfg.pooling_lr,
             "item_positions": optim_cfg.item_position_lr, "priors": optim_cfg.lr}
    if hasattr(model, "optimizer_groups"):
        groups = model.optimizer_groups(rates, optim_cfg.weight_decay)
    else:  # any other module: every trainable weight is new
        groups = [{"name": "new/decay", "params": [p for p in model.parameters() if p.requires_grad], "lr": optim_cfg.lr,
                   "weight_decay": optim_cfg.weight_decay}]
    # The names stay outside torch's groups: a saved optimizer state written before they existed loads as it was.
    params = [{k: v for k, v in g.items() if k != "name"} for g in groups]
    optimizer = torch.optim.AdamW(params, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas))
    optimizer.group_names = [g["name"] for g in groups]
    return optimizer


def build_scheduler(optimizer, optim_cfg: OptimConfig, total_steps: int):
    """Linear warm-up over ``optim.warmup_steps``, then ``optim.schedule`` decay over ``total_steps``."""
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[optim_cfg.schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=optim_cfg.warmup_steps, num_training_steps=total_steps)


def resolve_mixed_precision(choice: str, device: torch.device | str) -> str:
    """``auto`` → ``bf16`` where ``device`` computes it natively (a GPU that has it, a CPU with AMX-BF16 or
    AVX512-BF16: :func:`jepa4rec.devices.native_bf16`), else ``no``; any other choice is kept."""
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else "no"


@dataclass
class EarlyStopping:
    """Keep the best validation score; stop after ``patience`` evaluations without a strictly better one.

    Its three numbers are the whole state a resumed run needs (fine-tuning saves them with each epoch).
    """

    patience: int
    best_score: float = -math.inf
    best_epoch: int | None = None
    stale: int = 0

    def update(self, score: float, epoch: int) -> bool:
        """Record one evaluation; True when it is the best so far (the caller then keeps that model)."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


def autocast(device: torch.device, mixed_precision: str):
    """``torch.autocast`` for a resolved choice (``no`` | ``bf16`` | ``fp16``); ``no`` computes in fp32.
    Fine-tuning and the benchmarks autocast with it; pre-training through Accelerate, which does the same."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
