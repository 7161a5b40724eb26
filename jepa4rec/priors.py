"""The score priors as a property of a comparison: fitted on the validation split for *any* scorer, and the
two evaluation protocols ranked from one scoring pass.

A text model scores items by what they say, which leaves out two things a shop's log knows: whether the
user already has an item (the *repeat bias*, one offset on every history item) and how often an item sells
(the *popularity bias*, one weight on each item's ``log(1 + training-split count)``). An ID model learns
both; a text model cannot. So that no model gets a kinder protocol than another, the priors are fitted the
same way for every scorer (popularity, SASRec, the frozen MiniLM rows, every text model):

* the fit minimises the full-softmax cross-entropy of ``α·score + b·[item in history] + β·log_popularity``
  over the validation cases (convex in α, b, β). The scale α is fitted too, so a scorer's units do not
  matter (cosines, SASRec's logits and popularity's counts alike); the priors are reported in the scorer's
  own units, ``repeat_bias = b/α`` and ``popularity_bias = β/α``, which rank exactly as the fit did;
* under **history kept** both priors are fitted; under **history excluded** the history items do not
  compete (they leave the softmax as they leave the ranking), so the repeat bias cannot apply and only the
  popularity bias is fitted;
* the test split is never read.

:func:`evaluate_on_equal_terms` is the whole comparison for one scorer: the validation split scored once
(both fits), the test split scored once, four cells ranked from it (:data:`jepa4rec.evaluation.CELLS`).
``python -m jepa4rec.evaluate --priors fit`` and ``scripts/results_table.py`` call it;
``python -m jepa4rec.calibrate`` writes the kept-protocol fit into a model directory.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import numpy as np
import torch

from .data.dataset import EvalCase
from .evaluation import (PROTOCOLS, Cell, ScorePriors, batches_by_history_length, compute_cell_ranks, history_mask,
                         metrics_from_ranks, rank_of_targets)

SCORE_PRIOR_NAMES = ("repeat_bias", "popularity_bias")


@contextlib.contextmanager
def without_priors(scorer):
    """``scorer`` scoring raw for the duration (a Recommender carries priors of its own in its config; every
    other scorer has none): a comparison adds its own, fitted the same way for every model."""
    saved = {name: getattr(scorer, name) for name in SCORE_PRIOR_NAMES if hasattr(scorer, name)}
    for name in saved:
        setattr(scorer, name, 0.0)
    try:
        yield scorer
    finally:
        for name, value in saved.items():
            setattr(scorer, name, value)


class WithPriors:
    """Any scorer (``score_all(histories)``) with score priors added: how fitted priors are put on a scorer
    that has no config of its own (a Recommender carries its own)."""

    def __init__(self, scorer, priors: ScorePriors, log_popularity: torch.Tensor | None = None):
        self.scorer, self.priors, self.log_popularity = scorer, priors, log_popularity

    def score_all(self, histories: list[list[int]]) -> torch.Tensor:
        scores = self.scorer.score_all(histories)
        mask = history_mask(histories, scores.shape[1], device=scores.device) if self.priors.repeat_bias else None
        return self.priors(scores, mask, self.log_popularity)


def score_cases(scorer, cases: Sequence[EvalCase], batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores [n, n_items] fp32 on the CPU, history masks [n, n_items] bool, targets [n]) of ``cases``, scored
    raw and batched as the ranking batches them (shortest history first), rows in that order."""
    if not cases:
        raise ValueError("no cases to score")
    scores, masks, order = [], [], []
    with torch.no_grad(), without_priors(scorer):
        for idx in batches_by_history_length(cases, batch_size):
            histories = [list(cases[i].history) for i in idx]
            scores.append(scorer.score_all(histories).float().cpu())
            masks.append(history_mask(histories, scores[-1].shape[1]))
            order.extend(int(i) for i in idx)
    return torch.cat(scores), torch.cat(masks), torch.tensor([cases[i].target for i in order])


def fit_priors_on_scores(scores: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor,
                         log_popularity: torch.Tensor | None, protocol: str = "kept",
                         repeat_bias: float | None = None) -> dict:
    """Fit the priors on scored cases (:func:`score_cases`) under ``protocol``.

    ``log_popularity`` None: no popularity bias. ``repeat_bias``: hold it at this value (in score units)
    instead of fitting it, e.g. one learned with the loss. Returns the fitted :class:`ScorePriors` under
    ``"priors"``, the scale α, the loss before (α fitted alone) and after, and the metrics before and after
    under the same protocol."""
    from scipy.optimize import minimize

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    S = scores.double()
    M = masks.to(torch.bool)
    rows = torch.arange(S.shape[0])
    if repeat_bias is not None:
        S = S + float(repeat_bias) * M
    out = None
    if protocol == "excluded":
        # History items leave the softmax as they leave the ranking; the target never does. (Masked after the
        # sum, so no -inf meets a product: its gradient would be nan.)
        out = M.clone()
        out[rows, targets] = False
    P = (log_popularity.double().cpu() if log_popularity is not None else torch.zeros(S.shape[1]))[None, :]
    Mf = M.double()
    free_repeat = protocol == "kept" and repeat_bias is None
    free_popularity = log_popularity is not None
    # Scale the variables so that L-BFGS starts near the optimum's order: α in units of 1/std(scores).
    unit = 1.0 / max(float(S.std()) if S.numel() > 1 else 1.0, 1e-8)

    def unpack(x: torch.Tensor):
        """(α, b, β) from [a] (the scale alone) or [a, b?, β?] (with the free priors)."""
        alpha, rest = x[0] * unit, list(x[1:])
        b = rest.pop(0) if free_repeat and rest else x.new_zeros(())
        beta = rest.pop(0) if free_popularity and rest else x.new_zeros(())
        return alpha, b, beta

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        alpha, b, beta = unpack(x)
        logits = alpha * S + b * Mf + beta * P
        if out is not None:
            logits = logits.masked_fill(out, -math.inf)
        return (torch.logsumexp(logits, dim=1) - logits[rows, targets]).mean()

    def loss_and_grad(x):
        x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = loss_of(x)
        value.backward()
        return float(value.detach()), x.grad.numpy()

    def fit(n_free: int) -> np.ndarray:
        # α > 0: the ranking direction of the scorer is kept. b and β are logits: a bound of ±50 is
        # "always" / "never" (reached only when no validation target repeats a history item).
        bounds = [(1e-6, None)] + [(-50.0, 50.0)] * n_free
        x0 = np.array([1.0] + [0.0] * n_free)
        return minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"gtol": 1e-9, "maxiter": 500}).x

    n_free = int(free_repeat) + int(free_popularity)
    scale_only = fit(0)  # the loss before the priors: the scorer's own ranking at its best scale
    x = fit(n_free) if n_free else scale_only
    with torch.no_grad():
        xt = torch.tensor(x, dtype=torch.float64)
        alpha, b, beta = (float(v) for v in unpack(xt))
        loss_before = float(loss_of(torch.tensor(np.concatenate([scale_only, np.zeros(n_free)]))))
        loss_after = float(loss_of(xt))
    priors = ScorePriors(repeat_bias=(b / alpha if free_repeat else float(repeat_bias or 0.0)) if protocol == "kept" else 0.0,
                         popularity_bias=beta / alpha if free_popularity else 0.0)
    exclude = M if protocol == "excluded" else None
    raw = scores.float()
    fitted_scores = priors(raw, M, log_popularity.float().cpu() if log_popularity is not None else None)
    return {"protocol": protocol, "priors": priors, "scale": alpha,
            "fitted": [n for n, free in (("repeat_bias", free_repeat), ("popularity_bias", free_popularity)) if free],
            "users": int(S.shape[0]), "repeat_share": float(M[rows, targets].double().mean()),
            "loss_before": loss_before, "loss_after": loss_after,
            "before": metrics_from_ranks(rank_of_targets(raw, targets, exclude=exclude)),
            "after": metrics_from_ranks(rank_of_targets(fitted_scores, targets, exclude=exclude))}


def fit_score_priors(scorer, cases: Sequence[EvalCase], log_popularity: torch.Tensor | None = None,
                     protocols: Sequence[str] = ("kept",), repeat_bias: float | None = None,
                     batch_size: int = 256) -> dict[str, dict]:
    """The priors of ``scorer`` fitted on ``cases`` (the validation split) under each of ``protocols``, from
    one scoring pass: ``{protocol: fit}`` (see :func:`fit_priors_on_scores`)."""
    scores, masks, targets = score_cases(scorer, cases, batch_size)
    return {protocol: fit_priors_on_scores(scores, masks, targets, log_popularity, protocol, repeat_bias)
            for protocol in protocols}


def fit_summary(fit: dict) -> dict:
    """A fit as JSON-ready numbers (the priors spelled out)."""
    return {**{k: v for k, v in fit.items() if k != "priors"}, **fit["priors"].to_dict()}


def evaluate_on_equal_terms(scorer, test_cases: Sequence[EvalCase], valid_cases: Sequence[EvalCase] | None = None,
                            log_popularity: torch.Tensor | None = None, batch_size: int = 256,
                            progress: bool = True, desc: str = "evaluate") -> dict:
    """Every cell of the comparison for one scorer: NDCG@k, Recall@k and MRR under history kept and history
    excluded, raw, and (given ``valid_cases``) with the priors fitted on them under each protocol.

    The validation split is scored once (both fits) and the test split once (every cell). Returns
    ``{"cells": {cell: metrics}, "ranks": {cell: [n] ranks in test_cases' order}, "fits": {protocol: fit}}``.
    ``log_popularity`` None fits the repeat bias alone (kept) and nothing under exclusion."""
    fits = {}
    if valid_cases is not None:
        fits = fit_score_priors(scorer, valid_cases, log_popularity, PROTOCOLS, batch_size=batch_size)
    cells = [Cell(protocol) for protocol in PROTOCOLS]
    cells += [Cell(protocol, fits[protocol]["priors"]) for protocol in PROTOCOLS if protocol in fits]
    with without_priors(scorer):
        ranks = compute_cell_ranks(scorer, test_cases, cells, batch_size=batch_size, log_popularity=log_popularity,
                                   progress=progress, desc=desc)
    return {"cells": {name: metrics_from_ranks(r) for name, r in ranks.items()}, "ranks": ranks,
            "fits": {protocol: fit_summary(fit) for protocol, fit in fits.items()}}
