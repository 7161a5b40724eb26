"""The score priors: a repeat bias and a popularity bias, fitted on the validation split.

A text model scores items by what they say, which leaves out two things a shop's log knows:

* **Repeats.** A text model's history vector is built from the history's own words, so the items a
  user already bought are the ones most like it: on Scientific a fine-tuned JEPA4Rec puts about two of
  them in every top 10, while fewer than 1% of next purchases repeat one. The *repeat bias* is one
  number added to the score of every item already in the history.
* **Popularity.** Text says nothing of how often an item sells. The *popularity bias* is one weight on
  each item's ``log(1 + count)`` in the training split (:func:`jepa4rec.evaluation.item_log_popularity`).

Both are fitted after fine-tuning by minimising the fine-tuning loss (cross-entropy of score / τ over
all items; convex in the two numbers) on the validation split, whose targets the counts never include,
and stored in the model's ``config.json``. History items still compete and every item is ranked (the
evaluation protocol is unchanged). 0 is the paper's model. The test split is never read.

``python -m jepa4rec.calibrate`` is the command; ``finetune`` with ``repeat_bias: fit`` (and
``popularity_bias: fit``) calls :func:`calibrate` before its test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from .config import FinetuneLossConfig
from .data import SeqRecDataset
from .data.dataset import EvalCase
from .evaluation import (add_score_priors, batches_by_history_length, history_mask, metrics_from_ranks,
                         rank_of_targets, with_score_priors)
from .recommender import Recommender

BIAS_BOUND = 2.0  # cosines lie in [-1, 1]: a repeat bias of ±2 already moves a history item past every other
# log(1 + count) reaches about 7 for an item bought 1,000 times: a weight of ±0.5 moves it by 3.5, past any cosine.
POPULARITY_BOUND = 0.5


class Calibrated:
    """Any scorer (``score_all(histories)``) with score priors added: how they are put on baselines that
    have no config of their own (a Recommender carries its own)."""

    def __init__(self, scorer, repeat_bias: float = 0.0, popularity_bias: float = 0.0,
                 log_popularity: torch.Tensor | None = None):
        self.scorer, self.repeat_bias, self.popularity_bias = scorer, float(repeat_bias), float(popularity_bias)
        self.log_popularity = log_popularity

    def score_all(self, histories: list[list[int]]) -> torch.Tensor:
        return with_score_priors(self.scorer.score_all(histories), histories, self.repeat_bias,
                                 self.popularity_bias, self.log_popularity)


def fit_score_priors(scorer, cases: Sequence[EvalCase], temperature: float = FinetuneLossConfig.temperature,
                     log_popularity: torch.Tensor | None = None, repeat_bias: float | None = None,
                     batch_size: int = 256) -> dict:
    """The repeat bias b (and, given ``log_popularity``, the popularity bias β) minimising the mean
    cross-entropy of ``(score + b·[item in history] + β·log_popularity) / temperature`` over ``cases``
    (convex in b and β), with the cases' metrics before and after. ``scorer``: a Recommender or any
    scorer whose scores are cosines. ``repeat_bias``: hold b at this value instead of fitting it (a bias
    learned with the loss).

    A Recommender is scored without any prior it already has, so fitting twice gives the same numbers."""
    if not cases:
        raise ValueError("no cases to fit the score priors on")
    saved = {name: getattr(scorer, name) for name in ("repeat_bias", "popularity_bias") if hasattr(scorer, name)}
    for name in saved:
        setattr(scorer, name, 0.0)
    # Batched as the ranking batches them, so the fit's metrics are the ranking's; the rows stay in that
    # order (the loss and the metrics are means over them).
    batches = batches_by_history_length(cases, batch_size)
    try:
        scores, masks = [], []
        with torch.no_grad():
            for idx in batches:
                histories = [list(cases[i].history) for i in idx]
                scores.append(scorer.score_all(histories).float().cpu())
                masks.append(history_mask(histories, scores[-1].shape[1]))
    finally:
        for name, value in saved.items():
            setattr(scorer, name, value)
    S, M = torch.cat(scores), torch.cat(masks).float()
    P = log_popularity.float().cpu() if log_popularity is not None else torch.zeros(S.shape[1])
    targets = torch.tensor([cases[i].target for idx in batches for i in idx])
    rows = torch.arange(len(cases))
    free = (["repeat_bias"] if repeat_bias is None else []) + (["popularity_bias"] if log_popularity is not None else [])
    bounds = {"repeat_bias": (-BIAS_BOUND, BIAS_BOUND), "popularity_bias": (-POPULARITY_BOUND, POPULARITY_BOUND)}

    def priors(x) -> dict:
        values = {"repeat_bias": 0.0 if repeat_bias is None else float(repeat_bias), "popularity_bias": 0.0}
        values.update(zip(free, x))
        return values

    def scored(values: dict) -> torch.Tensor:
        return add_score_priors(S, M, values["repeat_bias"], values["popularity_bias"], P)

    def loss(values: dict) -> torch.Tensor:
        logits = scored(values) / temperature
        return (torch.logsumexp(logits, dim=1) - logits[rows, targets]).mean()

    def loss_and_grad(x):
        x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = loss(priors(list(x.float())))
        value.backward()
        return float(value.detach()), x.grad.numpy()

    fitted = priors([])
    if free:
        fit = minimize(loss_and_grad, np.zeros(len(free)), jac=True, method="L-BFGS-B",
                       bounds=[bounds[name] for name in free], options={"gtol": 1e-7})
        fitted = priors([float(v) for v in fit.x])

    def ranked(values: dict) -> dict:
        return metrics_from_ranks(rank_of_targets(scored(values), targets))

    start = {"repeat_bias": 0.0, "popularity_bias": 0.0}
    return {
        **fitted,
        "fitted": free,
        "temperature": temperature,
        "users": len(cases),
        "repeat_share": float(M[rows, targets].mean()),  # next purchases already in the history
        "loss_before": float(loss(start)),
        "loss_after": float(loss(fitted)),
        "before": ranked(start),
        "after": ranked(fitted),
    }


def write_calibrated(checkpoint: str | Path, output: str | Path, fit: dict) -> Path:
    """A copy of ``checkpoint`` at ``output`` (or itself, updated) whose config carries the fitted priors and
    whose training card records the fit."""
    src, out = Path(checkpoint), Path(output)
    if out.resolve() != src.resolve():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(src, out)
    config_path, card_path = out / "config.json", out / "training_card.json"
    config = json.loads(config_path.read_text())
    config["repeat_bias"] = fit["repeat_bias"]
    config["popularity_bias"] = fit.get("popularity_bias", 0.0)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card["repeat_bias_fit"] = {**fit, "source": str(src)}
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return out


def calibrate(checkpoint: str | Path, dataset: SeqRecDataset, output: str | Path, *, popularity: bool = False,
              keep_repeat_bias: bool = False, max_users: int | None = None,
              temperature: float = FinetuneLossConfig.temperature, seed: int = 0, device: str | None = None,
              batch_size: int = 128, use_cache: bool = True) -> tuple[dict, Recommender]:
    """Fit the score priors of a model directory on ``dataset``'s validation split and write them to ``output``:
    the repeat bias (or, with ``keep_repeat_bias``, the one the model has, e.g. learned with the loss) and,
    with ``popularity``, the popularity bias over ``dataset``'s training-split counts.

    Returns the fit and the Recommender that scored it, now carrying the fitted priors: its catalogue is
    encoded already, so the test split can be ranked without loading ``output`` and encoding it again."""
    rec = Recommender.from_pretrained(checkpoint, dataset, device=device, batch_size=batch_size, use_cache=use_cache)
    cases = dataset.valid_cases()
    if max_users and max_users < len(cases):
        pick = np.sort(np.random.default_rng(seed).choice(len(cases), max_users, replace=False))
        cases = [cases[i] for i in pick]
    fit = {**fit_score_priors(rec, cases, temperature, log_popularity=rec.log_popularity if popularity else None,
                              repeat_bias=rec.repeat_bias if keep_repeat_bias else None), "split": "valid"}
    write_calibrated(checkpoint, output, fit)
    rec.repeat_bias = rec.model.config.repeat_bias = fit["repeat_bias"]
    rec.popularity_bias = rec.model.config.popularity_bias = fit["popularity_bias"]
    return fit, rec
