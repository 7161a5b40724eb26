"""Full-ranking evaluation shared by every model (JEPA4Rec, SASRec, popularity, ...).

Every model is evaluated through one contract, :class:`Scorer` (in the spirit of RecBole's
``full_sort_predict``): given a batch of user histories it returns one score per catalogue item.
:func:`evaluate` then ranks each case's target among **all** ``n_items`` items and averages
NDCG@k, Recall@k and MRR, so no model can get a kinder protocol than another.

Protocol choices (the paper, Sec. 4.1, fixes leave-one-out and ranking against all items; the
rest it leaves open, so they are fixed here and apply to every model alike):

* **Ties count against the target.** ``rank = 1 + #{items j != target : score_j >= score_target}``.
  A model that gives many items the same score (e.g. popularity, or a collapsed encoder) is
  therefore ranked pessimistically; breaking ties in the target's favour, or by item id, would
  reward degenerate scores.
* **Two protocols, both reported** (:data:`PROTOCOLS`): *history kept* (the paper's code, RecFormer's:
  items may be bought again, every item competes) and *history excluded* (RecBole's, which the paper's
  baselines come from: the user's history items do not compete, as if their scores were ``-inf``, but the
  target itself always does, even when it also occurs in the history). Both are legitimate; comparing a
  model under one with a model under the other is not. One scoring pass ranks both
  (:func:`compute_cell_ranks`), and an excluded rank never exceeds the kept rank of the same scores.
* **Score priors are a cell of the comparison** (:class:`ScorePriors`, fitted on the validation split for any
  scorer by :mod:`jepa4rec.priors`); a model that carries its own is scored with them unless asked not to.
* **MRR is the full reciprocal rank** (``1 / rank``, not truncated at any cut-off).
* With a single target per case, Recall@k equals HR@k.
* NaN scores are an error, not a silent rank: a NaN compares false with everything, which would
  give the target rank 1 (or hide it); :func:`rank_of_targets` raises instead.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data.dataset import EvalCase, item_counts

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
# The two evaluation protocols, as a reader says them.
PROTOCOLS: dict[str, str] = {"kept": "history kept", "excluded": "history excluded"}


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores every catalogue item for a batch of user histories.

    ``histories[b]`` is user ``b``'s item ids (0-based, ``0 <= id < n_items``), oldest first. The
    result is a float tensor ``[len(histories), n_items]``, higher = more likely next; it may live
    on any device. Implementations handle their own ``eval()`` / ``no_grad`` needs, though
    :func:`evaluate` also wraps calls in ``torch.no_grad()``.
    """

    def score_all(self, histories: list[list[int]]) -> torch.Tensor:  # pragma: no cover - protocol
        ...


def history_mask(histories: Sequence[Iterable[int]], n_items: int, device=None) -> torch.Tensor:
    """Boolean ``[B, n_items]`` mask, True where the item occurs in that row's history."""
    rows: list[int] = []
    cols: list[int] = []
    for b, hist in enumerate(histories):
        hist = list(hist)
        rows.extend([b] * len(hist))
        cols.extend(hist)
    mask = torch.zeros(len(histories), n_items, dtype=torch.bool, device=device)
    if cols:
        mask[torch.tensor(rows, device=device), torch.tensor(cols, device=device)] = True
    return mask


def item_log_popularity(sequences: Iterable[Iterable[int]], n_items: int) -> torch.Tensor:
    """``log(1 + count)`` of each item over ``sequences`` (float ``[n_items]``): what the popularity bias
    (``JepaConfig.popularity_bias``) weighs. Counted over the training split only, so no validation or test
    target is ever counted."""
    return torch.from_numpy(np.log1p(item_counts(sequences, n_items))).float()


def with_score_priors(scores: torch.Tensor, histories: Sequence[Iterable[int]], repeat_bias=0.0,
                      popularity_bias=0.0, log_popularity: torch.Tensor | None = None,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """``scores`` [B, n_items] plus the two score priors: ``repeat_bias`` on each row's history items
    (``JepaConfig.repeat_bias``) and ``popularity_bias · log_popularity`` on every item
    (``JepaConfig.popularity_bias``, see :func:`item_log_popularity`). Each may be a float or a scalar
    tensor being trained. ``weight`` [B] scales each row's priors (the reveal scores fade them as the
    target's words are shown). A new tensor when a prior applies; ``scores`` itself is never written."""
    applies = isinstance(repeat_bias, torch.Tensor) or repeat_bias
    mask = history_mask(histories, scores.shape[1], device=scores.device) if applies else None
    return add_score_priors(scores, mask, repeat_bias, popularity_bias, log_popularity, weight)


def add_score_priors(scores: torch.Tensor, mask: torch.Tensor | None, repeat_bias=0.0, popularity_bias=0.0,
                     log_popularity: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`with_score_priors` given each row's history as a ``[B, n_items]`` mask (bool or 0/1), for a
    caller that scores the same rows many times (the fit in :mod:`jepa4rec.calibration`). The one place the
    priors' arithmetic lives, so a fitted model scores exactly as its fit measured it.

    The priors are summed first and added once, so a row weighted 1.0 gets exactly the unweighted scores."""
    prior = None
    if mask is not None and (isinstance(repeat_bias, torch.Tensor) or repeat_bias):
        prior = repeat_bias * mask.to(scores.device, scores.dtype)
    if log_popularity is not None and (isinstance(popularity_bias, torch.Tensor) or popularity_bias):
        popular = popularity_bias * log_popularity.to(scores.device)
        prior = popular if prior is None else prior + popular
    if prior is None:
        return scores
    if weight is not None:
        prior = prior * weight.to(scores.device, scores.dtype)[:, None]
    return scores + prior


class ScorePriors(nn.Module):
    """The two score priors, in the units of the scores they are added to: ``repeat_bias`` on each row's
    history items, ``popularity_bias`` times each item's ``log(1 + training-split count)``. Zero is no prior
    (the paper's model).

    One module for every use: a JEPA4Rec model carries one in its state dict (``score_priors``, fitted by
    ``python -m jepa4rec.calibrate`` or learned in fine-tuning), and a comparison puts fitted ones on any
    scorer (:mod:`jepa4rec.priors`). Both are 0-d parameters, frozen unless a training learns them; read them
    as floats through ``repeat_bias`` / ``popularity_bias``."""

    def __init__(self, repeat_bias: float = 0.0, popularity_bias: float = 0.0):
        super().__init__()
        self.repeat = nn.Parameter(torch.tensor(float(repeat_bias)), requires_grad=False)
        self.popularity = nn.Parameter(torch.tensor(float(popularity_bias)), requires_grad=False)

    @property
    def repeat_bias(self) -> float:
        return float(self.repeat.detach())

    @repeat_bias.setter
    def repeat_bias(self, value: float) -> None:
        with torch.no_grad():
            self.repeat.fill_(float(value))

    @property
    def popularity_bias(self) -> float:
        return float(self.popularity.detach())

    @popularity_bias.setter
    def popularity_bias(self, value: float) -> None:
        with torch.no_grad():
            self.popularity.fill_(float(value))

    def forward(self, scores: torch.Tensor, mask: torch.Tensor | None, log_popularity: torch.Tensor | None = None,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """``scores`` [B, n_items] plus the priors (``mask``: each row's history, [B, n_items]; ``weight`` [B]
        scales each row's priors). A prior being learned enters as its tensor, so gradients reach it."""
        repeat = self.repeat if self.repeat.requires_grad else self.repeat_bias
        popularity = self.popularity if self.popularity.requires_grad else self.popularity_bias
        return add_score_priors(scores, mask, repeat, popularity, log_popularity if popularity else None, weight)

    def to_dict(self) -> dict:
        return {"repeat_bias": self.repeat_bias, "popularity_bias": self.popularity_bias}

    def __bool__(self) -> bool:  # "has any prior"
        return bool(self.repeat_bias or self.popularity_bias)

    def extra_repr(self) -> str:
        return f"repeat_bias={self.repeat_bias:+.4f}, popularity_bias={self.popularity_bias:+.4f}"


@dataclass(frozen=True)
class Cell:
    """One cell of a comparison: a protocol (``kept`` | ``excluded``) and the priors added to the raw scores
    (None: none). Its name, ``kept`` / ``excluded`` / ``kept_priors`` / ``excluded_priors``, keys the
    metrics, the rank-file columns and the results tables."""

    protocol: str
    priors: ScorePriors | None = None

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}")

    @property
    def name(self) -> str:
        return self.protocol if self.priors is None else f"{self.protocol}_priors"


CELLS = ("kept", "excluded", "kept_priors", "excluded_priors")
# How a reader is told each cell; under history exclusion the repeat bias cannot apply, so only the popularity
# prior is fitted there.
CELL_LABELS = {"kept": "history kept", "excluded": "history excluded",
               "kept_priors": "history kept + repeat & popularity priors",
               "excluded_priors": "history excluded + popularity prior (a repeat bias cannot apply)"}


def rank_of_targets(
    scores: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    exclude: torch.Tensor | Sequence[Iterable[int]] | None = None,
) -> torch.Tensor:
    """1-based rank of each row's target among all items; ties count against the target.

    Args:
        scores: ``[B, n_items]`` float scores (not modified).
        targets: ``[B]`` target item ids.
        exclude: optional items that do not compete, either a boolean ``[B, n_items]`` mask or one
            iterable of item ids per row (e.g. the histories). The target itself is never excluded.

    Returns:
        ``[B]`` int64 ranks on ``scores.device``:
        ``1 + #{j != target, j not excluded : scores[b, j] >= scores[b, target]}``.

    Excluded items are dropped from the count rather than set to ``-inf``: the two agree except
    when the target's own score is ``-inf``, where ``-inf`` fillers would tie with (and so count
    against) the target.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, n_items], got shape {tuple(scores.shape)}")
    batch, n_items = scores.shape
    targets = torch.as_tensor(targets, dtype=torch.long, device=scores.device).reshape(-1)
    if targets.numel() != batch:
        raise ValueError(f"{targets.numel()} targets for {batch} score rows")
    if batch and (int(targets.min()) < 0 or int(targets.max()) >= n_items):
        raise ValueError(f"target ids must lie in [0, {n_items})")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN target would otherwise rank first")
    rows = torch.arange(batch, device=scores.device)
    target_scores = scores[rows, targets].unsqueeze(1)
    competing = scores >= target_scores  # ties (>=) count against the target
    competing[rows, targets] = False  # the target does not compete with itself
    if exclude is not None:
        if not isinstance(exclude, torch.Tensor):
            exclude = history_mask(exclude, n_items, device=scores.device)
        exclude = exclude.to(device=scores.device, dtype=torch.bool)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude mask shape {tuple(exclude.shape)} != scores shape {tuple(scores.shape)}")
        competing &= ~exclude
    return 1 + competing.sum(dim=1)


def _checked_ranks(ranks: torch.Tensor | Sequence[int]) -> torch.Tensor:
    ranks = torch.as_tensor(ranks, dtype=torch.float64).reshape(-1).cpu()
    if ranks.numel() == 0:
        raise ValueError("no ranks to average")
    if bool((ranks < 1).any()):
        raise ValueError("ranks are 1-based")
    return ranks


def per_case_metric(ranks: torch.Tensor | Sequence[int], name: str) -> torch.Tensor:
    """One case's value of ``name`` (``NDCG@k``, ``Recall@k`` or ``MRR``) for each 1-based rank, float64;
    a metric is the mean of these, so a paired test between two models compares them case by case.

    NDCG@k = 1/log2(rank + 1) if rank <= k else 0 (the ideal DCG of one relevant item is 1);
    Recall@k = [rank <= k]; MRR = 1/rank.
    """
    return _metric_values(_checked_ranks(ranks), name)


def _metric_values(ranks: torch.Tensor, name: str) -> torch.Tensor:
    if name == "MRR":
        return 1.0 / ranks
    kind, _, k = name.partition("@")
    if kind not in ("NDCG", "Recall") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {name!r}: use NDCG@k, Recall@k (k >= 1) or MRR")
    hit = ranks <= int(k)
    if kind == "Recall":
        return hit.double()
    return torch.where(hit, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    return [f"{kind}@{k}" for k in ks for kind in ("NDCG", "Recall")] + ["MRR"]


def metrics_from_ranks(ranks: torch.Tensor | Sequence[int], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Average NDCG@k, Recall@k (each k) and full MRR over 1-based ranks (one target per case); each is
    the mean of :func:`per_case_metric`."""
    ranks = _checked_ranks(ranks)
    return {name: float(_metric_values(ranks, name).mean()) for name in metric_names(ks)}


def batches_by_history_length(cases: Sequence[EvalCase], batch_size: int) -> list[np.ndarray]:
    """Case indexes in batches of ``batch_size``, shortest history first, so that a batch pads little.

    Every pass that scores cases (the ranking, the priors' fit) batches them this way: two passes over the
    same cases then encode the same batches and get bit-identical scores, so exact ties break alike."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = np.argsort([len(c.history) for c in cases], kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(cases), batch_size)]


def compute_cell_ranks(
    scorer: Scorer,
    cases: Sequence[EvalCase],
    cells: Sequence[Cell] = (Cell("kept"), Cell("excluded")),
    batch_size: int = 256,
    log_popularity: torch.Tensor | None = None,
    progress: bool = True,
    desc: str = "evaluate",
) -> dict[str, torch.Tensor]:
    """Each case's target rank in every cell, from one scoring pass: ``{cell.name: [len(cases)] int64}`` on the
    CPU, in ``cases``' order. The scorer's scores are taken as they come (a Recommender adds its own priors
    unless it is wrapped in :func:`jepa4rec.priors.without_priors`); a cell's priors are added on top."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"cells named twice: {names}")
    out = {name: torch.zeros(len(cases), dtype=torch.long) for name in names}
    with torch.no_grad(), tqdm(total=len(cases), desc=desc, unit="user", disable=not progress, leave=False) as bar:
        for idx in batches_by_history_length(cases, batch_size):
            chunk = [cases[i] for i in idx]
            histories = [list(c.history) for c in chunk]
            scores = scorer.score_all(histories)
            if scores.shape[0] != len(chunk):
                raise ValueError(f"scorer returned {scores.shape[0]} rows for {len(chunk)} histories")
            targets = [c.target for c in chunk]
            mask = history_mask(histories, scores.shape[1], device=scores.device)
            where = torch.as_tensor(idx)
            for cell in cells:
                scored = scores if cell.priors is None else cell.priors(scores, mask, log_popularity)
                ranks = rank_of_targets(scored, targets, exclude=mask if cell.protocol == "excluded" else None)
                out[cell.name][where] = ranks.cpu()
            bar.update(len(chunk))
    return out


def compute_ranks(
    scorer: Scorer,
    cases: Sequence[EvalCase],
    batch_size: int = 256,
    exclude_history: bool = False,
    progress: bool = True,
    desc: str = "evaluate",
) -> torch.Tensor:
    """Rank every case's target (batched) under one protocol; returns ``[len(cases)]`` int64 ranks on the CPU.

    Kept separate from :func:`evaluate` so that per-user ranks are available for significance
    tests or per-group breakdowns.
    """
    cell = Cell("excluded" if exclude_history else "kept")
    return compute_cell_ranks(scorer, cases, [cell], batch_size, progress=progress, desc=desc)[cell.name]


def evaluate(
    scorer: Scorer,
    cases: Sequence[EvalCase],
    batch_size: int = 256,
    exclude_history: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    progress: bool = True,
    desc: str = "evaluate",
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], torch.Tensor]:
    """Full-ranking metrics of ``scorer`` on ``cases`` (e.g. ``dataset.test_cases()``).

    Returns ``{"NDCG@k", "Recall@k" for each k, "MRR", "users", "users_per_s"}``; ``users_per_s``
    is cases scored and ranked per wall-clock second (scoring dominates it). History items
    compete unless ``exclude_history`` (see the module docstring for the tie rule). With
    ``return_ranks`` also the ``[len(cases)]`` ranks the metrics average, for a paired test
    (:mod:`jepa4rec.significance`).
    """
    if not cases:
        raise ValueError("no evaluation cases")
    t0 = time.perf_counter()
    ranks = compute_ranks(scorer, cases, batch_size, exclude_history, progress, desc)
    elapsed = time.perf_counter() - t0
    metrics = metrics_from_ranks(ranks, ks)
    metrics["users"] = len(cases)
    metrics["users_per_s"] = len(cases) / elapsed if elapsed > 0 else math.inf
    return (metrics, ranks) if return_ranks else metrics


def format_metrics(metrics: dict[str, float], keys: Sequence[str] = ("NDCG@10", "Recall@10", "MRR")) -> str:
    """One-line summary, e.g. ``NDCG@10 0.0712  Recall@10 0.1203  MRR 0.0650``."""
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)


def format_cells(cells: dict[str, dict], indent: str = "  ") -> str:
    """One line per cell of a comparison, labelled as :data:`CELL_LABELS` says it."""
    width = max(len(CELL_LABELS.get(name, name)) for name in cells)
    return "\n".join(f"{indent}{CELL_LABELS.get(name, name) + ':':<{width + 1}}  {format_metrics(m)}"
                     for name, m in cells.items())
