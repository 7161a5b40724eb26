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


POOLING_WEIGHT = "recency_decay"  # JepaEncoder's recency pooling
ITEM_POSITION_WEIGHT = "item_position_embeddings"
NEW_ENCODER_PARTS = (ITEM_POSITION_WEIGHT, POOLING_WEIGHT)


def is_encoder_weight(name: str) -> bool:
    """Weights a language model provides (``optim.encoder_lr``); item positions and the recency pooling's
    decay rate are new in JEPA4Rec."""
    name = name.removeprefix("model.")
    return name.startswith("encoder.") and not any(part in name for part in NEW_ENCODER_PARTS)


def is_pooling_weight(name: str) -> bool:
    """The recency pooling's decay rate (``optim.pooling_lr``)."""
    return POOLING_WEIGHT in name


def _part(name: str, optim_cfg: OptimConfig) -> int:
    if is_pooling_weight(name):
        return 2
    if ITEM_POSITION_WEIGHT in name and optim_cfg.item_position_lr is not None:
        return 3
    return int(is_encoder_weight(name))


def build_optimizer(model: nn.Module, optim_cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights get no weight decay; the encoder's weights take
    ``optim.encoder_lr``, the recency pooling's ``optim.pooling_lr`` and the item positions
    ``optim.item_position_lr`` when they are set (frozen weights are left out)."""
    # Groups keyed (part, no_decay), part 0 = new, 1 = the language model's, 2 = the recency pooling's,
    # 3 = the item positions' (only with their own rate): the order a saved optimizer state was written in
    # before the later groups existed.
    lrs = {0: optim_cfg.lr, 1: optim_cfg.lr if optim_cfg.encoder_lr is None else optim_cfg.encoder_lr,
           2: optim_cfg.lr if optim_cfg.pooling_lr is None else optim_cfg.pooling_lr,
           3: optim_cfg.item_position_lr}
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = _part(name, optim_cfg)
        no_decay = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((part, no_decay), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": 0.0 if no_decay else optim_cfg.weight_decay, "lr": lrs[part]}
        for (part, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas))


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
