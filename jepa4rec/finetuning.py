"""Fine-tuning (paper Sec. 3.4): full softmax over every catalogue item, cosine / τ.

The item matrix I (every item sentence encoded alone, :class:`jepa4rec.encoding.CatalogueVectors`) is re-encoded at
the start of every epoch
(or every ``refresh_every`` steps) and held fixed in between, as the paper does to save compute;
gradients reach the shared encoder through the history side. Early stopping on validation
NDCG@10 keeps the best model directory.

Each epoch: cut pairs from the training sequences → (group by length) → per batch: collate (and, for
λ2·L_map, mask the targets), then the model's forward
(:meth:`jepa4rec.modeling.JEPA4RecForSequentialRecommendation.forward`: L_FT against the fixed matrix, + the
in-batch loss of ``item_grad: batch``, + λ2·L_map on FFN2 when ``loss.lambda_map`` > 0) → backward → clip →
AdamW and schedule step; then validate, keep the best epoch in ``best/`` and the resume state in ``last/``.

Mixed precision is ``torch.autocast`` around the forward (:func:`jepa4rec.optim.autocast`; the logits and
losses stay fp32 inside it), not Accelerate as in pre-training: Accelerate's state is one per process and cannot change its precision
once set (the experiment commands pre-train and fine-tune in one process), it picks the device itself
where fine-tuning takes ``device`` (``cuda:1``), and its fp16 path adds a loss scaler that changes the
numbers. ``auto`` autocasts to bf16 wherever the device computes it natively, a CPU with AMX-BF16 included.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batches import Pair, finetuning_pairs, group_by_length
from .builder import item_tokenizer, new_model
from .checkpoint import (is_model_dir, load_model_dir, load_training_checkpoint, recover_dir, save_model_dir,
                         save_training_checkpoint)
from .config import FinetuneConfig, to_dict, warn_changed_options
from .data import SeqRecDataset, load_dataset
from .evaluation import Cell, compute_cell_ranks, evaluate, history_mask, metrics_from_ranks
from .language_models import LANGUAGE_MODELS, is_language_model
from .masking import bert_mask, masking_generator
from .modeling import JEPA4RecForSequentialRecommendation
from .optim import (EarlyStopping, FitState, autocast, build_optimizer, build_scheduler, fit_epochs, resolve_mixed_precision,
                    resume_precision)
from .encoding import CatalogueScorer, CatalogueVectors, ItemEncoder
from .recommender import Recommender
from .significance import write_case_ranks
from .text import ItemTokenizer, TextConfig, sentence_text

logger = logging.getLogger(__name__)

# in output_dir: user,target,rank_kept,rank_excluded of the best model on the test split
TEST_RANKS_FILE = "test_ranks.csv"


def build_model(cfg: FinetuneConfig, dataset: SeqRecDataset) -> tuple:
    """(model, item tokenizer, source card): a pre-trained JEPA4Rec directory, a language model's
    encoder (fine-tuning without recommendation pre-training), or a model from scratch."""
    if cfg.init_from and not is_language_model(cfg.init_from):
        if not is_model_dir(cfg.init_from):
            raise FileNotFoundError(f"init_from={cfg.init_from} is neither a JEPA4Rec model directory nor a "
                                    f"language model ({sorted(LANGUAGE_MODELS)} or a BERT/RoBERTa folder)")
        model, tok, card = load_model_dir(cfg.init_from, model_class=JEPA4RecForSequentialRecommendation, **cfg.model)
        if cfg.max_tokens:
            tok.config.max_tokens = cfg.max_tokens
        tok.config.max_items = cfg.max_items
        if cfg.freeze_word_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        return model, tok, card
    text_cfg = TextConfig(max_items=cfg.max_items, max_tokens=cfg.max_tokens or 1024)
    # From scratch, a vocabulary is trained on the target catalogue.
    tok = item_tokenizer(text_cfg, init_from=cfg.init_from, tokenizer=cfg.tokenizer, vocab_size=cfg.vocab_size,
                         texts=(sentence_text(it, text_cfg) for it in dataset.items))
    model = new_model(tok, model_size=cfg.model_size, overrides=cfg.model, max_items=cfg.max_items,
                      max_tokens=text_cfg.max_tokens, init_from=cfg.init_from, token_init=cfg.token_init,
                      freeze_word_embeddings=cfg.freeze_word_embeddings, seed=cfg.seed,
                      model_class=JEPA4RecForSequentialRecommendation)
    return model, tok, {"source": model.config.base_model} if cfg.init_from else {}


def batch_loss(model: JEPA4RecForSequentialRecommendation, tok: ItemTokenizer, items: CatalogueVectors, chunk: list[Pair],
               item_matrix: torch.Tensor, cfg: FinetuneConfig, precision: str,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """L_FT of one batch (the model's forward): cross-entropy of cos(h_CLS, I) / τ against the fixed unit item
    matrix I (plus the model's repeat bias on each history's own items, when it is learned), the in-batch loss
    of ``item_grad: batch`` and λ2·L_map when set. This function only collates and masks."""
    device, loss_cfg, encoded = items.encoder.device, cfg.loss, items.encoded
    hist = {k: v.to(device) for k, v in tok.collate([[encoded[i] for i in p.history] for p in chunk]).items()}
    targets = torch.tensor([p.target for p in chunk], device=device)
    mask = None
    if model.score_priors.repeat.requires_grad:  # a repeat bias being learned
        mask = history_mask([p.history for p in chunk], item_matrix.shape[0], device=device)
    extra = {}
    if cfg.item_grad == "batch" or loss_cfg.lambda_map > 0:
        targets_alone = tok.collate_items([encoded[p.target] for p in chunk])
    if cfg.item_grad == "batch":
        # In-batch sequence-item contrastive loss on freshly encoded targets. Fresh vectors are not
        # mixed into the stale matrix: "the fresh column" would itself give the answer away.
        extra["target_items"] = {k: v.to(device) for k, v in targets_alone.items()}
    if loss_cfg.lambda_map > 0:
        # FFN2(h_CLS ⊕ h_{n+1,M}) → the target's vector in the (fixed) item matrix.
        ids, _ = bert_mask(targets_alone["input_ids"], targets_alone["token_type_ids"], loss_cfg.next_item_mask_ratio,
                           mask_id=tok.mask_id, vocab_size=len(tok.tokenizer), special_ids=tok.special_ids,
                           generator=generator)
        extra["masked_target_items"] = {k: v.to(device) for k, v in {**targets_alone, "input_ids": ids}.items()}
    with autocast(device, precision):
        out = model(hist, targets, item_matrix, temperature=loss_cfg.temperature, history_mask=mask,
                    lambda_map=loss_cfg.lambda_map, **extra)
    return out.loss


def train_epoch(epoch: int, model, tok: ItemTokenizer, items: CatalogueVectors, dataset: SeqRecDataset, cfg: FinetuneConfig,
                rng: np.random.Generator, optimizer, scheduler, step: int, started: float,
                precision: str, resume_at: dict | None = None,
                save_mid_epoch: Callable[[int, dict, torch.Tensor], None] | None = None) -> tuple[float, int, int]:
    """One epoch (cut short by ``max_minutes``); returns (mean loss, batches done, steps done in all).

    Every ``cfg.save_every`` steps ``save_mid_epoch(step, position, item_matrix)`` stores where the epoch stands:
    the batches done, their summed loss and the generator's state before this epoch's pairs were drawn.
    ``resume_at`` (such a position, with its item matrix under ``"item_matrix"``; the generator already set back
    to the epoch's start) continues it: the same pairs are drawn again and the batches done are skipped, so a
    run killed mid-epoch and resumed trains exactly as one that was not."""
    epoch_rng = rng.bit_generator.state
    pairs = finetuning_pairs(dataset, cfg.pairs, cfg.max_items, rng)
    if cfg.group_by_length:
        pairs = group_by_length(pairs, [tok.history_length([items.encoded[i] for i in p.history]) for p in pairs],
                                cfg.batch_size, rng)
    n_batches = len(pairs) // cfg.batch_size
    if resume_at is None:
        first, total = 0, 0.0
        item_matrix = F.normalize(items.refresh(), dim=-1).detach()
    else:  # the matrix was encoded by the model of the epoch's start (or last refresh), which is gone: it was saved
        first, total, item_matrix = resume_at["batch"], resume_at["loss_sum"], resume_at["item_matrix"]
    done = first
    model.train()
    bar = tqdm(range(first, n_batches), desc=f"fine-tune {dataset.name} epoch {epoch}", initial=first, total=n_batches,
               disable=not cfg.progress, dynamic_ncols=True)
    for b in bar:
        # The target's masking (λ2 > 0) draws from a generator seeded by the step: a resumed run masks identically.
        gen = masking_generator(cfg.seed, step)
        loss = batch_loss(model, tok, items, pairs[b * cfg.batch_size:(b + 1) * cfg.batch_size], item_matrix, cfg,
                          precision, gen)
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
            item_matrix = F.normalize(items.refresh(), dim=-1).detach()
            model.train()
        if save_mid_epoch is not None and cfg.save_every and step % cfg.save_every == 0 and done < n_batches:
            save_mid_epoch(step, {"epoch": epoch, "batch": done, "loss_sum": total, "np_generator": epoch_rng},
                           item_matrix)
        if out_of_time(cfg, started):
            break
    bar.close()
    return total / max(done, 1), done, step


def out_of_time(cfg: FinetuneConfig, started: float) -> bool:
    return bool(cfg.max_minutes) and time.time() - started > cfg.max_minutes * 60


def validation_cases(dataset: SeqRecDataset, cfg: FinetuneConfig) -> list:
    """Every validation case, or a fixed random subset of ``max_valid_users`` (drawn from ``seed``)."""
    cases = dataset.valid_cases()
    if cfg.max_valid_users and len(cases) > cfg.max_valid_users:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(cases), cfg.max_valid_users, replace=False))
        cases = [cases[i] for i in keep]
    return cases


def finetune(cfg: FinetuneConfig, dataset: SeqRecDataset | None = None, resume: bool = False) -> dict:
    """Fine-tune, early-stop on validation, test the best model; returns the result record.

    After every epoch, and every ``save_every`` steps within one, the whole training state (model, optimizer,
    scheduler, RNGs, validation history; within an epoch also its position and item matrix) is saved to
    ``<output_dir>/last``; ``resume=True`` continues from there in a later process, exactly (an epoch cut short
    by ``max_minutes`` counts as done; ``max_minutes`` is this process's budget). A finished run
    (``results.json`` written, ``last`` removed) is returned as it is."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dataset = dataset or load_dataset(cfg.dataset, root=cfg.data_root)
    dataset.require_text()
    out = Path(cfg.output_dir)
    last_dir, best_dir = out / "last", out / "best"
    if resume:  # a save killed between its two renames left the previous folder under <name>.old
        recover_dir(last_dir)
        recover_dir(best_dir)
    if resume and (out / "results.json").exists() and not last_dir.exists():
        return json.loads((out / "results.json").read_text())
    # The model (a missing or corrupt init_from) and the catalogue are checked before the output folder is made.
    model, tok, source_card = build_model(cfg, dataset)
    # The catalogue, tokenized once, serves both the training batches and the validation's scoring.
    encoder = ItemEncoder(model, tok, device=cfg.device, batch_size=cfg.eval_batch_size)
    items = CatalogueVectors(encoder, dataset.items)
    scorer = CatalogueScorer(encoder, items, dataset.train_sequences)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    precision = resolve_mixed_precision(cfg.mixed_precision, encoder.device)
    valid_cases = validation_cases(dataset, cfg)
    train_lengths = [len(seq) for seq in dataset.train_sequences() if len(seq) >= 2]
    n_pairs = sum(n - 1 for n in train_lengths) if cfg.pairs == "all" else len(train_lengths)
    # The score priors start clean (0: the paper's model): the popularity bias is only ever fitted after training
    # (popularity_bias: fit), the repeat bias too unless it is learned with the loss, as the model's parameter.
    learn_repeat = cfg.repeat_bias == "learn"
    model.score_priors.popularity_bias = 0.0
    if not learn_repeat:
        model.score_priors.repeat_bias = 0.0
    model.score_priors.repeat.requires_grad_(learn_repeat)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, max(n_pairs // cfg.batch_size, 1) * cfg.epochs)

    def validate() -> dict:
        items.refresh()
        return evaluate(scorer, valid_cases, batch_size=cfg.eval_batch_size, progress=False)

    state = FitState(EarlyStopping(cfg.patience), [])
    started = time.time()
    step, earlier_seconds = 0, 0.0
    in_epoch = None  # where a resumed epoch stands, when the run was stopped inside one
    if resume and (last_dir / "trainer_state.json").exists():
        saved = load_training_checkpoint(last_dir, model=model, optimizer=optimizer, scheduler=scheduler, device=encoder.device)
        # auto keeps the precision the run was trained in; other options than its checkpoint's are named
        precision = resume_precision(cfg.mixed_precision, encoder.device, saved.get("precision"), str(out))
        warn_changed_options(cfg, saved.get("config"), out)
        # inside an epoch: the generator goes back to the epoch's start, whose pairs are drawn again
        rng.bit_generator.state = (saved.get("in_epoch") or saved)["np_generator"]
        step, earlier_seconds = saved["step"], saved["train_seconds"]
        # A run that had early-stopped trains no more: only the test is left.
        state = FitState(EarlyStopping(cfg.patience, saved["best_score"], saved["best_epoch"], saved["stale"]),
                         saved["history"], saved["epoch"])
        if saved.get("in_epoch"):
            in_epoch = {**saved["in_epoch"], "item_matrix": saved["tensors"]["item_matrix"]}
            logger.info("resumed from %s in epoch %d after batch %d", last_dir, in_epoch["epoch"], in_epoch["batch"])
        else:
            logger.info("resumed from %s after epoch %d", last_dir, saved["epoch"])
    else:
        state.history.append({"epoch": 0, "valid": validate()})
        logger.info("epoch 0 (before fine-tuning): %s", state.history[0]["valid"])

    def one_epoch(epoch: int) -> dict:
        nonlocal step, in_epoch
        resume_at, in_epoch = in_epoch, None
        assert resume_at is None or resume_at["epoch"] == epoch, (resume_at, epoch)
        loss, done, step = train_epoch(epoch, model, tok, items, dataset, cfg, rng, optimizer, scheduler, step, started,
                                       precision, resume_at, save_mid_epoch)
        row = {"loss": loss, "steps": done, "elapsed_s": round(time.time() - started, 1)}
        if learn_repeat:
            row["repeat_bias"] = model.score_priors.repeat_bias
        return row

    def keep_best(epoch: int, valid: dict) -> None:
        save_model_dir(best_dir, model, tok, {"kind": "finetune", "dataset": dataset.name, "epoch": epoch, "valid": valid,
                                              "init_from": cfg.init_from, "config": to_dict(cfg), "source": source_card})

    def save_last(state: FitState, at_step: int | None = None, in_epoch: dict | None = None,
                  item_matrix: torch.Tensor | None = None) -> None:
        """The resume state after an epoch, or inside one (train_epoch's position ``in_epoch`` at ``at_step``,
        with the item matrix it scores against)."""
        save_training_checkpoint(
            last_dir, model=model, item_tokenizer=tok, optimizer=optimizer, scheduler=scheduler,
            trainer_state={"epoch": state.epoch, "step": step if at_step is None else at_step, "history": state.history,
                           "best_score": state.stopper.best_score, "best_epoch": state.stopper.best_epoch,
                           "stale": state.stopper.stale, "np_generator": rng.bit_generator.state, "in_epoch": in_epoch,
                           "precision": precision, "config": to_dict(cfg),
                           "train_seconds": earlier_seconds + time.time() - started},
            trainer_tensors=None if item_matrix is None else {"item_matrix": item_matrix})

    def save_mid_epoch(at_step: int, in_epoch: dict, item_matrix: torch.Tensor) -> None:
        save_last(state, at_step, in_epoch, item_matrix)

    state = fit_epochs(state, cfg.epochs, one_epoch, validate, cfg.select_metric, on_best=keep_best,
                       on_epoch_end=save_last, stop_early=lambda: out_of_time(cfg, started),
                       log=lambda row: logger.info("epoch %d: %s", row["epoch"], row))
    history, stopper = state.history, state.stopper
    train_seconds = earlier_seconds + time.time() - started
    if stopper.best_epoch is None:  # fine-tuning never beat epoch 0 is still a result: keep the initial weights
        save_model_dir(best_dir, model, tok, {"kind": "finetune", "dataset": dataset.name, "epoch": 0})
    repeat_fit = best = None
    if "fit" in (cfg.repeat_bias, cfg.popularity_bias):
        from .calibration import calibrate  # fitted on the whole validation split, written into best/ itself

        started_fit = time.time()
        repeat_fit, best = calibrate(best_dir, dataset, best_dir, popularity=cfg.popularity_bias == "fit",
                                     keep_repeat_bias=cfg.repeat_bias != "fit", device=cfg.device,
                                     batch_size=cfg.eval_batch_size, use_cache=False)
        train_seconds += time.time() - started_fit
        logger.info("score priors fitted on %d validation users (repeat bias %+.4f, popularity bias %+.4f): %s",
                    repeat_fit["users"], repeat_fit["repeat_bias"], repeat_fit["popularity_bias"], repeat_fit["after"])
    predictor_fit = None
    if cfg.fit_predictor:
        from .predictor_fitting import fit_predictor_dir  # FFN2 alone, on the fixed encoder, written into best/

        started_fit = time.time()
        predictor_fit, best = fit_predictor_dir(best_dir, dataset, best_dir, device=cfg.device,
                                                batch_size=cfg.eval_batch_size, progress=cfg.progress)
        train_seconds += time.time() - started_fit
        logger.info("next-item predictor fitted (best epoch %d): validation MRR %s -> %s",
                    predictor_fit["best_epoch"], predictor_fit["valid_mrr_before"], predictor_fit["valid_mrr_after"])
    return test_best(cfg, dataset, history, stopper.best_epoch, train_seconds, repeat_fit, best, predictor_fit)


def test_best(cfg: FinetuneConfig, dataset: SeqRecDataset, history: list[dict], best_epoch: int | None,
              train_seconds: float, repeat_fit: dict | None = None, best: Recommender | None = None,
              predictor_fit: dict | None = None) -> dict:
    """Test ``<output_dir>/best`` (``best``: a Recommender already serving it), write ``results.json`` (and the
    test into best's card) and each test user's rank (``test_ranks.csv``), drop ``last``."""
    out = Path(cfg.output_dir)
    best_dir = out / "best"
    best = best or Recommender.from_pretrained(best_dir, dataset, device=cfg.device, batch_size=cfg.eval_batch_size,
                                               use_cache=False)
    cases = dataset.test_cases()
    # Both protocols from one scoring pass; each user's rank in both is kept, so that two finished runs can be
    # compared user by user (python -m jepa4rec.compare) without testing them again.
    ranks = compute_cell_ranks(best, cases, [Cell("kept"), Cell("excluded")], batch_size=cfg.eval_batch_size,
                               progress=cfg.progress, desc="test")
    write_case_ranks(out / TEST_RANKS_FILE, dataset, cases, ranks)
    test, test_excluded = ({**metrics_from_ranks(ranks[cell]), "users": len(cases)} for cell in ("kept", "excluded"))
    result = {"dataset": dataset.name, "init_from": cfg.init_from, "best_epoch": best_epoch,
              "valid_before": history[0]["valid"], "history": history, "test": test, "test_excluded": test_excluded,
              "precision": resolve_mixed_precision(cfg.mixed_precision, best.device),
              "train_seconds": round(train_seconds, 1), "seed": cfg.seed, "threads": torch.get_num_threads(),
              "repeat_bias": best.repeat_bias, "popularity_bias": best.popularity_bias, "config": to_dict(cfg)}
    if repeat_fit is not None:
        result["repeat_bias_fit"] = repeat_fit
    if predictor_fit is not None:
        result["predictor_fit"] = predictor_fit
    card = json.loads((best_dir / "training_card.json").read_text())
    card.update(test=test, test_excluded=test_excluded, train_seconds=round(train_seconds, 1))
    (best_dir / "training_card.json").write_text(json.dumps(card, indent=2, default=str))
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    shutil.rmtree(out / "last", ignore_errors=True)  # the resume state of a finished run is no longer needed
    return result
