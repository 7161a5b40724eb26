"""How well each model ranks a shop's own held-out purchases: the scoreboard of an uploaded catalogue.

Each user's purchases are split leave-one-out as every evaluation here splits them (the last one is the test,
the one before it the validation). The scoreboard ranks every item of the catalogue for every test user, under
both protocols (history kept / excluded), for:

* popularity (the shop's best-sellers in its training split),
* the pre-trained JEPA4Rec, zero-shot (it never saw this shop),
* the same with the score priors fitted on the validation split (a repeat and a popularity bias),
* an adapted model (:mod:`jepa4rec.adaptation`), raw and with the priors, when there is one,

and tests adapted + priors against zero-shot + priors with a paired bootstrap (B / A on NDCG@10, 95%
interval). Every figure is what ``python -m jepa4rec.evaluate --priors fit`` gives for that model on the same split: the same
code (:func:`jepa4rec.priors.evaluate_on_equal_terms`).
"""
from __future__ import annotations

import time
from typing import Callable

from .baselines.popularity import PopularityScorer
from .evaluation import CELLS, PROTOCOLS, item_log_popularity
from .priors import evaluate_on_equal_terms
from .significance import compare

HEADLINE = ("NDCG@10", "Recall@10", "MRR")


def scoreboard(zero_shot, adapted=None, batch_size: int = 128, max_users: int | None = None,
               progress: Callable[[float, str], None] | None = None, results: dict | None = None) -> dict:
    """The scoreboard of ``zero_shot``'s catalogue (a Recommender over the shop's dataset) and, given one,
    ``adapted`` (the same catalogue ranked by an adapted model). Returns ``{"users", "all_users", "items", "rows":
    [{"model", "cells": {cell: metrics}}], "paired": {protocol: comparison}, "seconds"}``.

    ``max_users``: score only the first N users (their test purchase, and their validation purchase for the
    priors' fit), as ``python -m jepa4rec.evaluate --max-users N`` does: the text model encodes about 70 histories
    a second on two CPU cores, so every user of a large shop takes minutes. ``results``, when given, keeps each
    model's evaluation across calls for one ``max_users`` (popularity and zero-shot are then evaluated once; the
    adapted model anew)."""
    progress = progress or (lambda f, what: None)
    dataset = zero_shot.dataset
    if not dataset.sequences:
        raise ValueError(f"{dataset.name} has no purchases: a scoreboard needs an interactions file")
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be at least 1 (None scores every user), got {max_users}")
    started = time.perf_counter()
    test, valid = dataset.test_cases()[:max_users], dataset.valid_cases()[:max_users]
    log_popularity = item_log_popularity(dataset.train_sequences(), dataset.n_items)
    results = {} if results is None else results
    if "popularity" not in results:
        progress(0.0, "popularity")
        # Raw only (its row has no priors): fitting a popularity bias to popularity would add nothing but time.
        results["popularity"] = evaluate_on_equal_terms(PopularityScorer.from_dataset(dataset), test, progress=False)
    if "zero-shot" not in results:
        progress(0.05, f"the zero-shot model on {len(valid):,} validation and {len(test):,} test users")
        results["zero-shot"] = evaluate_on_equal_terms(zero_shot, test, valid, log_popularity, batch_size=batch_size,
                                                       progress=False)
    if adapted is not None:
        progress(0.9, "the adapted model")
        results["adapted"] = evaluate_on_equal_terms(adapted, test, valid, log_popularity, batch_size=batch_size,
                                                     progress=False)
    rows = [{"model": "popularity (the shop's best-sellers)", "cells": _cells(results["popularity"], priors=False)},
            {"model": "JEPA4Rec, zero-shot", "cells": _cells(results["zero-shot"], priors=False)},
            {"model": "JEPA4Rec, zero-shot + score priors", "cells": _cells(results["zero-shot"], priors=True)}]
    paired = {}
    if adapted is not None:
        rows += [{"model": "adapted", "cells": _cells(results["adapted"], priors=False)},
                 {"model": "adapted + score priors", "cells": _cells(results["adapted"], priors=True)}]
        for protocol in PROTOCOLS:
            # Like with like: both with the priors fitted for each on the same validation split.
            c = compare(results["zero-shot"]["ranks"][f"{protocol}_priors"],
                        results["adapted"]["ranks"][f"{protocol}_priors"], "NDCG@10")
            paired[protocol] = {"a": "JEPA4Rec, zero-shot + score priors", "b": "adapted + score priors",
                                "metric": "NDCG@10",
                                "a_value": c.a, "b_value": c.b, "ratio": c.ratio, "ratio_low": c.ratio_low,
                                "ratio_high": c.ratio_high, "p_value": c.p_value}
    progress(1.0, "done")
    return {"users": len(test), "all_users": dataset.n_users, "items": dataset.n_items, "rows": rows, "paired": paired,
            "fits": {name: r["fits"] for name, r in results.items()}, "seconds": round(time.perf_counter() - started, 1)}


def _cells(result: dict, priors: bool) -> dict:
    """A model's two protocols, raw or with the priors, as {"kept": metrics, "excluded": metrics}."""
    names = [c for c in CELLS if c.endswith("_priors") == priors]
    return {name.removesuffix("_priors"): {m: result["cells"][name][m] for m in HEADLINE} for name in names}
