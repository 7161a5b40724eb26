"""The score priors: a repeat bias and a popularity bias, fitted on the validation split.

A text model scores items by what they say, which leaves out two things a shop's log knows:

* **Repeats.** A text model's history vector is built from the history's own words, so the items a
  user already bought are the ones most like it: on Scientific a fine-tuned JEPA4Rec puts about two of
  them in every top 10, while fewer than 1% of next purchases repeat one. The *repeat bias* is one
  number added to the score of every item already in the history.
* **Popularity.** Text says nothing of how often an item sells. The *popularity bias* is one weight on
  each item's ``log(1 + count)`` in the training split (:func:`jepa4rec.evaluation.item_log_popularity`).

Both are fitted after fine-tuning by minimising the full-softmax cross-entropy on the validation split, whose
targets the counts never include (:mod:`jepa4rec.priors`: the same fit every scorer of a comparison gets,
the scores' scale fitted with them), and stored in the model's weights (its ``score_priors`` module). The fit is the *history
kept* protocol's: history items still compete and every item is ranked. 0 is the paper's model. The test
split is never read.

``python -m jepa4rec.calibrate`` is the command; ``finetune`` with ``repeat_bias: fit`` (and
``popularity_bias: fit``) calls :func:`calibrate` before its test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoint import resave_model_dir
from .data import SeqRecDataset
from .priors import fit_score_priors, fit_summary
from .recommender import Recommender


def write_calibrated(checkpoint: str | Path, output: str | Path, fit: dict, rec: Recommender) -> Path:
    """The model of ``rec`` (loaded from ``checkpoint``), with the fitted priors in its ``score_priors``, saved at
    ``output`` (or over ``checkpoint`` itself) in the precision ``checkpoint`` stores, its training card
    recording the fit."""
    rec.repeat_bias, rec.popularity_bias = fit["repeat_bias"], fit.get("popularity_bias", 0.0)
    return resave_model_dir(checkpoint, output, rec.model, rec.tok, repeat_bias_fit={**fit, "source": str(checkpoint)})


def calibrate(checkpoint: str | Path, dataset: SeqRecDataset, output: str | Path, *, popularity: bool = False,
              keep_repeat_bias: bool = False, max_users: int | None = None, seed: int = 0, device: str | None = None,
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
    fit = fit_score_priors(rec, cases, rec.log_popularity if popularity else None, ("kept",),
                           repeat_bias=rec.repeat_bias if keep_repeat_bias else None, batch_size=batch_size)["kept"]
    fit = {**fit_summary(fit), "split": "valid"}
    write_calibrated(checkpoint, output, fit, rec)
    return fit, rec
