"""Fit the next-item predictor FFN2 of a fine-tuned model to its own item space, the encoder held fixed.

The app's "next-item predictor" scoring ranks items by cos(FFN2(h_CLS ⊕ h_{n+1,M}), h_i), the paper's
reveal case study. Pre-training trains FFN2 well: zero-shot on ml-100k, 200 test users, its MRR goes
0.004 → 0.41 → 0.83 → 0.995 with 0 / 25 / 50 / 100% of the target's words shown. Fine-tuning breaks it,
even with λ2·L_map kept (0.036 at 100%, below the history alone), for two reasons measured on the
ml-100k model fine-tuned that way:

* **A crowded item space.** Fine-tuning at τ = 0.05 packs the catalogue into a narrow cone (mean
  item-item cosine 0.82 on ml-100k); FFN2's output keeps its pre-training precision (cosine 0.91 with the
  target) but at that spread 140 items are closer. A prediction must be far more exact than pre-training
  needed.
* **Another masking.** Fine-tuning's L_map masks the target's tokens the BERT way at one ratio, while the
  app hides whole value words, any share from none to all; and the item matrix it maps onto moves every
  epoch.

This fit trains FFN2 alone on the dataset's training pairs, against the fixed item vectors the app ranks,
with the app's masking (whole value words hidden, a share drawn uniformly, in random order), and keeps the
epoch whose validation MRR, averaged over the reveal shares the demo shows, is best. Nothing else changes:
the encoder, the score priors and so every ranking from the history alone stay as they were. Two
objectives: ``mse``, the paper's mapping loss ‖ĥ − h‖² on unit vectors, and ``softmax``, the full-softmax
cross-entropy of cos(ĥ, h_i) / τ over every item (fine-tuning's ranking loss, put on the predictor).

``python -m jepa4rec.fit_predictor`` is the command. The test split is never read.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batches import finetuning_pairs
from .checkpoint import resave_model_dir
from .data import SeqRecDataset
from .errors import ConfigError, UserError
from .evaluation import per_case_metric, rank_of_targets
from .recommender import Recommender

OBJECTIVES = ("softmax", "mse")
HINT = "see python -m jepa4rec.fit_predictor --help"


@dataclass
class PredictorFitConfig:
    """How FFN2 is fitted (every field is a ``fit_predictor`` option)."""

    objective: str = "softmax"        # "softmax" (ranking over every item) or "mse" (the paper's L_map)
    cuts_per_user: int = 5            # training pairs drawn from each user's training sequence
    masks_per_pair: int = 2           # masked copies of each pair's target, each at its own uniform share
    max_pairs: int | None = 5000      # cap on the pairs (their histories are encoded once: the slow part)
    epochs: int = 100
    patience: int = 6                 # epochs without a better validation score before stopping
    batch_size: int = 64
    lr: float = 1e-3
    temperature: float = 0.05         # τ of the softmax objective
    valid_users: int | None = 500     # validation users (the first N of the split; None: all)
    valid_shares: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    seed: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}", hint=HINT)
        for name in ("cuts_per_user", "masks_per_pair", "epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}", hint=HINT)
        if not self.valid_shares or any(not 0 <= s <= 1 for s in self.valid_shares):
            raise ConfigError(f"valid_shares must be shares in [0, 1], got {self.valid_shares}", hint=HINT)


def _encode_in_chunks(fn, xs: list, desc: str, progress: bool, chunk: int = 256) -> torch.Tensor:
    out = [fn(xs[i:i + chunk]).float() for i in tqdm(range(0, len(xs), chunk), desc=desc, disable=not progress,
                                                      dynamic_ncols=True)]
    return torch.cat(out) if out else torch.zeros(0)


def cosine_mrr(queries: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean reciprocal rank of each target among every item by cosine to its query (no priors, history kept:
    the predictor's own ranking, as the fit compares it)."""
    with torch.no_grad():
        ranks = rank_of_targets(F.normalize(queries.float(), dim=-1) @ items.T, targets)
    return float(per_case_metric(ranks.cpu(), "MRR").mean())


def fit_predictor(rec: Recommender, dataset: SeqRecDataset, cfg: PredictorFitConfig | None = None,
                  progress: bool = True) -> dict:
    """Fit ``rec.model``'s FFN2 in place (see the module's docstring); returns the fit's record: the
    validation MRR at each share before and after, each epoch's, the best epoch and the pairs used."""
    cfg = cfg or PredictorFitConfig()
    started = time.time()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    max_items = rec.tok.config.max_items
    pairs = [p for _ in range(cfg.cuts_per_user) for p in finetuning_pairs(dataset, "sample", max_items, rng)]
    if cfg.max_pairs and len(pairs) > cfg.max_pairs:
        pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), cfg.max_pairs, replace=False))]
    if len(pairs) < cfg.batch_size:
        raise UserError(f"{dataset.name}: {len(pairs)} training pairs do not fill one batch of {cfg.batch_size}",
                        hint="raise --cuts-per-user or --max-pairs")
    cases = dataset.valid_cases()[:cfg.valid_users] if cfg.valid_users else dataset.valid_cases()
    if not cases:
        raise UserError(f"{dataset.name} has no validation users to choose the epoch on")

    # The encoder is fixed: every history and masked target is encoded once, here.
    h_train = _encode_in_chunks(rec.embed_history, [list(p.history) for p in pairs], "histories", progress)
    shares = rng.uniform(0.0, 1.0, size=(len(pairs), cfg.masks_per_pair))
    masked_items = [rec.masked_item(p.target, float(shares[i, k]), "random", seed=cfg.seed + i * cfg.masks_per_pair + k)[0]
                    for i, p in enumerate(pairs) for k in range(cfg.masks_per_pair)]
    m_train = _encode_in_chunks(rec.embed_encoded_items, masked_items, "masked targets", progress)
    h_valid = _encode_in_chunks(rec.embed_history, [list(c.history[-max_items:]) for c in cases], "validation", progress)
    m_valid = {s: _encode_in_chunks(rec.embed_encoded_items, [rec.masked_item(c.target, s)[0] for c in cases],
                                    f"validation {s:.0%}", False) for s in cfg.valid_shares}
    items = rec.unit_item_vectors.float()
    device = items.device  # the encoder's: every index and target lives beside the vectors
    pair_of = torch.arange(len(pairs), device=device).repeat_interleave(cfg.masks_per_pair)
    t_train = torch.tensor([p.target for p in pairs], device=device)[pair_of]
    t_valid = torch.tensor([c.target for c in cases], device=device)

    predictor = rec.model.next_item_predictor
    dtype = next(predictor.parameters()).dtype
    work = copy.deepcopy(predictor).float()

    def validate(p) -> dict[str, float]:
        p.eval()
        with torch.no_grad():
            return {f"{s:.2f}": cosine_mrr(p(h_valid, m_valid[s]), items, t_valid) for s in cfg.valid_shares}

    def score(curve: dict[str, float]) -> float:
        return float(np.mean(list(curve.values())))

    before = validate(work)
    best, best_epoch, best_state = score(before), 0, copy.deepcopy(work.state_dict())
    optimizer = torch.optim.AdamW(work.parameters(), lr=cfg.lr)
    epochs = []
    for epoch in range(1, cfg.epochs + 1):
        work.train()
        order = torch.randperm(len(t_train), device=device)
        total, n = 0.0, 0
        for b in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            pred = F.normalize(work(h_train[pair_of[idx]], m_train[idx]), dim=-1)
            if cfg.objective == "softmax":
                loss = F.cross_entropy(pred @ items.T / cfg.temperature, t_train[idx])
            else:  # the paper's L_map on unit vectors
                loss = (pred - items[t_train[idx]]).pow(2).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, n = total + float(loss.detach()), n + 1
        curve = validate(work)
        epochs.append({"epoch": epoch, "loss": total / n, "valid_mrr": curve, "valid_mean": score(curve)})
        if progress:
            print(f"epoch {epoch}: loss {total / n:.4f}, validation MRR "
                  + " / ".join(f"{v:.4f}" for v in curve.values()) + f" (mean {score(curve):.4f})", flush=True)
        if score(curve) > best:
            best, best_epoch, best_state = score(curve), epoch, copy.deepcopy(work.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    work.load_state_dict(best_state)
    predictor.load_state_dict({k: v.to(dtype) for k, v in work.state_dict().items()})
    return {"config": {**asdict(cfg), "valid_shares": list(cfg.valid_shares)}, "pairs": len(pairs),
            "masked_targets": len(t_train), "valid_users": len(cases), "history_only_mrr": cosine_mrr(h_valid, items, t_valid),
            "valid_mrr_before": before, "valid_mrr_after": validate(work), "best_epoch": best_epoch,
            "epochs": epochs, "seconds": round(time.time() - started, 1)}


def fit_predictor_dir(checkpoint: str | Path, dataset: SeqRecDataset, output: str | Path,
                      cfg: PredictorFitConfig | None = None, *, device: str | None = None, batch_size: int = 128,
                      progress: bool = True) -> tuple[dict, Recommender]:
    """:func:`fit_predictor` on a model directory, the result saved at ``output`` in the precision the source
    stores, its training card recording the fit (``predictor_fit``)."""
    rec = Recommender.from_pretrained(checkpoint, dataset, device=device, batch_size=batch_size, use_cache=False)
    fit = fit_predictor(rec, dataset, cfg, progress)
    resave_model_dir(checkpoint, output, rec.model, rec.tok,
                     predictor_fit={**fit, "dataset": dataset.name, "source": str(checkpoint)})
    return fit, rec
