"""The app's handlers as plain functions: plain data in, plain data (and figures) out.

Gradio callbacks in :mod:`app.ui` are one-line wrappers around these, so the tests call them
directly. All ranking goes through :class:`jepa4rec.recommend.Recommender`.
"""
from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from .service import Served

REVEAL_STEPS = [i / 10 for i in range(11)]
_LABEL_ID = re.compile(r"\[#(\d+)\]\s*$")


def item_label(served: Served, item: int) -> str:
    return f"{served.recommender.titles[item]} [#{item}]"


def parse_label(label: str | int | None) -> int | None:
    """The item id of a dropdown label ``"title [#12]"`` (or an id given directly)."""
    if label is None or label == "":
        return None
    if isinstance(label, int):
        return label
    m = _LABEL_ID.search(str(label))
    if not m:
        raise ValueError(f"not an item label: {label!r}")
    return int(m.group(1))


def search_catalogue(served: Served, query: str, limit: int = 20) -> list[str]:
    """Items whose title contains every word of ``query`` (case-insensitive); prefix matches first."""
    words = (query or "").lower().split()
    if not words:
        return []
    titles = served.recommender.titles
    hits = [i for i, t in enumerate(titles) if all(w in t.lower() for w in words)]
    hits.sort(key=lambda i: (not titles[i].lower().startswith(words[0]), len(titles[i])))
    return [item_label(served, i) for i in hits[:limit]]


def history_table(served: Served, history: list[int]) -> pd.DataFrame:
    titles = served.recommender.titles
    return pd.DataFrame({"#": list(range(1, len(history) + 1)), "item (oldest first)": [titles[i] for i in history]})


def add_item(history: list[int], item: int | None, max_items: int = 50) -> list[int]:
    if item is None:
        return list(history)
    return (list(history) + [int(item)])[-max_items:]


def remove_item(history: list[int], position: int) -> list[int]:
    """Remove the item at 1-based ``position`` (out-of-range positions change nothing)."""
    h = list(history)
    if 1 <= int(position) <= len(h):
        del h[int(position) - 1]
    return h


def move_item(history: list[int], position: int, delta: int) -> list[int]:
    """Move the item at 1-based ``position`` by ``delta`` places (clamped to the list)."""
    h = list(history)
    i = int(position) - 1
    if not 0 <= i < len(h):
        return h
    j = max(0, min(len(h) - 1, i + int(delta)))
    h.insert(j, h.pop(i))
    return h


def load_user(served: Served, user: int, max_items: int = 20) -> tuple[list[int], int]:
    """A real user's test case: (the most recent ``max_items`` of the history, the true next item)."""
    cases = served.dataset.test_cases()
    if not 0 <= int(user) < len(cases):
        raise ValueError(f"user must be within 0..{len(cases) - 1}, got {user}")
    case = cases[int(user)]
    return list(case.history[-max_items:]), case.target


def movement(previous_top: list[int], item: int, rank: int) -> str:
    if not previous_top:
        return ""
    if item not in previous_top:
        return "new"
    delta = previous_top.index(item) + 1 - rank
    return "=" if delta == 0 else (f"▲{delta}" if delta > 0 else f"▼{-delta}")


def rank_view(served: Served, history: list[int], target: int | None, reveal_pct: float | None,
              previous_top: list[int], order: str = "sequential", k: int = 10) -> tuple[pd.DataFrame, str, list[int]]:
    """The top-k table (with movement since ``previous_top``), a summary line, and the new top ids."""
    rec = served.recommender
    reveal = None if target is None or reveal_pct is None else float(reveal_pct) / 100.0
    out = rec.recommend(history, k=k, target=target, reveal=reveal, reveal_order=order)
    table = pd.DataFrame({
        "rank": list(range(1, len(out.items) + 1)),
        "item": [r.title for r in out.items],
        "score": [round(r.score, 4) for r in out.items],
        "move": [movement(previous_top, r.item, i + 1) for i, r in enumerate(out.items)],
        "target": ["◀ target" if r.item == target else "" for r in out.items],
    })
    if target is None:
        summary = f"No target chosen: ranking by the history alone over {served.dataset.n_items:,} items."
    else:
        plain = rec.recommend(history, k=1, target=target).target_rank
        words = ", ".join(f"'{w}'" for w in out.revealed_words) or "none"
        summary = (f"**Target:** {rec.titles[target]}  \n**Rank with {reveal_pct:.0f}% revealed:** {out.target_rank:,} "
                   f"of {served.dataset.n_items:,} (history alone: {plain:,})  \n**Revealed words:** {words}")
    return table, summary, [r.item for r in out.items]


def reveal_curve(served: Served, history: list[int], target: int, order: str = "sequential") -> pd.DataFrame:
    ranks = served.recommender.reveal_curve(history, target, REVEAL_STEPS, order=order)
    return pd.DataFrame({"reveal %": [round(r * 100) for r in REVEAL_STEPS], "target rank": ranks})


def item_groups(items: list[dict], top: int = 10) -> list[str]:
    """A colour group per item: its first genre, or the first category level that tells items apart.

    Comma-separated category paths give levels; space-joined ones (UniSRec's text) give words, of which
    two are kept. Leading levels that nearly every item shares (e.g. "Industrial & Scientific") are
    skipped; groups beyond the ``top`` most frequent become "other".
    """
    paths: list[list[str] | None] = []
    width: list[int] = []
    for attrs in items:
        cats = attrs.get("categories", "")
        if attrs.get("genres") or not cats:
            paths.append(None)
            width.append(0)
        elif "," in cats:
            paths.append([p.strip() for p in cats.split(",") if p.strip()])
            width.append(1)
        else:
            paths.append(cats.split())
            width.append(2)
    with_path = [p for p in paths if p]
    depth = 0
    while with_path:
        heads = Counter(tuple(p[:depth + 1]) for p in with_path if len(p) > depth)
        if not heads or heads.most_common(1)[0][1] < 0.8 * len(with_path):
            break
        depth += 1
    raw = []
    for attrs, path, w in zip(items, paths, width):
        if attrs.get("genres"):
            raw.append(attrs["genres"].split(",")[0].strip())
        elif path:
            raw.append(" ".join(path[depth:depth + w]) or " ".join(path[-w:]))
        else:
            raw.append("")
    keep = {g for g, _ in Counter(raw).most_common(top) if g}
    return [g if g in keep else "other" for g in raw]


def api_recommend(served: Served, history: list[int], target: int | None = None, reveal: float | None = None,
                  k: int = 10) -> dict:
    """The JSON the named ``recommend`` endpoint returns."""
    out = served.recommender.recommend([int(i) for i in history], k=int(k), target=None if target is None else int(target),
                                       reveal=None if reveal is None else float(reveal))
    return {
        "dataset": served.name,
        "checkpoint": served.checkpoint.name,
        "items": [{"item": r.item, "key": r.key, "title": r.title, "score": r.score} for r in out.items],
        "target_rank": out.target_rank,
        "revealed_words": out.revealed_words,
    }
