"""The app's named API endpoints (``/recommend``, ``/search``, ``/explain``, ``/new_item``, ``/compare``,
``/recommend_catalogue``, and a shop owner's ``/evaluate_upload``, ``/adapt_upload``, ``/download_model``), for
``gradio_client`` and MCP clients: module-level functions of the service and
their parameters, each behind the one error boundary (:func:`app.boundary.api_boundary`); :func:`endpoints`
binds them to a running service.

No ``from __future__ import annotations`` here: Gradio reads these functions' type hints at runtime to
type each parameter, and postponed (string) annotations would leave every parameter typed "Any".
"""
import functools
import inspect
from typing import Optional

from gradio import FileData

from jepa4rec.data.catalogue import missing_ids

from . import handlers as H
from .boundary import api_boundary
from .service import DEFAULT_SCORED_USERS, MAX_SCORED_USERS, AppService


def _served(service: AppService, dataset: str):
    names = service.dataset_names()
    if dataset not in names:
        raise H.UserInputError(f"unknown dataset {dataset!r}; available: {', '.join(names)}")
    return service.get(dataset)


@api_boundary
def recommend(service: AppService, dataset: str, history: list[int], target: Optional[int] = None,
              reveal: Optional[float] = None, k: int = 10, allow_repeats: Optional[bool] = None) -> dict:
    """Rank every item of a dataset's catalogue for a purchase history.

    Args:
        dataset: a dataset name the app offers, e.g. "ml-100k".
        history: item ids (0-based catalogue positions, as /search returns them), oldest first.
        target: an item id whose rank is reported (optional).
        reveal: share (0-1) of the target's words revealed to the model; needs target.
        k: how many items to return, 1-100.
        allow_repeats: whether history items may be recommended (default: true for Online Retail only).

    Returns:
        {"dataset", "checkpoint", "mode", "history_excluded", "items": [{"item", "key", "title", "score"}],
        "target_rank", "revealed_words"}
    """
    return H.api_recommend(_served(service, dataset), history, target, reveal, k, allow_repeats)


@api_boundary
def search(service: AppService, dataset: str, query: str, limit: int = 20) -> list[dict]:
    """Find catalogue items whose title contains every word of a query.

    Args:
        dataset: a dataset name the app offers, e.g. "ml-100k".
        query: words to look for in titles (case-insensitive).
        limit: the most items to return, 1-100.

    Returns:
        [{"item", "key", "title"}], prefix matches first.
    """
    return H.api_search(_served(service, dataset), query, limit)


@api_boundary
def explain(service: AppService, dataset: str, history: list[int], item: int) -> dict:
    """Why an item scores as it does for a history: each history item's and each of its words' pull.

    Args:
        dataset: a dataset name the app offers, e.g. "ml-100k".
        history: item ids, oldest first (at least one).
        item: the item id to explain.

    Returns:
        {"item", "title", "history": [{"item", "title", "delta"}], "words": [{"word", "delta"}]}; delta is
        the cosine score lost when that history item is left out, or that word masked.
    """
    served = _served(service, dataset)
    return H.explain_item(served, history, item)  # checks the history (H.check_history)


@api_boundary
def new_item(service: AppService, dataset: str, history: list[int], attributes: dict[str, str],
             allow_repeats: Optional[bool] = None) -> dict:
    """Where an item the catalogue does not have would rank for a history, and its nearest items.

    Args:
        dataset: a dataset name the app offers, e.g. "ml-100k".
        history: item ids, oldest first.
        attributes: the new item's text, e.g. {"title": "Toy Story 5", "genres": "Animation"}.
        allow_repeats: whether history items count as competitors (default: the dataset's default).

    Returns:
        {"rank", "of", "score", "history_used", "neighbours": [{"item", "title", "cosine"}]}
    """
    served = _served(service, dataset)
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise H.UserInputError('attributes must be an object of text values, e.g. {"title": "..."}')
    attrs = {str(k).strip(): v.strip() for k, v in attributes.items() if str(k).strip() and v.strip()}
    if not attrs:
        raise H.UserInputError("the new item has no text: give it a title or another attribute")
    return H.new_item_view(served, history, attrs, allow_repeats)  # checks the history


@api_boundary
def compare(service: AppService, dataset: str, history: list[int], allow_repeats: Optional[bool] = None) -> dict:
    """JEPA4Rec's top 10 beside the RecFormer-style model's and (where the dataset has one) SASRec's.

    Args:
        dataset: a dataset name the app offers, e.g. "ml-100k".
        history: item ids, oldest first (at least one).
        allow_repeats: whether history items may be recommended (default: the dataset's default).

    Returns:
        {"dataset", "models": [{"model", "checkpoint", "mode", "ndcg", "items"}], "overlaps": {"A & B": n},
        "in_all", "titles": {item: title}}
    """
    served = _served(service, dataset)
    history = H.check_history(served, history)
    if not history:
        raise H.UserInputError("history must hold at least one item")
    view = H.compare_view(service, dataset, history, allow_repeats)
    view["titles"] = {str(k): v for k, v in view["titles"].items()}  # JSON object keys are text
    return view


@api_boundary
def recommend_catalogue(service: AppService, items: str, history: list[str], target: Optional[str] = None,
                        reveal: Optional[float] = None, k: int = 10, format: str = "csv") -> dict:
    """Rank a catalogue you send (its file's content) zero-shot for a history of its ids.

    Args:
        items: the item file's text: CSV (header first) or JSON lines, an id column (item_id or id) and
            text columns, written into each item's sentence in the header's order; at most 200 MB.
        history: ids from the id column, oldest first.
        target: an id whose rank is reported (optional).
        reveal: share (0-1) of the target's words shown to the model; needs target.
        k: how many items to return, 1-100.
        format: "csv" or "jsonl".

    Returns:
        {"items": [{"id", "title", "score"}], "target_rank", "revealed_words", "catalogue", "report"}; the
        catalogue is held in memory for the next call with the same content, then replaced.
    """
    if format not in ("csv", "jsonl"):
        raise H.UserInputError(f'format must be "csv" or "jsonl", got {format!r}')
    if not isinstance(items, str) or not items.strip():
        raise H.UserInputError("items must be the item file's text (CSV or JSON lines)")
    # Before the catalogue is encoded; its ids are the file's, not positions: checked against its index below.
    history = H.history_list(history)
    # A file the reader refuses is a DataFormatError: the boundary shows its message.
    served = service.add_upload("api", f"catalogue.{format}", label=f"catalogue.{format}", items_text=items)
    index = served.dataset.item_index()
    missing = [i for i in history + ([target] if target is not None else []) if str(i) not in index]
    if missing:
        if set(map(str, missing)) & set(served.recommender.dropped_items):  # in the file, but no text
            raise H.UserInputError(missing_ids(f"catalogue.{format}", list(map(str, missing)),
                                               served.recommender.dropped_items))
        raise H.UserInputError(f"no item with id {', '.join(map(repr, missing[:5]))} in the catalogue")
    out = H.api_recommend(served, [index[str(i)] for i in history],
                          None if target is None else index[str(target)], reveal, k)
    return {"items": [{"id": r["key"], "title": r["title"], "score": r["score"]} for r in out["items"]],
            "target_rank": out["target_rank"], "revealed_words": out["revealed_words"],
            "catalogue": served.dataset.n_items, "report": served.dataset.report}


def _shop(service: AppService, items: str, interactions: str, format: str):
    """A catalogue and its purchases sent as text, held like a visitor's upload (the same content is read once)."""
    if format not in ("csv", "jsonl"):
        raise H.UserInputError(f'format must be "csv" or "jsonl", got {format!r}')
    for what, text in (("items", items), ("interactions", interactions)):
        if not isinstance(text, str) or not text.strip():
            raise H.UserInputError(f"{what} must be the {what} file's text ({format})")
    return service.add_upload("api", f"catalogue.{format}", f"purchases.{format}", label=f"catalogue.{format}",
                              items_text=items, interactions_text=interactions)


def _users(users) -> int:
    """The number of customers to score, refused (not clamped) when it is not one: an API caller fixes the call."""
    kept, said = H.clamp_number(users, 0, MAX_SCORED_USERS, "users")
    if said:
        raise H.UserInputError(said.replace(": set to", "; give a whole number within the range, e.g."))
    return kept


@api_boundary
def evaluate_upload(service: AppService, items: str, interactions: str, format: str = "csv",
                    users: int = DEFAULT_SCORED_USERS) -> dict:
    """How well each model ranks your own held-out purchases: popularity, the pre-trained model zero-shot, the
    same with score priors fitted on your data, and the adapted model once /adapt_upload has made one.

    Args:
        items: the item file's text: CSV or JSON lines, an id column (item_id or id) and text columns.
        interactions: the purchases' text: user, item (an id of the item file) and optionally time columns.
        format: "csv" or "jsonl".
        users: score the first this many customers (0: all, up to 20,000); 1,000 take about half a minute.

    Returns:
        {"users", "all_users", "items", "rows": [{"model", "cells": {"kept"|"excluded": {"NDCG@10", "Recall@10",
        "MRR"}}}], "paired": {protocol: adapted + priors / zero-shot + priors}, "seconds", "report"}
    """
    users = _users(users)
    served = _shop(service, items, interactions, format)
    board = service.scoreboard(served, users)
    return {k: v for k, v in board.items() if k != "fits"} | {"report": served.dataset.report}


@api_boundary
def adapt_upload(service: AppService, items: str, interactions: str, minutes: float = 2.0,
                 format: str = "csv", users: int = DEFAULT_SCORED_USERS) -> dict:
    """Adapt a model to your purchases within ``minutes`` of training (one adaptation at a time on the server),
    then score it beside the others.

    Args:
        items: the item file's text (as /evaluate_upload).
        interactions: the purchases' text (as /evaluate_upload).
        minutes: the training time to give it, 0.25-10.
        format: "csv" or "jsonl".
        users: the customers its scoreboard scores (as /evaluate_upload); it trains on all of them.

    Returns:
        the scoreboard (as /evaluate_upload) with the adapted model's rows, and "adapter": how it was trained.
    """
    users = _users(users)
    minutes, said = H.clamp_number(minutes, 0.25, 10, "minutes", whole=False)
    if said:
        raise H.UserInputError(said.replace(": set to", "; give a value within the range, e.g."))
    served = _shop(service, items, interactions, format)
    board = service.adapt(served, minutes * 60, "api", users=users)
    return ({k: v for k, v in board.items() if k != "fits"}
            | {"report": served.dataset.report, "adapter": served.adapted.adapter.card})


@api_boundary
def download_model(service: AppService, items: str, interactions: str, format: str = "csv") -> FileData:
    """The model /adapt_upload adapted to these files, as a zip of its model folder (safetensors + JSON):
    `python -m jepa4rec.evaluate --checkpoint FOLDER --items ... --interactions ... --priors fit` reproduces
    its scoreboard row, and `python -m jepa4rec.recommend --checkpoint FOLDER` serves it.

    Args:
        items: the item file's text (as /adapt_upload).
        interactions: the purchases' text (as /adapt_upload).
        format: "csv" or "jsonl".
    """
    served = _shop(service, items, interactions, format)
    path = service.adapted_archive(served)
    return FileData(path=str(path), orig_name=path.name)


ENDPOINTS = (recommend, search, explain, new_item, compare, recommend_catalogue, evaluate_upload, adapt_upload,
             download_model)
MODEL_ENDPOINTS = {"recommend", "explain", "new_item", "compare", "recommend_catalogue", "evaluate_upload",
                   "adapt_upload"}  # run the model (gpu-wrapped)
RANKING_ENDPOINTS = {"recommend", "recommend_catalogue", "new_item", "search"}  # app.batching.RANKING_CONCURRENCY


def bind(fn, service: AppService):
    """``fn`` with ``service`` given: what Gradio sees is the endpoint's own parameters, names and docstring."""
    @functools.wraps(fn)
    def bound(*args, **kwargs):
        return fn(service, *args, **kwargs)

    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    bound.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "service"}
    return bound


def endpoints(service: AppService, gpu=lambda fn: fn) -> list:
    """Every endpoint bound to ``service``; ``gpu`` wraps the ones that run the model (a Space's ZeroGPU)."""
    return [gpu(bind(fn, service)) if fn.__name__ in MODEL_ENDPOINTS else bind(fn, service) for fn in ENDPOINTS]
