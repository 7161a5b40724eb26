"""The app's handlers as plain functions: plain data in, plain data (and HTML) out.

Gradio callbacks in :mod:`app.ui` are thin wrappers around these, so the tests call them directly.
All ranking goes through :class:`jepa4rec.recommender.Recommender`. A mistake by the visitor raises
:class:`UserInputError` with a sentence meant for them; the UI shows it as a warning.
"""
from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from .boundary import UserInputError  # noqa: F401 -- the handlers' mistakes, H.UserInputError to callers
from .service import DATASET_INFO, Served, dataset_label

REVEAL_STEPS = [i / 10 for i in range(11)]
MAX_HISTORY = 50  # items a visitor's history may hold (the models read at most their max_items of them)
MAX_K = 100  # the most items one ranking request returns
SCORINGS = {  # label shown in the app -> Recommender reveal_mode
    "history + revealed words": "evidence",
    "next-item predictor (paper's FFN2)": "predictor",
}
DEFAULT_SCORING = "history + revealed words"


# --- catalogue and history --------------------------------------------------------------------------

def _shown(text: str) -> str:
    """A text as a browser shows it: runs of spaces collapse to one."""
    return " ".join(str(text).split())


def item_choices(served: Served, ids: list[int]) -> list[tuple[str, int]]:
    """(label, item id) pairs for a dropdown: the title; where titles look alike on screen (equal once spaces
    collapse, as "LUNCH BAG SUKI DESIGN" and "LUNCH BAG SUKI  DESIGN"), the catalogue key where it tells them
    apart, else "variant k of n" (in catalogue order, the same every time)."""
    titles = served.recommender.titles
    keys = served.dataset.item_keys
    shown = {i: _shown(titles[i]) for i in ids}
    alike: dict[str, list[int]] = {}
    for i in sorted(ids):
        alike.setdefault(shown[i], []).append(i)
    labels = {}
    for title, group in alike.items():
        distinct_keys = len({_shown(keys[i]) for i in group}) == len(group) and all(_shown(keys[i]) != title for i in group)
        for k, i in enumerate(group, 1):
            if len(group) == 1:
                labels[i] = title
            elif distinct_keys:
                labels[i] = f"{title} ({_shown(keys[i])})"
            else:
                labels[i] = f"{title} (variant {k} of {len(group)})"
    return [(labels[i], int(i)) for i in ids]


def search_catalogue(served: Served, query: str, limit: int = 20) -> list[int]:
    """Ids of items whose title contains every word of ``query`` (case-insensitive); prefix matches first."""
    words = (query or "").lower().split()
    if not words:
        return []
    titles = served.recommender.titles
    hits = [i for i, t in enumerate(titles) if all(w in t.lower() for w in words)]
    hits.sort(key=lambda i: (not titles[i].lower().startswith(words[0]), len(titles[i])))
    return hits[:max(1, int(limit))]


def matches_label(served: Served, query: str | None, ids: list[int]) -> str:
    """The label of the search's match list: how many matched, or that none did."""
    q = (query or "").strip()
    if not q:
        return "Matches"
    if not ids:
        return f"Matches: no title in {served.display_name} contains every word of “{q}”"
    return f"Matches ({len(ids)})" if len(ids) < 20 else "Matches (the first 20: type more words to narrow them)"


def empty_history() -> pd.DataFrame:
    return pd.DataFrame({"#": pd.Series([], dtype=int), "item (oldest first)": pd.Series([], dtype=str)})


def history_table(served: Served, history: list[int]) -> pd.DataFrame:
    titles = served.recommender.titles
    return pd.DataFrame({"#": list(range(1, len(history) + 1)), "item (oldest first)": [titles[i] for i in history]})


def check_item(served: Served, item, what: str = "item") -> int:
    """``item`` as a catalogue id, or a UserInputError naming what is wrong with it."""
    n = served.dataset.n_items
    try:
        number = float(item)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(item, bool) or not number.is_integer():
        raise UserInputError(f"{what} must be an item id (a whole number 0..{n - 1}), got {item!r}")
    value = int(number)
    if not 0 <= value < n:
        raise UserInputError(f"{what} {value} is not in {served.display_name}'s catalogue (ids 0..{n - 1})")
    return value


def whole_number(value, what: str, lo: int, hi: int) -> int:
    """``value`` as an int, or a UserInputError: int() would truncate 2.7 to 2 without a word and raise
    OverflowError on inf. The caller checks the range (each says it in its own words)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer():
        raise UserInputError(f"{what} must be a whole number {lo}..{hi}, got {value!r}")
    return int(number)


def clamp_number(value, lo: float, hi: float, what: str, whole: bool = True) -> tuple[float | int, str | None]:
    """``value`` within ``lo..hi`` (rounded to a whole number when ``whole``), and the sentence that says what was
    changed (None when nothing was): a visitor's 150 becomes 100, 2.5 becomes 2 with a word, never a traceback."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if number != number:  # NaN, text, empty
        return lo, f"{what} must be a number {lo:g}..{hi:g}, got {value!r}: set to {lo:g}."
    kept = min(max(number, lo), hi)
    if whole:
        kept = int(round(kept))
    if kept == number:
        return kept, None
    why = "is not a whole number" if whole and lo <= number <= hi else f"is outside {lo:g}..{hi:g}"
    return kept, f"{what} {value:g} {why}: set to {kept:g}."


def check_history(served: Served, history) -> list[int]:
    """``history`` as catalogue ids, or a UserInputError: every view and endpoint checks it here, so None, a
    string (iterated letter by letter) or an id of another catalogue (IndexError, or -1 reading the last
    item) gets a sentence."""
    return [check_item(served, i, "history item") for i in history_list(history)]


def history_list(history) -> list:
    """``history`` as a list, or a UserInputError (ids unchecked: /recommend_catalogue's are its file's)."""
    if isinstance(history, (str, bytes)) or not isinstance(history, (list, tuple)):
        raise UserInputError(f"history must be a list of item ids, got {type(history).__name__}")
    return list(history)


def add_item(served: Served, history: list[int], item) -> tuple[list[int], str | None]:
    """The history with ``item`` appended, and a note when the oldest item had to make room."""
    if item is None or item == "":
        raise UserInputError("Nothing is selected: search the catalogue and pick an item under Matches first.")
    item = check_item(served, item)
    history = list(history) + [item]
    note = None
    if len(history) > MAX_HISTORY:
        dropped = history.pop(0)
        note = f"A history holds at most {MAX_HISTORY} items: the oldest, '{served.recommender.titles[dropped]}', was dropped."
    return history, note


def _row(history: list[int], position) -> int:
    if not history:
        raise UserInputError("The history is empty: add items first.")
    row = whole_number(position, "Row #", 1, len(history))
    if not 1 <= row <= len(history):
        raise UserInputError(f"Row # {row} is not in the history (rows 1..{len(history)}).")
    return row - 1


def remove_item(history: list[int], position) -> list[int]:
    """Remove the item at 1-based ``position``."""
    h = list(history)
    del h[_row(h, position)]
    return h


def move_item(history: list[int], position, delta: int) -> list[int]:
    """Move the item at 1-based ``position`` by ``delta`` places (clamped to the list)."""
    h = list(history)
    i = _row(h, position)
    j = max(0, min(len(h) - 1, i + int(delta)))
    h.insert(j, h.pop(i))
    return h


def load_user(served: Served, user, max_items: int = 20) -> tuple[list[int], int]:
    """A real user's test case: (the most recent ``max_items`` of the history, the true next item)."""
    cases = served.dataset.test_cases()
    try:
        number = float(user)
    except (TypeError, ValueError):
        raise UserInputError(f"Enter a user number 0..{len(cases) - 1}.") from None
    if not number.is_integer():
        raise UserInputError(f"The user number must be a whole number 0..{len(cases) - 1}, got {user}.")
    user = int(number)
    if not 0 <= user < len(cases):
        raise UserInputError(f"{served.display_name} has test users 0..{len(cases) - 1}; there is no user {user}.")
    case = cases[user]
    return list(case.history[-max_items:]), case.target


# --- ranking views ----------------------------------------------------------------------------------

_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$")


def clean_words(words: list[str]) -> list[str]:
    """Revealed words as a reader expects them: no stray brackets or commas, nothing empty, and a word that a
    comma joins without a space (LC-Rec's "Scientific,Abrasive" category path) shown as the words it holds."""
    out = [_EDGE_PUNCT.sub("", part) for w in words for part in re.split(r"[,;/|]+", w)]
    return [w for w in out if w]


@dataclass
class RankView:
    history_only: list[dict]  # rows: rank, item, title, score, target
    revealed: list[dict] | None  # the same with the target partly revealed; None without a target
    summary: str  # markdown
    target_rank_history: int | None
    target_rank_revealed: int | None
    revealed_words: list[str]


def _rows(out, target: int | None) -> list[dict]:
    return [{"rank": i + 1, "item": r.item, "title": r.title, "score": r.score, "target": r.item == target}
            for i, r in enumerate(out.items)]


def rank_view(served: Served, history: list[int], target: int | None, reveal_pct: float | None,
              order: str = "sequential", scoring: str = DEFAULT_SCORING, allow_repeats: bool | None = None,
              k: int = 10) -> RankView:
    """The history-only top k beside the top k with ``reveal_pct`` % of the target's words revealed."""
    rec = served.recommender
    history = check_history(served, history)
    target = None if target is None else check_item(served, target, "target")
    if scoring not in SCORINGS:
        raise UserInputError(f"unknown scoring {scoring!r}; choose one of {list(SCORINGS)}")
    exclude = not (served.repeats_by_default if allow_repeats is None else allow_repeats)
    plain = rec.recommend(history, k=k, target=target, exclude_history=exclude)
    n = served.dataset.n_items
    if target is None:
        summary = (f"No target chosen: ranking every one of the {n:,} items by the history alone. Pick a target "
                   "(or load a test user) to reveal its words.")
        return RankView(_rows(plain, None), None, summary, None, None, [])
    pct = clamp_number(reveal_pct, 0, 100, "Reveal %", whole=False)[0]
    if not 0 <= pct <= 100:
        raise UserInputError(f"reveal must be 0..100 %, got {pct}")
    mode = SCORINGS[scoring]
    out = rec.recommend(history, k=k, target=target, reveal=pct / 100, reveal_order=order, reveal_mode=mode,
                        exclude_history=exclude)
    words = clean_words(out.revealed_words)
    shown, n_words = rec.reveal_count(target, pct / 100)
    if mode == "evidence":
        how = ("0% is the history-only ranking; each revealed word adds evidence" if pct == 0
               else "history + revealed words")
    else:
        how = ("the paper's predictor with every value word masked (only the attribute names known): "
               "not the history-only ranking" if pct == 0 else "the paper's next-item predictor")
    summary = (f"**Target:** {html.escape(rec.titles[target])}  \n"
               f"**History alone:** rank {plain.target_rank:,} of {n:,}  \n"
               f"**With {pct:.0f}% revealed** ({shown} of {n_words} words; {how}): rank **{out.target_rank:,}**  \n"
               f"**Revealed words:** {html.escape(', '.join(words)) or 'none'}")
    if target in history:
        # The target competes (as in the CLI and the evaluation), so a low rank needs its reason beside it.
        note = "The target is already in the history"
        if exclude:
            note += ": it still competes, while the other history items are left out"
        if rec.repeat_bias:
            note += (f"; this model's repeat bias ({rec.repeat_bias:+.3f}) is added to its score, as to every "
                     "history item's, less as its words are revealed")
        summary += f"  \n*{note}.*"
    return RankView(_rows(plain, target), _rows(out, target), summary, plain.target_rank, out.target_rank, words)


def movement(before: list[int], item: int, rank: int) -> str:
    if not before:
        return ""
    if item not in before:
        return "new"
    delta = before.index(item) + 1 - rank
    return "=" if delta == 0 else (f"▲{delta}" if delta > 0 else f"▼{-delta}")


TABLE_CSS = """
.toplist {width: 100%; border-collapse: collapse; table-layout: fixed; font-size: 0.92em;}
.toplist th, .toplist td {padding: 3px 6px; border-bottom: 1px solid var(--border-color-primary); vertical-align: top;}
.toplist th {text-align: left; font-weight: 600; white-space: nowrap;}
.toplist .num {width: 3.2em; text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums;}
.toplist .score {width: 4.4em;}
.toplist .move {width: 4em;}  /* "▲123" and the header fit without touching the score */
.toplist .title {overflow-wrap: anywhere; word-break: break-word;}
.toplist tr.target td {background: rgba(255, 200, 0, 0.25); font-weight: 600;}
.toplist caption {text-align: left; font-weight: 600; padding-bottom: 4px;}
"""


def top_table_html(rows: list[dict] | None, caption: str, before: list[int] | None = None) -> str:
    """A top-k table that holds with long titles and narrow screens: fixed narrow numeric columns,
    titles wrapped; the target's row highlighted; with ``before``, each item's move against it."""
    if rows is None:
        return ""
    head = "<th class='num'>#</th><th class='title'>item</th><th class='num score'>score</th>"
    if before is not None:
        head += "<th class='num move'>move</th>"
    body = []
    for r in rows:
        cells = (f"<td class='num'>{r['rank']}</td><td class='title'>{html.escape(r['title'])}"
                 f"{' ◀ target' if r['target'] else ''}</td><td class='num score'>{r['score']:.3f}</td>")
        if before is not None:
            cells += f"<td class='num move'>{movement(before, r['item'], r['rank'])}</td>"
        body.append(f"<tr class='{'target' if r['target'] else ''}'>{cells}</tr>")
    if not body:
        body.append("<tr><td colspan='4'>nothing to rank</td></tr>")
    return (f"<table class='toplist'><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def side_by_side(*tables: str) -> str:
    """Tables next to each other that stack on a narrow screen (each keeps at least 300 px)."""
    cells = "".join(f"<div style='flex: 1 1 300px; min-width: 0'>{t}</div>" for t in tables if t)
    return f"<style>{TABLE_CSS}</style><div style='display: flex; flex-wrap: wrap; gap: 14px'>{cells}</div>"


def reveal_curve(served: Served, history: list[int], target: int, order: str = "sequential",
                 scoring: str = DEFAULT_SCORING, allow_repeats: bool | None = None) -> pd.DataFrame:
    exclude = not (served.repeats_by_default if allow_repeats is None else allow_repeats)
    ranks = served.recommender.reveal_curve(history, target, REVEAL_STEPS, order=order, mode=SCORINGS[scoring],
                                            exclude_history=exclude)
    return pd.DataFrame({"reveal %": [round(r * 100) for r in REVEAL_STEPS], "target rank": ranks})


# --- dataset badge ----------------------------------------------------------------------------------

def unavailable_markdown(name: str, err: Exception) -> str:
    """What the badge says when a dataset is neither here nor fetchable: why, and the one command that fetches it."""
    from jepa4rec.data.sources import SOURCES, download_command

    fetch = (f" Fetch it where there is network with `{download_command(name)}` and point the app at its folder "
             "(`--data-root`), or choose another dataset." if name in SOURCES else "")
    return f"**{html.escape(dataset_label(name))} is not available here**: {html.escape(str(err))}.{fetch}"


def badge_markdown(served: Served) -> str:
    """Whether the served model was trained on this dataset, and its measured test NDCG@10 beside popularity's."""
    if served.extends:
        return (f"**{html.escape(served.dataset.name)}**: {served.dataset.n_items:,} items, the ones you typed "
                f"among them, for this visit only; served {served.mode} by `{served.checkpoint.name}`")
    if served.uploaded:
        users = (f"{served.dataset.n_users:,} users with a test item; popularity test NDCG@10 "
                 f"{served.popularity['NDCG@10']:.4f}" if served.popularity else "no interactions, so no test split")
        notes = "".join(f"  \n{html.escape(r)}" for r in served.dataset.report)
        return (f"**Your catalogue** ({html.escape(served.dataset.name)}): ranked zero-shot by the pre-trained model, "
                f"held for this visit only · {served.dataset.n_items:,} items · {users}{notes}")
    metrics = served.model_test_metrics()
    pop = served.popularity.get("NDCG@10")
    # Both figures under the model's own protocol: history kept, with score priors only if the model has them
    # (popularity's then fitted the same way on validation), so the two compare like with like.
    protocol = ("history kept, with score priors fitted on validation" if served.popularity.get("priors")
                else "history kept, no score priors")
    pop_text = f"popularity {pop:.4f}" if pop is not None else "popularity not measured"
    if served.mode == "fine-tuned":
        kind = f"**Fine-tuned on {html.escape(dataset_label(served.name))}**"
    else:
        kind = f"**Zero-shot**: the pre-trained model never saw {html.escape(dataset_label(served.name))}'s interactions"
    score = (f"test NDCG@10 **{metrics['NDCG@10']:.4f}**" if metrics and "NDCG@10" in metrics
             else "test NDCG@10 not measured for this dataset")
    about = DATASET_INFO.get(served.name, (served.name, ""))
    return (f"**{html.escape(about[0])}**: {html.escape(about[1])}  \n{kind} · {score} ({pop_text}; both {protocol}; "
            f"all users, every item ranked) · {served.dataset.n_items:,} items")


# --- why this item, and a brand-new item -------------------------------------------------------------

def explain_item(served: Served, history: list[int], item) -> dict:
    """Which history items carry ``item``'s score, and which of its words matter (scored as the ranking
    is, score priors included)."""
    from jepa4rec.explain import history_contributions, word_importance

    item = check_item(served, item, "the item to explain")
    history = check_history(served, history)
    if not history:
        raise UserInputError("The history is empty: an item's score comes from the history, so add items first.")
    rec = served.recommender
    return {
        "item": item, "title": rec.titles[item],
        "history": [{"item": c.item, "title": c.label, "delta": c.delta}
                    for c in history_contributions(rec, history, item)],
        "words": [{"word": c.label, "delta": c.delta} for c in word_importance(rec, history, item)],
    }


def parse_attributes(title: str, extra: str) -> dict[str, str]:
    """A new item's attributes from a title and "name: value; name: value" (e.g. "brand: Acme; year: 1999")."""
    attrs = {"title": (title or "").strip()} if (title or "").strip() else {}
    for part in (extra or "").split(";"):
        if not part.strip():
            continue
        if ":" not in part:
            raise UserInputError(f"'{part.strip()}' is not 'name: value' (separate attributes with ';')")
        name, value = (x.strip() for x in part.split(":", 1))
        if not name:
            raise UserInputError(f"'{part.strip()}' has no attribute name before ':'")
        if value:
            attrs[name] = value
    if not attrs:
        raise UserInputError("Give the new item a title (or another attribute): a text model ranks items by their words.")
    return attrs


def new_item_view(served: Served, history: list[int], attrs: dict[str, str], allow_repeats: bool | None = None,
                  k: int = 10) -> dict:
    """Where an item described by ``attrs`` would rank for ``history``, and its ``k`` nearest catalogue items."""
    from jepa4rec.explain import rank_new_item

    rec = served.recommender
    history = check_history(served, history)
    exclude = not (served.repeats_by_default if allow_repeats is None else allow_repeats)
    out = rank_new_item(rec, history, attrs, k=k, exclude_history=exclude)
    text_rank = None
    if rec.popularity_bias and history:
        from jepa4rec.priors import without_priors

        # Every catalogue item carries its popularity prior, the new one none (no purchases yet): its rank by the
        # text alone says how much of the gap is the prior.
        with without_priors(rec):
            text_rank = rank_new_item(rec, history, attrs, k=k, exclude_history=exclude).rank
    return {"rank": out.rank, "of": served.dataset.n_items + 1, "score": out.score, "history_used": bool(history),
            "popularity_prior": bool(rec.popularity_bias), "rank_by_text_alone": text_rank,
            "neighbours": [{"item": i, "title": rec.titles[i], "cosine": c} for i, c in out.neighbours]}


def neighbours_html(view: dict) -> str:
    rows = [{"rank": i + 1, "item": n["item"], "title": n["title"], "score": n["cosine"], "target": False}
            for i, n in enumerate(view["neighbours"])]
    return side_by_side(top_table_html(rows, "Its nearest catalogue items (cosine)"))


# --- models side by side -----------------------------------------------------------------------------

SHARED_COLOURS = ("rgba(42, 157, 143, 0.22)", "rgba(233, 196, 106, 0.35)")  # in two lists, in all three


def compare_view(service, name: str, history: list[int], allow_repeats: bool | None = None, k: int = 10,
                 progress=None) -> dict:
    """JEPA4Rec's top ``k`` beside every comparison model's for the same history, with the overlaps."""
    import torch

    served = service.get(name)
    history = check_history(served, history)
    exclude = not (served.repeats_by_default if allow_repeats is None else allow_repeats)
    jepa = served.model_test_metrics() or {}
    models = [{"model": "JEPA4Rec", "checkpoint": served.checkpoint.name, "mode": served.mode,
               "ndcg": jepa.get("NDCG@10"), "protocol": figure_protocol(served.recommender),
               "items": [r.item for r in served.recommender.recommend(history, k=k, exclude_history=exclude).items]}]
    for label in service.comparison_models(name):
        entry = service.comparison(name, label, progress)
        with torch.no_grad():
            scores = entry["scorer"].score_all([list(history)])[0].float().clone()
        if exclude and history:
            scores[torch.as_tensor(list(history), device=scores.device)] = float("-inf")
        top = torch.topk(scores, min(k, scores.numel()))
        # Where k exceeds the items left, topk fills up with excluded ones at -inf: JEPA4Rec's list leaves them out.
        top = [i for s, i in zip(top.values.tolist(), top.indices.tolist()) if s != float("-inf")]
        models.append({"model": label, "checkpoint": entry["checkpoint"], "mode": entry["mode"], "ndcg": entry["ndcg"],
                       "protocol": figure_protocol(entry["scorer"]), "items": top})
    lists = [set(m["items"]) for m in models]
    overlaps = {f"{a['model']} & {b['model']}": len(set(a["items"]) & set(b["items"]))
                for i, a in enumerate(models) for b in models[i + 1:]}
    return {"dataset": served.display_name, "models": models, "overlaps": overlaps,
            "in_all": len(set.intersection(*lists)) if lists else 0,
            "titles": {i: served.recommender.titles[i] for m in models for i in m["items"]}}


def figure_protocol(scorer) -> str:
    """The protocol of a model's own measured test figure: every one was measured with history items kept, with
    the score priors the model carries (SASRec and the pre-trained models carry none)."""
    priors = getattr(scorer, "priors", None)
    has = priors is not None and bool(priors.repeat_bias or priors.popularity_bias)
    return "history kept, with its score priors" if has else "history kept, no score priors"


def compare_html(view: dict) -> str:
    counts = Counter(i for m in view["models"] for i in m["items"])
    n = len(view["models"])
    tables = []
    for m in view["models"]:
        score = (f"test NDCG@10 {m['ndcg']:.4f}, {m['protocol']}" if m["ndcg"] is not None
                 else "test NDCG@10 not measured")
        rows = "".join(
            f"<tr style='background: {SHARED_COLOURS[1] if counts[i] == n and n > 2 else SHARED_COLOURS[0] if counts[i] > 1 else 'none'}'>"
            f"<td class='num'>{r + 1}</td><td class='title'>{html.escape(view['titles'][i])}</td>"
            f"<td class='num'>{counts[i]}</td></tr>" for r, i in enumerate(m["items"]))
        tables.append(f"<table class='toplist'><caption>{html.escape(m['model'])} ({html.escape(m['mode'])}; {score})"
                      f"</caption><thead><tr><th class='num'>#</th><th class='title'>item</th>"
                      f"<th class='num' title='lists it is in'>in</th></tr></thead><tbody>{rows}</tbody></table>")
    pairs = "; ".join(f"{k}: {v}" for k, v in view["overlaps"].items())
    legend = (f"<p>Items shared: {pairs}" + (f"; in all {n}: {view['in_all']}" if n > 2 else "") +
              ". Green rows are in more than one list" + (f", yellow rows in all {n}" if n > 2 else "") +
              "; <b>in</b> counts the lists an item is in. Each figure is its model's own, under the protocol "
              "named beside it, so two of them are not a comparison: the models on equal terms (both protocols, "
              "the same score priors fitted for each, paired intervals) are in Experiments, Table 2.</p>")
    return legend + side_by_side(*tables)


# --- the API ----------------------------------------------------------------------------------------

def api_recommend(served: Served, history, target=None, reveal=None, k=10, allow_repeats=None,
                  scoring: str = DEFAULT_SCORING) -> dict:
    """The JSON the named ``recommend`` endpoint returns; every argument checked first."""
    history = check_history(served, history)
    target = None if target is None else check_item(served, target, "target")
    if reveal is not None:
        if target is None:
            raise UserInputError("reveal needs a target item")
        try:
            reveal = float(reveal)
        except (TypeError, ValueError):
            raise UserInputError(f"reveal must be a number 0..1, got {reveal!r}") from None
        if not 0.0 <= reveal <= 1.0:
            raise UserInputError(f"reveal must be within 0..1 (a share of the target's words), got {reveal}")
    k = whole_number(k, "k", 1, MAX_K)
    if not 1 <= k <= MAX_K:
        raise UserInputError(f"k must be within 1..{MAX_K}, got {k}")
    if scoring not in SCORINGS:
        raise UserInputError(f"scoring must be one of {list(SCORINGS)}, got {scoring!r}")
    exclude = not (served.repeats_by_default if allow_repeats is None else bool(allow_repeats))
    out = served.recommender.recommend(history, k=k, target=target, reveal=reveal, reveal_mode=SCORINGS[scoring],
                                       exclude_history=exclude)
    return {
        "dataset": served.name,
        "checkpoint": served.checkpoint.name,
        "mode": served.mode,
        "history_excluded": exclude,
        "items": [{"item": r.item, "key": r.key, "title": r.title, "score": r.score} for r in out.items],
        "target_rank": out.target_rank,
        "revealed_words": clean_words(out.revealed_words),
    }


def api_search(served: Served, query, limit=20) -> list[dict]:
    if not isinstance(query, str):
        raise UserInputError(f"query must be text, got {type(query).__name__}")
    limit = whole_number(limit, "limit", 1, MAX_K)
    if not 1 <= limit <= MAX_K:
        raise UserInputError(f"limit must be within 1..{MAX_K}, got {limit}")
    titles = served.recommender.titles
    return [{"item": i, "key": served.dataset.item_keys[i], "title": titles[i]}
            for i in search_catalogue(served, query, limit)]


# --- a shop owner's scoreboard -----------------------------------------------------------------------

def scoreboard_html(board: dict, adapter_card: dict | None = None) -> str:
    """The scoreboard as a table: each model under both protocols, the paired test of the adapted model
    + priors against zero-shot + priors, and how the adapted model was trained."""
    head = ("<tr><th rowspan='2'>model</th><th colspan='3'>history kept</th><th colspan='3'>history excluded</th></tr>"
            "<tr>" + "<th class='num'>NDCG@10</th><th class='num'>Recall@10</th><th class='num'>MRR</th>" * 2 + "</tr>")
    body = "".join(
        f"<tr><td>{html.escape(r['model'])}</td>"
        + "".join(f"<td class='num'>{r['cells'][p][m]:.4f}</td>" for p in ("kept", "excluded")
                  for m in ("NDCG@10", "Recall@10", "MRR")) + "</tr>" for r in board["rows"])
    style = ("<style>.board {border-collapse: collapse; font-size: 0.92em;} .board th, .board td {padding: 3px 8px; "
             "border-bottom: 1px solid var(--border-color-primary); text-align: left;} .board .num {text-align: right; "
             "font-variant-numeric: tabular-nums;} .board-wrap {overflow-x: auto; max-width: 100%;}</style>")
    sampled = board["users"] < board.get("all_users", board["users"])
    who = f"The first {board['users']:,} of {board['all_users']:,} customers'" if sampled else f"{board['users']:,} customers'"
    lines = [f"<p>{who} last purchases, each ranked among all {board['items']:,} items "
             "(the one before it is the validation split, where the score priors are fitted; ties count against "
             f"the purchase); {board['seconds']:.0f} s." + (" Set <i>Customers to score</i> to 0 to score them all."
                                                            if sampled else "") + "</p>",
             f"<div class='board-wrap'><table class='board'>{head}{body}</table></div>"]
    for protocol, c in board.get("paired", {}).items():
        verdict = ("better" if c["ratio_low"] > 1 else "worse" if c["ratio_high"] < 1 else "not measurably different")
        lines.append(f"<p>Adapted + priors / zero-shot + priors, NDCG@10, history {protocol}: <b>{c['ratio']:.3f}×</b> "
                     f"[{c['ratio_low']:.3f}, {c['ratio_high']:.3f}] (95% paired bootstrap over customers; p "
                     f"{c['p_value']:.3g}): {verdict}.</p>")
    if adapter_card:
        race = "; ".join(f"{html.escape(r['shape'])} {r['best_valid_NDCG@10']:.4f}" for r in adapter_card.get("race", [])
                         if r["best_valid_NDCG@10"] is not None)
        chose = (f" Its shape, <i>{html.escape(adapter_card['shape'])}</i>, won a race of the first epochs on your "
                 f"validation purchases (NDCG@10: {race})." if race else "")
        lines.append(f"<p>The adapted model: a sequence adapter over the pre-trained model's item vectors, trained "
                     f"{adapter_card['epochs_run']} epoch(s) in {adapter_card['train_seconds']:.0f} s (stopped by "
                     f"{html.escape(adapter_card['stopped'])}), best validation epoch {adapter_card['best_epoch']}."
                     f"{chose}</p>")
    return style + "".join(lines)
