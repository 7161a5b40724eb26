"""The repeat bias: one score offset for items already in the history, fitted on the validation split.

A text model's history vector is built from the history's own words, so the items a user already bought
are the ones most like it: on Scientific a fine-tuned JEPA4Rec puts about two of them in every top 10,
while fewer than 1% of next purchases repeat one. The repeat bias is one number added to the score of
every item already in the history; it is fitted here, after fine-tuning, by minimising the fine-tuning
loss (cross-entropy of score / τ over all items) on the validation split, and stored in the model's
``config.json``. History items still compete (the evaluation protocol is unchanged): the model has
learned from held-out purchases how often people rebuy. 0 is the paper's model. The test split is never
read.

``python -m jepa4rec.calibrate`` is the command; ``finetune`` with ``repeat_bias: fit`` calls
:func:`calibrate` before its test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from .config import FinetuneLossConfig
from .data import SeqRecDataset
from .data.dataset import EvalCase
from .evaluation import history_mask, metrics_from_ranks, rank_of_targets, with_repeat_bias
from .recommender import Recommender

BIAS_BOUND = 2.0  # cosines lie in [-1, 1]: a bias of ±2 already moves a history item past every other


class RepeatBiased:
    """Any scorer (``score_all(histories)``) with a repeat bias added to its history items: how the
    bias is put on baselines that have no config of their own (a Recommender carries its own)."""

    def __init__(self, scorer, repeat_bias: float):
        self.scorer, self.repeat_bias = scorer, float(repeat_bias)

    def score_all(self, histories: list[list[int]]) -> torch.Tensor:
        return with_repeat_bias(self.scorer.score_all(histories), histories, self.repeat_bias)


def fit_repeat_bias(scorer, cases: Sequence[EvalCase], temperature: float = FinetuneLossConfig.temperature,
                    batch_size: int = 256) -> dict:
    """The repeat bias b minimising mean cross-entropy of ``(score + b·[item in history]) / temperature``
    over ``cases`` (convex in b), with the cases' metrics before and after. ``scorer``: a Recommender or
    any scorer whose scores are cosines.

    A Recommender is scored without any bias it already has, so fitting twice gives the same b."""
    if not cases:
        raise ValueError("no cases to fit the repeat bias on")
    saved = getattr(scorer, "repeat_bias", None)
    if saved is not None:
        scorer.repeat_bias = 0.0
    try:
        scores, masks = [], []
        with torch.no_grad():
            for start in range(0, len(cases), batch_size):
                chunk = cases[start:start + batch_size]
                histories = [list(c.history) for c in chunk]
                scores.append(scorer.score_all(histories).float().cpu())
                masks.append(history_mask(histories, scores[-1].shape[1]))
    finally:
        if saved is not None:
            scorer.repeat_bias = saved
    S, M = torch.cat(scores), torch.cat(masks).float()
    targets = torch.tensor([c.target for c in cases])
    rows = torch.arange(len(cases))

    def loss(b: float) -> float:
        logits = (S + b * M) / temperature
        return float((torch.logsumexp(logits, dim=1) - logits[rows, targets]).mean())

    fit = minimize_scalar(loss, bounds=(-BIAS_BOUND, BIAS_BOUND), method="bounded", options={"xatol": 1e-4})
    b = float(fit.x)
    return {
        "repeat_bias": b,
        "temperature": temperature,
        "users": len(cases),
        "repeat_share": float(M[rows, targets].mean()),  # next purchases already in the history
        "loss_before": loss(0.0),
        "loss_after": loss(b),
        "before": metrics_from_ranks(rank_of_targets(S, targets)),
        "after": metrics_from_ranks(rank_of_targets(S + b * M, targets)),
    }


def write_calibrated(checkpoint: str | Path, output: str | Path, fit: dict) -> Path:
    """A copy of ``checkpoint`` at ``output`` (or itself, updated) whose config carries the fitted bias and
    whose training card records the fit."""
    src, out = Path(checkpoint), Path(output)
    if out.resolve() != src.resolve():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(src, out)
    config_path, card_path = out / "config.json", out / "training_card.json"
    config = json.loads(config_path.read_text())
    config["repeat_bias"] = fit["repeat_bias"]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card["repeat_bias_fit"] = {**fit, "source": str(src)}
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return out


def calibrate(checkpoint: str | Path, dataset: SeqRecDataset, output: str | Path, *, max_users: int | None = None,
              temperature: float = FinetuneLossConfig.temperature, seed: int = 0, device: str | None = None,
              batch_size: int = 128, use_cache: bool = True) -> tuple[dict, Recommender]:
    """Fit the repeat bias of a model directory on ``dataset``'s validation split and write it to ``output``.

    Returns the fit and the Recommender that scored it, now carrying the fitted bias: its catalogue is
    encoded already, so the test split can be ranked without loading ``output`` and encoding it again."""
    rec = Recommender.from_pretrained(checkpoint, dataset, device=device, batch_size=batch_size, use_cache=use_cache)
    cases = dataset.valid_cases()
    if max_users and max_users < len(cases):
        pick = np.sort(np.random.default_rng(seed).choice(len(cases), max_users, replace=False))
        cases = [cases[i] for i in pick]
    fit = {**fit_repeat_bias(rec, cases, temperature), "split": "valid"}
    write_calibrated(checkpoint, output, fit)
    rec.repeat_bias = rec.model.config.repeat_bias = fit["repeat_bias"]
    return fit, rec
