"""What every training loop shares: AdamW and its schedule, the mixed-precision choice, early stopping, and the
epoch loop of the trainings that validate (:func:`fit_epochs`).

Pre-training (:mod:`jepa4rec.pretraining`), fine-tuning (:mod:`jepa4rec.finetuning`) and the SASRec
baseline (:mod:`jepa4rec.baselines.sasrec`) build on these; none of them imports another training.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .devices import native_bf16
from .errors import ConfigError

if TYPE_CHECKING:  # annotations only: this module sits below the configs
    from .config import OptimConfig

logger = logging.getLogger(__name__)


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


def _native(precision: str, device: torch.device | str) -> bool:
    return {"no": True, "bf16": native_bf16(device), "fp16": torch.device(device).type == "cuda"}[precision]


def resume_precision(choice: str, device: torch.device | str, saved: str | None, run: str) -> str:
    """The precision a resumed run computes in, ``saved`` being the one its checkpoint was trained in (None in
    checkpoints older than that record: ``choice`` resolved as for a new run).

    ``auto`` keeps ``saved`` wherever the device computes it natively, so a run goes on in the precision it began
    in on whichever machine resumes it (an fp32 run resumed on a CPU with AMX-BF16 stays fp32, and its steps
    stay those of an uninterrupted run). A run trained in bf16 resumed where bf16 is only emulated (about 10x
    slower a step) must say which it wants. An explicit choice is followed, with a warning when it differs."""
    new = resolve_mixed_precision(choice, device)
    if saved is None or saved == new:
        return new
    if choice != "auto":
        logger.warning("%s was trained with mixed_precision=%s; it goes on with %s as asked, so its steps from here "
                       "differ from an uninterrupted run's", run, saved, new)
        return new
    if _native(saved, device):
        logger.info("%s goes on with mixed_precision=%s, the precision it was trained in", run, saved)
        return saved
    raise ConfigError(f"{run} was trained with mixed_precision={saved}, which this device computes only by emulation "
                      f"(mixed_precision=auto would switch it to {new}): set mixed_precision={saved} to go on as it "
                      f"began (slowly), or mixed_precision={new} to go on in that precision from here")


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


@dataclass
class FitState:
    """Where an epoch loop stands: the epochs done (each a dict row of :func:`fit_epochs`' history) and the
    early stopping; with the model's and optimizer's own state, what a resumed run needs."""

    stopper: EarlyStopping
    history: list[dict]
    epoch: int = 0  # the last epoch finished


def fit_epochs(state: FitState, epochs: int, train_epoch: Callable[[int], dict], validate: Callable[[], dict],
               select_metric: str, on_best: Callable[[int, dict], None] | None = None,
               on_epoch_end: Callable[[FitState], None] | None = None, stop_early: Callable[[], bool] = lambda: False,
               validate_every: int = 1, log: Callable[[dict], None] | None = None) -> FitState:
    """The one epoch loop of the trainings that validate (fine-tuning, SASRec): for each epoch after
    ``state.epoch``, ``train_epoch(epoch)`` (a dict row: loss, steps, ...), then every ``validate_every`` epochs
    (and at the last) ``validate()`` under the row's ``valid``; a better ``select_metric`` calls
    ``on_best(epoch, valid)`` (keep that model); ``on_epoch_end(state)`` saves what a resume needs; the loop
    stops after ``epochs``, when early stopping says so, or when ``stop_early()`` (a time budget).

    A state that had already stopped early trains nothing more."""
    if state.stopper.should_stop:
        return state
    for epoch in range(state.epoch + 1, epochs + 1):
        row = {"epoch": epoch, **train_epoch(epoch)}
        if epoch % validate_every == 0 or epoch == epochs:
            row["valid"] = validate()
            if state.stopper.update(row["valid"][select_metric], epoch) and on_best is not None:
                on_best(epoch, row["valid"])
        state.history.append(row)
        state.epoch = epoch
        if log is not None:
            log(row)
        if on_epoch_end is not None:
            on_epoch_end(state)
        if state.stopper.should_stop or stop_early():
            break
    return state
