"""Why an item ranks where it does, and where a brand-new item would rank.

Everything here is a few batched forward passes of the :class:`~jepa4rec.recommender.Recommender`'s
encoder, scored as the ranking is: the history-only cosine cos(h_CLS, h_i) plus the model's score priors
when it has them (``repeat_bias`` for an item in the history, ``popularity_bias`` times the item's log
training popularity; both 0 for the paper's model), so an explanation and a rank never disagree:

* :func:`history_contributions`: the item's score with the whole history minus its score with each
  history item left out (all leave-one-out histories encoded in one batch): which purchases carry it.
* :func:`word_importance`: the score minus the score with each of the item's own words masked (all
  masked copies encoded in one batch): which of its words matter.
* :func:`rank_new_item`: a catalogue item that does not exist yet, given as text: where it would rank
  for the history among every catalogue item, and its nearest catalogue items.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .recommender import Recommender


@dataclass
class Contribution:
    label: str  # the history item's title, or the word
    delta: float  # score lost when it is left out (positive: it pulls the item up)
    item: int | None = None  # the history item (history contributions only)


@torch.no_grad()
def history_contributions(rec: Recommender, history: Sequence[int], item: int) -> list[Contribution]:
    """One entry per history position (oldest first): score(h, item) - score(h without it, item).

    The popularity prior is the same on both sides and cancels; the repeat prior does not when ``item``
    is in the history: leaving out its only occurrence also takes away ``repeat_bias``."""
    history = list(history)
    if not history:
        return []
    variants = [history] + [history[:i] + history[i + 1:] for i in range(len(history))]
    nonempty = [v for v in variants if v]
    vectors = F.normalize(rec.embed_history(nonempty), dim=-1) if nonempty else None
    target = rec.unit_item_vectors[item]
    scores, j = [], 0
    for v in variants:  # a one-item history left empty has no vector: its cosine is 0 (no evidence)
        cosine = 0.0
        if v:
            cosine = float(vectors[j] @ target)
            j += 1
        scores.append(cosine + (rec.repeat_bias if item in v else 0.0))
    full = scores[0]
    return [Contribution(rec.titles[h], full - s, h) for h, s in zip(history, scores[1:])]


@torch.no_grad()
def word_importance(rec: Recommender, history: Sequence[int], item: int) -> list[Contribution]:
    """One entry per value word of the item (sentence order): score - score with that word masked (the
    priors do not depend on the item's words, so they cancel)."""
    n_words = rec.reveal_count(item, 1.0)[1]
    if n_words == 0:
        return []
    every = np.arange(n_words)
    masked = [rec.with_words_shown(item, every[every != w]) for w in range(n_words)]
    h = F.normalize(rec.history_vector(history), dim=-1)
    full = float(rec.unit_item_vectors[item] @ h)
    without = F.normalize(rec.embed_encoded_items(masked), dim=-1) @ h
    words = rec.value_words(item)
    return [Contribution(words[w] if w < len(words) else f"word {w + 1}", full - float(s))
            for w, s in enumerate(without.tolist())]


@dataclass
class NewItemRank:
    rank: int  # 1-based among the catalogue plus this item (ties against it)
    score: float
    neighbours: list[tuple[int, float]]  # (catalogue item, cosine to the new item), nearest first
    vector: torch.Tensor


@torch.no_grad()
def rank_new_item(rec: Recommender, history: Sequence[int], attrs: dict[str, str], k: int = 10,
                  exclude_history: bool = False) -> NewItemRank:
    """Where an item described by ``attrs`` (e.g. {"title": ..., "brand": ...}) would rank for ``history``.

    The catalogue is scored with the model's priors, as in the ranking; the new item has no purchases
    and is not in the history, so its score is its cosine alone (no popularity, no repeat bias)."""
    if not any(str(v).strip() for v in attrs.values()):
        raise ValueError("the new item has no text: give it a title or another attribute")
    vector = F.normalize(rec.embed_items([attrs])[0], dim=-1)
    items = rec.unit_item_vectors
    h = F.normalize(rec.history_vector(history), dim=-1)
    catalogue = rec.with_priors((items @ h)[None], [list(history)])[0]
    if exclude_history and len(history):
        catalogue = catalogue.clone()
        catalogue[torch.as_tensor(list(history), device=catalogue.device)] = float("-inf")
    score = float(vector @ h)
    rank = int((catalogue >= score).sum()) + 1
    near = torch.topk(items @ vector, min(k, items.shape[0]))
    return NewItemRank(rank, score, list(zip(near.indices.tolist(), near.values.tolist())), vector)
