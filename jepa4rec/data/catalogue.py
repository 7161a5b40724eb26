"""A catalogue someone brings: an item file (CSV or JSON lines) and, optionally, interactions.

* Items: an id column (``item_id`` or ``id``, any case) and text attributes (title, brand, category,
  description, ...). The attribute order is the header's (a JSON-lines file: the first row's keys);
  it is the order the item sentences are written in. Values are cleaned as every reader cleans them.
* Interactions (optional): CSV with ``user``/``user_id``, ``item``/``item_id`` and, optionally,
  ``timestamp``/``time`` columns; each user's items in time order (file order breaks ties) become a
  sequence, so the catalogue has users to load and a test split.

Limits are checked before anything heavy runs, each with a message that names the file, the line or
the column: :data:`MAX_BYTES` per file, :data:`MAX_ITEMS` items, UTF-8 text, an id column and at least
one text column, unique ids. Rows whose text is empty, and interactions naming unknown items, are
dropped and counted in the dataset's ``report``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .dataset import DataFormatError, SeqRecDataset, clean_attributes

MAX_BYTES = 200 * 1024 * 1024
MAX_ITEMS = 200_000
ID_COLUMNS = ("item_id", "id")
USER_COLUMNS = ("user_id", "user")
ITEM_COLUMNS = ("item_id", "item")
TIME_COLUMNS = ("timestamp", "time")
HINT = "docs/app.md ('Your catalogue') describes the file layout"


def _text(path: Path, max_bytes: int, given: str | None = None) -> str:
    """The file's text, or ``given`` (text handed over directly, e.g. through the app's API) checked alike."""
    size = len(given.encode("utf-8")) if given is not None else path.stat().st_size
    if size > max_bytes:
        raise DataFormatError(f"{path}: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit", hint=HINT)
    if given is not None:
        return given.lstrip("\ufeff")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not UTF-8 text (byte {err.start})",
                              hint="save the file as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)") from None


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns in file order, [(line, row)]) of a CSV or JSON-lines file."""
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows, columns = [], []
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{line_no}: not valid JSON ({err.msg})", hint=HINT) from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{line_no}: a line must be one JSON object, got {type(row).__name__}",
                                      hint=HINT)
            columns += [k for k in row if k not in columns]
            rows.append((line_no, row))
        return columns, rows
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise DataFormatError(f"{path}: empty file, or no header line", hint=HINT)
    # Line numbers: the header is line 1 (a quoted value spanning lines shifts later rows; good enough
    # to find a row).
    return list(reader.fieldnames), [(i + 2, row) for i, row in enumerate(reader)]


def read_items(path: str | Path, max_bytes: int = MAX_BYTES, max_items: int = MAX_ITEMS, text: str | None = None
               ) -> tuple[list[str], list[dict[str, str]], list[str], list[str]]:
    """(item keys, attribute dicts in header order, the text columns, report lines) of an item file (or of
    ``text``, the file's content, ``path`` then only naming it and its format by its suffix)."""
    path = Path(path)
    columns, rows = _rows(path, _text(path, max_bytes, text))
    id_col = _pick(columns, ID_COLUMNS)
    if id_col is None:
        raise DataFormatError(f"{path}: no id column (one named {' or '.join(ID_COLUMNS)}); columns: {columns}",
                              hint=HINT)
    text_cols = [c for c in columns if c != id_col]
    if not text_cols:
        raise DataFormatError(f"{path}: no text column beside '{id_col}' (title, brand, category, description, ...)",
                              hint=HINT)
    if len(rows) > max_items:
        raise DataFormatError(f"{path}: {len(rows):,} items is over the {max_items:,}-item limit", hint=HINT)
    keys, items, seen, empty = [], [], {}, 0
    for line, row in rows:
        key = row.get(id_col)
        key = "" if key is None else str(key).strip()
        if not key:
            raise DataFormatError(f"{path}:{line}: empty '{id_col}'", hint=HINT)
        if key in seen:
            raise DataFormatError(f"{path}:{line}: id '{key}' repeats line {seen[key]}", hint="ids must be unique")
        seen[key] = line
        attrs = clean_attributes({c: row[c] for c in text_cols
                                  if isinstance(row.get(c), (str, int, float)) and not isinstance(row.get(c), bool)})
        if not attrs:
            empty += 1
            continue
        keys.append(key)
        items.append(attrs)
    report = []
    if empty:
        report.append(f"{path.name}: dropped {empty:,} item(s) with no text in {text_cols}")
    if not items:
        raise DataFormatError(f"{path}: none of its {len(rows):,} items has any text in {text_cols}", hint=HINT)
    return keys, items, text_cols, report


def read_interactions(path: str | Path, item_keys: list[str], max_bytes: int = MAX_BYTES, text: str | None = None
                      ) -> tuple[list[str], list[list[int]], list[str]]:
    """(user keys, sequences of item indices oldest first, report lines)."""
    path = Path(path)
    columns, rows = _rows(path, _text(path, max_bytes, text))
    user_col, item_col, time_col = _pick(columns, USER_COLUMNS), _pick(columns, ITEM_COLUMNS), _pick(columns, TIME_COLUMNS)
    missing = [n for n, c in (("user", user_col), ("item", item_col)) if c is None]
    if missing:
        raise DataFormatError(f"{path}: no {' or '.join(missing)} column; columns: {columns}", hint=HINT)
    index = {k: i for i, k in enumerate(item_keys)}
    events: dict[str, list[tuple[float, int, int]]] = {}
    unknown = 0
    for order, (line, row) in enumerate(rows):
        user, item = str(row.get(user_col) or "").strip(), str(row.get(item_col) or "").strip()
        if not user or not item:
            raise DataFormatError(f"{path}:{line}: empty {'user' if not user else 'item'}", hint=HINT)
        when = 0.0
        if time_col is not None:
            try:
                when = float(row.get(time_col))
            except (TypeError, ValueError):
                raise DataFormatError(f"{path}:{line}: field '{time_col}' is not a number ({row.get(time_col)!r})",
                                      hint=HINT) from None
        if item not in index:
            unknown += 1
            continue
        events.setdefault(user, []).append((when, order, index[item]))
    users, sequences, short = [], [], 0
    for user, evs in events.items():
        if len(evs) < 2:  # a test case needs a history and a next item
            short += 1
            continue
        users.append(user)
        sequences.append([i for _, _, i in sorted(evs)])
    report = []
    if unknown:
        report.append(f"{path.name}: dropped {unknown:,} interaction(s) with items not in the catalogue")
    if short:
        report.append(f"{path.name}: dropped {short:,} user(s) with fewer than 2 known items")
    return users, sequences, report


def read_catalogue(items_path: str | Path, interactions_path: str | Path | None = None, name: str | None = None,
                   max_bytes: int = MAX_BYTES, max_items: int = MAX_ITEMS, items_text: str | None = None,
                   interactions_text: str | None = None) -> tuple[SeqRecDataset, list[str]]:
    """(the catalogue as a dataset, its text columns in header order); ``*_text`` hand over the files'
    content instead of reading them (the paths then only name them)."""
    keys, items, columns, report = read_items(items_path, max_bytes, max_items, items_text)
    users, sequences = [], []
    if interactions_path is not None:
        users, sequences, more = read_interactions(interactions_path, keys, max_bytes, interactions_text)
        report += more
    dataset = SeqRecDataset(name=name or Path(items_path).stem, item_keys=keys, items=items, user_keys=users,
                            sequences=sequences, report=report)
    return dataset, columns
