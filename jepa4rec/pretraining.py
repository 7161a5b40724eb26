"""Pre-training (paper Sec. 3.2): one step, and the Hugging Face Accelerate loop that repeats it.

**One step**, L = L_SI + λ1·L_MLM + λ2·L_map (paper: τ = 0.05, λ1 = λ2 = 0.1; λ2 = 0 gives the
RecFormer-style variant):

1. :func:`mask_batch` (the collator's job, as in transformers' MLM): mask 15% of the history tokens and 50%
   of the next item's tokens (BERT 80/10/10), and pick the masked history item FFN1 predicts, cut out alone;
2. :func:`target_vectors`: the EMA target encoder (no grad) on the full next items and on those history
   items alone → L_map's targets;
3. ``model(**inputs)`` (:meth:`jepa4rec.modeling.JEPA4RecForPreTraining.forward`): the context encoder on the
   masked history → h_CLS and token states (MLM); on the full next items (S-I positives and in-batch
   negatives) and on the masked ones → h_{n+1,M}; FFN1(h_CLS ⊕ D_n) → ĥ_n and FFN2(h_CLS ⊕ h_{n+1,M}) →
   ĥ_{n+1}; the three losses, their sum and the collapse guard's item-vector spread.

:func:`pretrain_losses` is the three together. The model itself is what Accelerate prepares (and DDP
wraps when several processes train).

**The loop** (:func:`pretrain`) reads top to bottom: draw the batch (deterministic in (seed, epoch,
batch index)) → forward → backward → clip, AdamW and warm-up/decay step → EMA update of the target
with the momentum schedule → log (``train_log.csv``) → save / stop. Checkpoints hold model, target,
optimizer, scheduler, RNG and data position (see :mod:`jepa4rec.checkpoint`), so ``resume`` continues
exactly where a run stopped.
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
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batches import EncodedCorpus, Pair, batches_per_epoch, iterate_batches, pretraining_pairs
from .builder import item_tokenizer, new_model
from .checkpoint import latest_checkpoint, load_training_checkpoint, save_model_dir, save_training_checkpoint
from .config import LossConfig, PretrainConfig, to_dict, warn_changed_options
from .data import load_dataset
from .errors import ConfigError, TrainingDiverged
from .masking import bert_mask, masking_generator, sample_masked_item
from .modeling import (JEPA4RecForPreTraining, JepaEncoder, JepaPreTrainingOutput, build_target_encoder, ema_update,
                       momentum_at)
from .optim import build_optimizer, build_scheduler, resume_precision
from .text import TYPE_CLS, TYPE_PAD, ItemTokenizer, TextConfig, model_inputs, sentence_text

logger = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "lr", "loss", "loss_si", "loss_mlm", "loss_map", "item_spread", "momentum",
              "negatives", "tokens", "elapsed_s"]


# --- one step ----------------------------------------------------------------------------------------

def extract_item_alone(history: dict[str, torch.Tensor], item_position: torch.Tensor, cls_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    """``[CLS] S_k`` for the item at ``item_position[b]`` of each history, vectorised."""
    sel = (history["item_position_ids"] == item_position[:, None]) & (history["attention_mask"] == 1)
    sel &= item_position[:, None] > 0
    counts = sel.sum(dim=1)
    length = int(counts.max().item()) + 1
    B = sel.shape[0]
    dest = torch.cumsum(sel.long(), dim=1)  # 1..n for the selected tokens
    dest = torch.where(sel, dest, torch.zeros_like(dest))
    out_ids = torch.full((B, length), pad_id, dtype=torch.long, device=sel.device)
    out_types = torch.full((B, length), TYPE_PAD, dtype=torch.long, device=sel.device)
    rows = torch.arange(B, device=sel.device)[:, None].expand_as(sel)
    out_ids[rows[sel], dest[sel]] = history["input_ids"][sel]
    out_types[rows[sel], dest[sel]] = history["token_type_ids"][sel]
    out_ids[:, 0] = cls_id
    out_types[:, 0] = TYPE_CLS
    positions = torch.arange(length, device=sel.device)[None, :]
    attention = (positions <= counts[:, None]).long()
    item_positions = attention - (positions == 0).long()  # 1 on item tokens, 0 on [CLS] and padding
    return model_inputs(out_ids, attention, out_types, item_positions)


def _concat_batches(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], fills: dict[str, int]) -> dict[str, torch.Tensor]:
    L = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    def pad(x, k):
        return F.pad(x, (0, L - x.shape[1]), value=fills.get(k, 0))
    return {k: torch.cat([pad(a[k], k), pad(b[k], k)], dim=0) for k in a}


def mask_batch(batch: dict, cfg: LossConfig, item_tokenizer: ItemTokenizer,
               generator: torch.Generator | None = None) -> dict:
    """A collated pre-training batch (``history``, ``next_item``, ``next_uid``) masked for one step: the
    model's inputs (see :meth:`~jepa4rec.modeling.JEPA4RecForPreTraining.forward`) plus ``target_items``, the
    full next items and the chosen history items alone that the EMA target encodes. Every random draw
    comes from ``generator``, in a fixed order, so a resumed run masks identically."""
    tok = item_tokenizer
    history, next_item = batch["history"], batch["next_item"]
    mask_kw = dict(mask_id=tok.mask_id, vocab_size=len(tok.tokenizer), special_ids=tok.special_ids, generator=generator)
    hist_ids, hist_labels = bert_mask(history["input_ids"], history["token_type_ids"], cfg.history_mask_ratio, **mask_kw)
    next_ids, next_labels = bert_mask(next_item["input_ids"], next_item["token_type_ids"], cfg.next_item_mask_ratio, **mask_kw)
    fills = {"input_ids": tok.pad_id, "token_type_ids": TYPE_PAD}
    inputs = {"history": {**history, "input_ids": hist_ids}, "history_labels": hist_labels,
              "next_items": _concat_batches(next_item, {**next_item, "input_ids": next_ids}, fills),
              "next_item_labels": next_labels, "next_uid": batch.get("next_uid")}
    if cfg.lambda_map > 0:
        position, has_masked = sample_masked_item(hist_labels, history["item_position_ids"], generator)
        # Where nothing was masked, the learnable vector stands in for D_n and the most recent item
        # (position 1) is the target, so the vector learns "the item this history ends with".
        position = torch.where(has_masked, position, torch.ones_like(position))
        alone = extract_item_alone(history, position, tok.cls_id, tok.pad_id)
        inputs.update(masked_position=position, has_masked=has_masked,
                      target_items=_concat_batches(next_item, alone, fills))
    return inputs


@torch.no_grad()
def target_vectors(target_encoder: JepaEncoder | None, inputs: dict) -> torch.Tensor | None:
    """The EMA target's vectors of ``inputs["target_items"]`` (full next items, then history items alone):
    L_map's targets; None when the step has no mapping loss."""
    if "target_items" not in inputs:
        return None
    if target_encoder is None:
        raise ValueError("lambda_map > 0 needs the EMA target encoder")
    return target_encoder.encode(inputs["target_items"])


def loss_options(cfg: LossConfig) -> dict:
    """The forward's loss keywords from a run's ``loss.*`` section."""
    return dict(temperature=cfg.temperature, lambda_mlm=cfg.lambda_mlm, lambda_map=cfg.lambda_map,
                mlm_on_next_item=cfg.mlm_on_next_item, map_normalize=cfg.map_normalize)


def pretrain_losses(model: JEPA4RecForPreTraining, target_encoder: JepaEncoder | None, batch: dict, cfg: LossConfig,
                    item_tokenizer: ItemTokenizer, generator: torch.Generator | None = None) -> JepaPreTrainingOutput:
    """One pre-training forward: mask the batch, encode the targets, and the model's loss."""
    inputs = mask_batch(batch, cfg, item_tokenizer, generator)
    return model(**inputs, target_vectors=target_vectors(target_encoder, inputs), **loss_options(cfg))


# --- what a run is made of ---------------------------------------------------------------------------

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


def check_one_batch(sequences, cfg: PretrainConfig, world: int) -> None:
    """An epoch must fill at least one global batch, else the loop would never end."""
    per_domain = [sum(len(s) >= 2 for s in seqs) for seqs in sequences]  # one pair per user and epoch
    n_pairs = sum(per_domain)
    n_batches = (sum(batches_per_epoch(n, cfg.batch_size, world) for n in per_domain)
                 if cfg.batch_domains == "single" else batches_per_epoch(n_pairs, cfg.batch_size, world))
    if n_batches == 0:
        raise ConfigError(f"{n_pairs} pre-training pairs per epoch do not fill one batch of {cfg.batch_size} x "
                          f"{world} process(es)", hint="lower batch_size or add users")


def build_item_tokenizer(cfg: PretrainConfig, datasets, output_dir: Path, is_main: bool) -> ItemTokenizer:
    """The run's tokenizer (:func:`jepa4rec.builder.item_tokenizer`). A trained vocabulary comes from the
    pre-training catalogues only, so a target domain's words split into sub-words pre-training has seen
    (what zero-shot transfer needs); the main process trains it once into ``<output_dir>/tokenizer``."""
    text_cfg = TextConfig(max_attr_tokens=cfg.max_attr_tokens, max_items=cfg.max_items, max_tokens=cfg.max_tokens)
    texts = (sentence_text(item, text_cfg) for ds in datasets for item in ds.items) if is_main else None
    return item_tokenizer(text_cfg, init_from=cfg.init_from, tokenizer=cfg.tokenizer, texts=texts,
                          vocab_size=cfg.vocab_size, trained_dir=output_dir / "tokenizer")


def batch_stream(sequences, cfg: PretrainConfig, epoch: int, batch_start: int, rank: int = 0,
                 world: int = 1, corpus: EncodedCorpus | None = None) -> Iterator[tuple[int, int, list[Pair]]]:
    """(epoch, batch index, this process's pairs) from batch ``batch_start`` of ``epoch`` on, epoch after
    epoch without end: each epoch draws its pairs anew (:func:`jepa4rec.batches.pretraining_pairs`), grouped
    by history length when ``cfg.group_by_length`` (``corpus`` measures them)."""
    group = cfg.batch_size * world if cfg.batch_domains == "single" else None
    if cfg.group_by_length and corpus is None:
        raise ValueError("group_by_length needs the encoded corpus to measure histories")
    length = corpus.history_length if cfg.group_by_length else None
    while True:
        pairs = pretraining_pairs(sequences, epoch, cfg.seed, cfg.max_items, group, length, cfg.batch_size * world)
        for b, chunk in iterate_batches(pairs, cfg.batch_size, batch_start, rank, world):
            yield epoch, b, chunk
        epoch, batch_start = epoch + 1, 0


class TrainLog:
    """``train_log.csv``, one row of :data:`LOG_FIELDS` (a dict) per logged step, written by the main process only.
    A resumed run first drops the rows logged after its checkpoint (a run killed between two saves redoes
    those steps), so the log holds every step once."""

    def __init__(self, path: Path, resumed_at: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resumed_at is not None and path.exists():
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerows(rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= resumed_at])
        else:
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(LOG_FIELDS)

    def append(self, row: dict) -> None:
        """One step's row, by column name (an unknown or missing column is an error, not a shifted row)."""
        if self.enabled:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, LOG_FIELDS, extrasaction="raise").writerow(row)


def run_status(output_dir: str | Path, steps: int) -> str:
    """One line on a run, for a person checking on it: its last logged step of ``steps``, newest checkpoint,
    exports, and the pace over its latest stretch (``elapsed_s`` restarts with every resumed chunk) with the
    hours left at that pace."""
    out = Path(output_dir)
    if not (out / "train_log.csv").is_file():
        return f"{out}: not started (no train_log.csv)"
    with open(out / "train_log.csv", newline="") as fh:
        rows = [(int(r["step"]), float(r["elapsed_s"])) for r in csv.DictReader(fh)]
    chunk = rows[-1:]
    for row in reversed(rows[:-1]):
        if row[1] >= chunk[0][1]:
            break
        chunk.insert(0, row)
    ckpt = latest_checkpoint(out)
    exports = sorted(int(p.name.split("-")[-1]) for p in out.glob("step-*[0-9]"))
    step = rows[-1][0] if rows else 0
    line = (f"{out}: logged step {step} of {steps}; checkpoint {ckpt.name.split('-')[-1] if ckpt else 'none'}; "
            f"exports {', '.join(map(str, exports)) or 'none'}")
    if len(chunk) >= 2 and chunk[-1][0] > chunk[0][0]:
        pace = (chunk[-1][1] - chunk[0][1]) / (chunk[-1][0] - chunk[0][0])
        line += f"; {pace:.1f} s a step lately, {max(steps - step, 0) * pace / 3600:.1f} h left at that pace"
    return line


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``checkpoint-<step>`` folders."""
    old = sorted(output_dir.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[-1]))
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def check_health(losses: dict, step: int, epoch: int, batch: int, cfg: PretrainConfig, output_dir: Path) -> None:
    """Stop on a NaN or infinite loss (naming the last good checkpoint); warn when item vectors collapse."""
    if not math.isfinite(losses["loss"]):
        kept = latest_checkpoint(output_dir)
        raise TrainingDiverged(
            f"loss is {losses['loss']} at step {step} (epoch {epoch}, batch {batch}); nothing was saved after it, the "
            f"last good state is {kept or 'not saved yet'}")
    # At initialisation every item vector is nearly the same (spread ~0.001); only after the warm-up does a
    # low spread mean the encoder is collapsing.
    if step > cfg.optim.warmup_steps and losses["item_spread"] < cfg.collapse_threshold:
        warnings.warn(f"step {step}: item-vector spread {losses['item_spread']:.4f} is below "
                      f"{cfg.collapse_threshold}: the representations may be collapsing")


def _to_device(batch, device):
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if torch.is_tensor(batch) else batch


def _accelerator(cfg: PretrainConfig, precision: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    if AcceleratorState._shared_state and not torch.distributed.is_initialized():
        # A second run in one process (scripts/check_bf16_pretraining.py's fp32 then bf16, a notebook) may ask
        # for another precision; Accelerate keeps one process-wide state and would refuse the change.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.optim.grad_accum,
        cpu=not torch.cuda.is_available(),
        # Unused parameters are expected in ablations (λ_map = 0 leaves the predictors idle).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # max_steps counts optimizer steps whatever the number of processes: by default Accelerate
        # steps the scheduler num_processes times per step, which would end the schedule early.
        step_scheduler_with_optimizer=False,
    )


# --- the loop ----------------------------------------------------------------------------------------

def pretrain(cfg: PretrainConfig, resume: bool = False) -> Path:
    """Run (or resume) pre-training; returns the exported model directory ``<output_dir>/final``."""
    from accelerate.utils import set_seed

    out = Path(cfg.output_dir)
    ckpt = latest_checkpoint(out) if resume else None
    # A resumed run keeps the precision it was trained in (auto) and says which options differ from its checkpoint's.
    saved = json.loads((ckpt / "trainer_state.json").read_text()) if ckpt is not None else {}
    precision = resume_precision(cfg.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu",
                                 saved.get("precision"), str(out))
    warn_changed_options(cfg, saved.get("config"), out)
    accelerator = _accelerator(cfg, precision)
    set_seed(cfg.seed)
    is_main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    # The data (readable, enough for one batch) is checked before anything is written to output_dir.
    datasets = load_domains(cfg)
    sequences = pretraining_sequences(datasets, cfg)
    check_one_batch(sequences, cfg, world)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    item_tok = build_item_tokenizer(cfg, datasets, out, is_main) if is_main else None
    accelerator.wait_for_everyone()  # the main process has trained the vocabulary, if there was one to train
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
    losses_kw = loss_options(cfg.loss)

    step, epoch, batch_start, earlier_seconds = 0, 0, 0, 0.0
    if ckpt is not None:
        state = load_training_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler,
                                         target_encoder=target, device="cpu")
        target.to(accelerator.device)
        step, epoch, batch_start = state["step"], state["epoch"], state["next_batch"]
        earlier_seconds = state.get("train_seconds", 0.0)  # the sessions before this one (absent in old runs)
        accelerator.print(f"resumed from {ckpt} at step {step} (epoch {epoch}, batch {batch_start})")
    module, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)  # DDP-wrapped with several processes
    log = TrainLog(out / "train_log.csv", step if ckpt is not None else None, enabled=is_main)
    card = {"kind": "pretrain", "config": to_dict(cfg), "domains": cfg.domains,
            "users": int(sum(ds.n_users for ds in datasets)), "items": int(sum(ds.n_items for ds in datasets))}

    def save(epoch: int, next_batch: int) -> None:
        if is_main:
            save_training_checkpoint(
                out / f"checkpoint-{step}", model=model, item_tokenizer=item_tok, optimizer=optimizer,
                scheduler=scheduler, target_encoder=target,
                trainer_state={"step": step, "epoch": epoch, "next_batch": next_batch, "config": to_dict(cfg),
                               "precision": precision, "train_seconds": round(earlier_seconds + time.time() - start, 1)},
                card={**card, "step": step})
            prune_checkpoints(out, cfg.keep_checkpoints)

    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (is_main and cfg.progress), desc="pre-train", dynamic_ncols=True)
    start, tokens, last = time.time(), 0, {}
    module.train()
    # A resumed run that had already reached max_steps draws no batch.
    batches = batch_stream(sequences, cfg, epoch, batch_start, rank, world, corpus) if step < cfg.max_steps else iter(())
    for epoch, b, chunk in batches:
        # batch
        batch = _to_device(corpus.collate_pairs(chunk), accelerator.device)
        tokens += int(batch["history"]["attention_mask"].sum() + batch["next_item"]["attention_mask"].sum())
        # Masking draws from a generator seeded by the step: a resumed run masks identically.
        gen = masking_generator(cfg.seed, step, rank, accelerator.device)
        # forward (the whole step of pretrain_losses) → backward → clip, AdamW and schedule step
        with accelerator.accumulate(module), accelerator.autocast():
            inputs = mask_batch(batch, cfg.loss, item_tok, gen)
            outputs = module(**inputs, target_vectors=target_vectors(target, inputs), **losses_kw)
            accelerator.backward(outputs.loss)
            if accelerator.sync_gradients and cfg.optim.grad_clip:
                accelerator.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue  # a micro-batch of gradient accumulation: no optimizer step was taken
        # EMA update of the target encoder
        momentum = momentum_at(step, schedule_steps, cfg.ema_momentum_start, cfg.ema_momentum_end)
        ema_update(target, model.encoder, momentum)
        step += 1
        # log
        last = {k: float(v.detach()) for k, v in outputs.items()}
        check_health(last, step, epoch, b, cfg, out)
        bar.update(1)
        bar.set_postfix(si=f"{last['loss_si']:.3f}", mlm=f"{last['loss_mlm']:.3f}", map=f"{last['loss_map']:.3f}",
                        spread=f"{last['item_spread']:.3f}")
        if step % cfg.log_every == 0 or step == 1:
            log.append({"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **last, "momentum": momentum,
                        "negatives": cfg.batch_size * world, "tokens": tokens, "elapsed_s": round(time.time() - start, 2)})
        # export, save / stop (the export first: a run stopped by its time budget at an export step would
        # otherwise never write it, since a resumed run starts after that step)
        if step in cfg.export_steps and is_main:
            save_model_dir(out / f"step-{step}", model, item_tok, {**card, "step": step,
                                                                    "train_seconds": round(earlier_seconds + time.time() - start, 1)})
        out_of_time = cfg.max_minutes is not None and time.time() - start > cfg.max_minutes * 60
        if step >= cfg.max_steps or out_of_time:
            save(epoch, b + 1)
            break
        if step % cfg.save_every == 0:
            save(epoch, b + 1)
    bar.close()
    accelerator.wait_for_everyone()
    final = out / "final"
    if is_main:
        elapsed = time.time() - start
        card.update(step=step, last_losses=last, train_seconds=round(earlier_seconds + elapsed, 1),
                    tokens_per_s=round(tokens * world / max(elapsed, 1e-9), 1))
        save_model_dir(final, model, item_tok, card)
    accelerator.end_training()
    return final
