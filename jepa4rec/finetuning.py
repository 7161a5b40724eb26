"""Fine-tuning (paper Sec. 3.4): full softmax over every catalogue item, cosine / τ.

The item matrix I (every item sentence encoded alone) is re-encoded at the start of every epoch
(or every ``refresh_every`` steps) and held fixed in between, as the paper does to save compute;
gradients reach the shared encoder through the history side. Early stopping on validation
NDCG@10 keeps the best model directory.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batches import Pair, group_by_length
from .checkpoint import (is_model_dir, load_model_dir, load_training_checkpoint, recover_dir, save_model_dir,
                         save_training_checkpoint)
from .config import FinetuneConfig, to_dict
from .data import SeqRecDataset, load_dataset
from .evaluation import evaluate
from .losses import contrastive_loss, mapping_loss
from .masking import bert_mask
from .language_models import LANGUAGE_MODELS, is_language_model, language_model_dir
from .recommend import Recommender
from .text import ItemTokenizer, TextConfig, load_tokenizer, sentence_text, train_tokenizer
from .modeling import new_model
from .training import build_optimizer, build_scheduler, resolve_mixed_precision

logger = logging.getLogger(__name__)


def training_pairs(dataset: SeqRecDataset, mode: str, max_items: int, rng: np.random.Generator) -> list[Pair]:
    """Pairs from the training part (``seq[:-2]``) of every user's sequence."""
    if mode not in ("all", "sample"):
        raise ValueError(f"pairs must be 'all' or 'sample', got {mode!r}")
    pairs = []
    for seq in dataset.train_sequences():
        if len(seq) < 2:
            continue
        cuts = range(1, len(seq)) if mode == "all" else [int(rng.integers(1, len(seq)))]
        for t in cuts:
            pairs.append(Pair(0, tuple(seq[max(0, t - max_items):t]), seq[t]))
    return [pairs[i] for i in rng.permutation(len(pairs))]


def build_model(cfg: FinetuneConfig, dataset: SeqRecDataset):
    """(model, item tokenizer, source card): a pre-trained JEPA4Rec directory, a language model's
    encoder (fine-tuning without recommendation pre-training), or a model from scratch."""
    if cfg.init_from and not is_language_model(cfg.init_from):
        if not is_model_dir(cfg.init_from):
            raise FileNotFoundError(f"init_from={cfg.init_from} is neither a JEPA4Rec model directory nor a "
                                    f"language model ({sorted(LANGUAGE_MODELS)} or a BERT/RoBERTa folder)")
        model, tok, card = load_model_dir(cfg.init_from, **cfg.model)
        if cfg.max_tokens:
            tok.config.max_tokens = cfg.max_tokens
        tok.config.max_items = cfg.max_items
        if cfg.freeze_word_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        return model, tok, card
    text_cfg = TextConfig(max_items=cfg.max_items, max_tokens=cfg.max_tokens or 1024)
    if cfg.init_from:
        tok = ItemTokenizer(load_tokenizer(language_model_dir(cfg.init_from)), text_cfg)
    elif cfg.tokenizer:
        tok = ItemTokenizer(load_tokenizer(cfg.tokenizer), text_cfg)
    else:
        tok = ItemTokenizer(train_tokenizer((sentence_text(it, text_cfg) for it in dataset.items), cfg.vocab_size), text_cfg)
    model = new_model(tok, model_size=cfg.model_size, overrides=cfg.model, max_items=cfg.max_items,
                      max_tokens=text_cfg.max_tokens, init_from=cfg.init_from, token_init=cfg.token_init,
                      freeze_word_embeddings=cfg.freeze_word_embeddings, seed=cfg.seed)
    return model, tok, {"source": model.config.base_model} if cfg.init_from else {}


def finetune(cfg: FinetuneConfig, dataset: SeqRecDataset | None = None, resume: bool = False) -> dict:
    """Fine-tune, early-stop on validation, test the best model; returns the result record.

    After every epoch the whole training state (model, optimizer, scheduler, RNGs, validation history)
    is saved to ``<output_dir>/last``; ``resume=True`` continues from there in a later process (an epoch
    cut short by ``max_minutes`` counts as done; ``max_minutes`` is this process's budget). A finished
    run (``results.json`` written, ``last`` removed) is returned as it is."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dataset = dataset or load_dataset(cfg.dataset, root=cfg.data_root)
    dataset.require_text()
    out = Path(cfg.output_dir)
    last_dir = out / "last"
    if resume:  # a save killed between its two renames left the previous folder under <name>.old
        recover_dir(last_dir)
        recover_dir(out / "best")
    if resume and (out / "results.json").exists() and not last_dir.exists():
        return json.loads((out / "results.json").read_text())
    # The model (a missing or corrupt init_from) and the catalogue are checked before the output folder is made.
    model, tok, source_card = build_model(cfg, dataset)
    rec = Recommender(model, tok, dataset, device=cfg.device, batch_size=cfg.eval_batch_size, use_cache=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    device = rec.device
    # rec.encoded (the catalogue tokenized once) serves both training batches and scoring.
    mp = resolve_mixed_precision(cfg.mixed_precision) if device.type == "cuda" else "no"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)

    valid_cases = dataset.valid_cases()
    if cfg.max_valid_users and len(valid_cases) > cfg.max_valid_users:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(valid_cases), cfg.max_valid_users, replace=False))
        valid_cases = [valid_cases[i] for i in keep]

    train_lengths = [len(seq) for seq in dataset.train_sequences() if len(seq) >= 2]
    n_pairs = sum(n - 1 for n in train_lengths) if cfg.pairs == "all" else len(train_lengths)
    steps_per_epoch = max(n_pairs // cfg.batch_size, 1)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch * cfg.epochs)

    def validate() -> dict:
        rec.refresh_item_vectors()
        return evaluate(rec, valid_cases, batch_size=cfg.eval_batch_size, progress=False)

    history: list[dict] = []
    best_score, best_epoch, stale = -math.inf, None, 0
    best_dir = out / "best"
    start = time.time()
    step, first_epoch, earlier_seconds = 0, 1, 0.0
    if resume and (last_dir / "trainer_state.json").exists():
        state = load_training_checkpoint(last_dir, model=model, optimizer=optimizer, scheduler=scheduler, device=device)
        rng.bit_generator.state = state["np_generator"]
        history, step, earlier_seconds = state["history"], state["step"], state["train_seconds"]
        best_score, best_epoch, stale = state["best_score"], state["best_epoch"], state["stale"]
        first_epoch = state["epoch"] + 1
        initial = history[0]["valid"]
        logger.info("resumed from %s after epoch %d", last_dir, state["epoch"])
        if stale >= cfg.patience:
            first_epoch = cfg.epochs + 1  # it had early-stopped: only the test is left
    else:
        initial = validate()
        history.append({"epoch": 0, "valid": initial})
        logger.info("epoch 0 (before fine-tuning): %s", initial)
    for epoch in range(first_epoch, cfg.epochs + 1):
        pairs = training_pairs(dataset, cfg.pairs, cfg.max_items, rng)
        if cfg.group_by_length:
            pairs = group_by_length(pairs, [tok.history_length([rec.encoded[i] for i in p.history]) for p in pairs],
                                    cfg.batch_size, rng)
        n_batches = len(pairs) // cfg.batch_size
        model.train()
        item_matrix = F.normalize(rec.refresh_item_vectors(), dim=-1).detach()
        model.train()
        total, done, bar = 0.0, 0, tqdm(range(n_batches), desc=f"fine-tune {dataset.name} epoch {epoch}",
                                disable=not cfg.progress, dynamic_ncols=True)
        for b in bar:
            chunk = pairs[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            hist = {k: v.to(device) for k, v in tok.collate([[rec.encoded[i] for i in p.history] for p in chunk]).items()}
            targets = torch.tensor([p.target for p in chunk], device=device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                h_raw = model.encode(hist).float()
                h = F.normalize(h_raw, dim=-1)
            loss = F.cross_entropy(h @ item_matrix.T / cfg.temperature, targets)
            if cfg.item_grad == "batch":
                # In-batch sequence-item contrastive loss on freshly encoded targets. Fresh vectors are not
                # mixed into the stale matrix: "the fresh column" would itself give the answer away.
                items = {k: v.to(device) for k, v in tok.collate_items([rec.encoded[p.target] for p in chunk]).items()}
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    fresh = model.encode(items).float()
                loss = loss + contrastive_loss(h_raw, fresh, cfg.temperature, targets, gather=False)
            if cfg.lambda_map > 0:
                # FFN2(h_CLS ⊕ h_{n+1,M}) → the target's vector in the (fixed) item matrix.
                nxt = tok.collate_items([rec.encoded[p.target] for p in chunk])
                ids, _ = bert_mask(nxt["input_ids"], nxt["token_type_ids"], cfg.next_item_mask_ratio,
                                   mask_id=tok.mask_id, vocab_size=len(tok.tokenizer), special_ids=tok.special_ids)
                nxt = {k: v.to(device) for k, v in {**nxt, "input_ids": ids}.items()}
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    pred = model.predict_next(h_raw, model.encode(nxt).float()).float()
                loss = loss + cfg.lambda_map * mapping_loss(pred, item_matrix[targets], normalize=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            total += loss.item()
            done += 1
            bar.set_postfix(loss=f"{total / done:.3f}")
            if cfg.refresh_every and step % cfg.refresh_every == 0:
                item_matrix = F.normalize(rec.refresh_item_vectors(), dim=-1).detach()
                model.train()
            if cfg.max_minutes and time.time() - start > cfg.max_minutes * 60:
                break
        bar.close()
        valid = validate()
        history.append({"epoch": epoch, "loss": total / max(done, 1), "steps": done, "valid": valid,
                        "elapsed_s": round(time.time() - start, 1)})
        score = valid[cfg.select_metric]
        logger.info("epoch %d: loss %.4f valid %s", epoch, total / max(done, 1), valid)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            save_model_dir(best_dir, model, tok, {"kind": "finetune", "dataset": dataset.name, "epoch": epoch,
                                                  "valid": valid, "init_from": cfg.init_from, "config": to_dict(cfg),
                                                  "source": source_card})
        else:
            stale += 1
        save_training_checkpoint(
            last_dir, model=model, item_tokenizer=tok, optimizer=optimizer, scheduler=scheduler,
            trainer_state={"epoch": epoch, "step": step, "history": history, "best_score": best_score,
                           "best_epoch": best_epoch, "stale": stale, "np_generator": rng.bit_generator.state,
                           "train_seconds": earlier_seconds + time.time() - start})
        if stale >= cfg.patience or (cfg.max_minutes and time.time() - start > cfg.max_minutes * 60):
            break
    train_seconds = earlier_seconds + time.time() - start
    if best_epoch is None:  # fine-tuning never beat epoch 0 is still a result: keep the initial weights
        save_model_dir(best_dir, model, tok, {"kind": "finetune", "dataset": dataset.name, "epoch": 0})
    best = Recommender.from_pretrained(best_dir, dataset, device=cfg.device, batch_size=cfg.eval_batch_size, use_cache=False)
    test = evaluate(best, dataset.test_cases(), batch_size=cfg.eval_batch_size, progress=cfg.progress, desc="test")
    result = {"dataset": dataset.name, "init_from": cfg.init_from, "best_epoch": best_epoch, "valid_before": initial,
              "history": history, "test": test, "train_seconds": round(train_seconds, 1), "seed": cfg.seed,
              "threads": torch.get_num_threads(),
              "config": to_dict(cfg)}
    card = json.loads((best_dir / "training_card.json").read_text())
    card.update(test=test, train_seconds=round(train_seconds, 1))
    (best_dir / "training_card.json").write_text(json.dumps(card, indent=2, default=str))
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    shutil.rmtree(last_dir, ignore_errors=True)  # the resume state of a finished run is no longer needed
    return result
