"""The one in-memory dataset every reader produces, and the processing they share.

A reader turns files into a :class:`RawData` (a catalogue of attribute dicts and a table of
interactions); :func:`build_dataset` then applies the shared processing (text cleaning, de-duplication,
time ordering, iterative k-core, truncation, stable ids) and returns a :class:`SeqRecDataset`.
Every step that removes rows says how many in ``dataset.report``.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import UserError

logger = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


class DataFormatError(UserError, ValueError):
    """Input that a reader cannot interpret; the message names the file and the line or field."""

    hint = "fix or replace that file (README 'Data' describes each layout)"


class DataUnavailable(UserError, FileNotFoundError):
    """Data that is neither on disk nor downloadable here (no network, an empty cache)."""


def clean_text(value) -> str:
    """HTML-unescape (twice: some sources are double-escaped), collapse white space, strip."""
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(clean_text(v) for v in value if clean_text(v))
    text = html.unescape(html.unescape(str(value)))
    return _WS.sub(" ", text).strip()


# Attributes of the supported sources in the order the paper uses (title, brand, categories; description
# for Online Retail). The text config (jepa4rec.text.TextConfig) orders item sentences by it; attributes
# not listed follow in their source order.
ATTRIBUTE_ORDER = ("title", "brand", "categories", "genres", "year", "description")


def ordered_attributes(attrs: dict) -> dict:
    """``attrs`` with the listed attributes first, in :data:`ATTRIBUTE_ORDER`, then the rest as given."""
    first = {k: attrs[k] for k in ATTRIBUTE_ORDER if k in attrs}
    return {**first, **{k: v for k, v in attrs.items() if k not in first}}


def clean_attributes(attrs: dict) -> dict[str, str]:
    """Clean every value and drop empty attributes, keeping the given order."""
    out: dict[str, str] = {}
    for key, value in attrs.items():
        text = clean_text(value)
        if text:
            out[str(key)] = text
    return out


@dataclass
class RawData:
    """What a reader hands to :func:`build_dataset`.

    ``interactions`` has columns ``user``, ``item`` (both str) and optionally ``time`` (numeric);
    rows are in the source's order, which breaks ties between equal times (and is the order itself
    when there is no time column).
    """

    items: dict[str, dict[str, str]]
    interactions: pd.DataFrame
    report: list[str] = field(default_factory=list)


@dataclass
class ProcessingConfig:
    """Shared processing options; each reader preset may override them."""

    k_core: int = 5  # iterative: every user and every item keeps >= k interactions (0 or 1 = off)
    dedup: bool = True  # drop repeated (user, item, time) rows
    max_seq_len: int | None = None  # keep only each user's most recent items (None = all)
    min_seq_len: int = 3  # leave-one-out needs train + valid + test
    drop_items_without_text: bool = False


@dataclass
class EvalCase:
    user: int
    history: list[int]
    target: int


@dataclass
class SeqRecDataset:
    """Catalogue + time-ordered sequences + leave-one-out split.

    ``items[i]`` is the ordered attribute dict of item ``i`` and ``item_keys[i]`` its source key;
    ``sequences[u]`` is user ``u``'s items, oldest first.
    """

    name: str
    item_keys: list[str]
    items: list[dict[str, str]]
    user_keys: list[str]
    sequences: list[list[int]]
    domain: str | None = None
    report: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def item_index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.item_keys)}

    # Leave-one-out: the last item is the test target, the second-last the validation target.
    def train_sequences(self) -> list[list[int]]:
        return [s[:-2] for s in self.sequences]

    def valid_cases(self) -> list[EvalCase]:
        return [EvalCase(u, s[:-2], s[-2]) for u, s in enumerate(self.sequences)]

    def test_cases(self) -> list[EvalCase]:
        return [EvalCase(u, s[:-1], s[-1]) for u, s in enumerate(self.sequences)]

    def require_text(self) -> None:
        """Refuse, by name, a catalogue whose items have no text at all: a text model cannot rank them."""
        if self.n_items and not any(self.items):
            raise DataFormatError(f"dataset {self.name}: none of its {self.n_items:,} items has any text (is its "
                                  "catalogue file empty?); a text model cannot rank items it cannot read",
                                  hint="check the catalogue file (items.jsonl, .text, item.json, ...)")

    def stats(self) -> dict:
        lengths = np.array([len(s) for s in self.sequences]) if self.sequences else np.zeros(1)
        with_text = sum(1 for it in self.items if it)
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": int(lengths.sum()),
            "avg_len": round(float(lengths.mean()), 2),
            "min_len": int(lengths.min()),
            "max_len": int(lengths.max()),
            "items_with_text": round(with_text / max(self.n_items, 1), 4),
        }

    def subset_users(self, user_ids) -> "SeqRecDataset":
        """The same catalogue with only the given users (for low-resource experiments)."""
        user_ids = list(user_ids)
        return SeqRecDataset(
            name=self.name,
            item_keys=self.item_keys,
            items=self.items,
            user_keys=[self.user_keys[u] for u in user_ids],
            sequences=[self.sequences[u] for u in user_ids],
            domain=self.domain,
            report=self.report + [f"kept {len(user_ids)} of {self.n_users} users"],
        )


def item_counts(sequences, n_items: int) -> np.ndarray:
    """How often each item id in ``[0, n_items)`` occurs in ``sequences`` (int64 ``[n_items]``): the one
    count behind the popularity baseline and the popularity bias (given the training split, no validation
    or test target is counted)."""
    flat = [i for seq in sequences for i in seq]
    return np.bincount(np.asarray(flat, dtype=np.int64), minlength=n_items)


def k_core_filter(df: pd.DataFrame, k: int, report: list[str]) -> pd.DataFrame:
    """Iteratively drop users and items with fewer than ``k`` interactions until none remain."""
    if k <= 1:
        return df
    before = len(df)
    rounds = 0  # rounds that removed something (the final check that removes nothing is not counted)
    while True:
        item_counts = df["item"].map(df["item"].value_counts())
        user_counts = df["user"].map(df["user"].value_counts())
        keep = (item_counts >= k) & (user_counts >= k)
        if keep.all():
            break
        rounds += 1
        df = df[keep]
    dropped = before - len(df)
    report.append(f"{k}-core: dropped {dropped} of {before} interactions in {rounds} round(s)")
    return df


def build_dataset(
    name: str,
    raw: RawData,
    config: ProcessingConfig | None = None,
    domain: str | None = None,
) -> SeqRecDataset:
    """Apply the shared processing to a reader's output."""
    cfg = config or ProcessingConfig()
    report = list(raw.report)
    items = {str(k): clean_attributes(v) for k, v in raw.items.items()}
    df = raw.interactions.copy()
    for col in ("user", "item"):
        if col not in df.columns:
            raise DataFormatError(f"{name}: interactions lack the '{col}' column")
        df[col] = df[col].astype(str)
    df["_order"] = np.arange(len(df))

    missing = ~df["item"].isin(items.keys())
    if missing.any():
        # Interactions with items the catalogue does not describe stay, without text.
        unknown = df.loc[missing, "item"].unique()
        for key in unknown:
            items[key] = {}
        report.append(f"{len(unknown)} interacted items have no catalogue entry (kept, without text)")

    if cfg.drop_items_without_text:
        no_text = {k for k, v in items.items() if not v}
        mask = df["item"].isin(no_text)
        report.append(f"drop items without text: dropped {int(mask.sum())} of {len(df)} interactions")
        df = df[~mask]

    if cfg.dedup:
        keys = ["user", "item"] + (["time"] if "time" in df.columns else [])
        before = len(df)
        if "time" in df.columns:
            df = df.drop_duplicates(subset=keys, keep="first")
            report.append(f"de-duplicate (user, item, time): dropped {before - len(df)} of {before} rows")

    sort_cols = ["user", "time", "_order"] if "time" in df.columns else ["user", "_order"]
    # Users keep the order of their first appearance; within a user, time then source order.
    first_seen = df.groupby("user", sort=False)["_order"].transform("min")
    df = df.assign(_first=first_seen).sort_values(["_first"] + sort_cols[1:], kind="stable")

    df = k_core_filter(df, cfg.k_core, report)

    if cfg.max_seq_len:
        before = len(df)
        df = df.groupby("user", sort=False).tail(cfg.max_seq_len)
        report.append(f"truncate to the {cfg.max_seq_len} most recent items: dropped {before - len(df)} of {before} interactions")

    lengths = df.groupby("user", sort=False)["item"].transform("size")
    short = lengths < cfg.min_seq_len
    if short.any():
        n_users = df.loc[short, "user"].nunique()
        report.append(f"users with fewer than {cfg.min_seq_len} items: dropped {n_users} users ({int(short.sum())} interactions)")
        df = df[~short]

    used = set(df["item"].unique())
    # Stable ids: the catalogue's own order, restricted to items that occur in a sequence.
    item_keys = [k for k in items if k in used]
    unused = len(items) - len(item_keys)
    if unused:
        report.append(f"catalogue items in no sequence: dropped {unused} of {len(items)}")
    index = {k: i for i, k in enumerate(item_keys)}
    codes = df["item"].map(index).to_numpy()
    users = df["user"].to_numpy()
    user_keys: list[str] = []
    sequences: list[list[int]] = []
    if len(df):
        bounds = np.flatnonzero(users[1:] != users[:-1]) + 1
        for chunk_users, chunk in zip(np.split(users, bounds), np.split(codes, bounds)):
            user_keys.append(str(chunk_users[0]))
            sequences.append(chunk.tolist())
    if not sequences:
        raise DataFormatError(f"{name}: no user sequence survived processing ({'; '.join(report)})")
    for line in report:
        logger.info("%s: %s", name, line)
    return SeqRecDataset(
        name=name,
        item_keys=item_keys,
        items=[items[k] for k in item_keys],
        user_keys=user_keys,
        sequences=sequences,
        domain=domain,
        report=report,
    )
