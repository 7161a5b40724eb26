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

A CSV row with more fields than the header, a quote that is never closed, a repeated column name (or a
repeated key in a JSON line) are refused by line: each would otherwise lose text without a word. In JSON
lines a list of strings or numbers is text (joined with ", "); objects and true/false are dropped and
counted in the report; an id is a string or an integer (``1.0`` reads as ``"1"``), anything else is
refused.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

from ..errors import RepeatedKey, no_repeated_keys
from .dataset import DataFormatError, SeqRecDataset, clean_attributes

MAX_BYTES = 200 * 1024 * 1024
MAX_ITEMS = 200_000
ID_COLUMNS = ("item_id", "id")
USER_COLUMNS = ("user_id", "user")
ITEM_COLUMNS = ("item_id", "item")
TIME_COLUMNS = ("timestamp", "time")
HINT = "docs/app.md ('Your catalogue') describes the file layout"
QUOTE_HINT = "close the quote, or double a quote inside a quoted value (\"\")"


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


def _is_text(value) -> bool:
    """A value an item sentence can hold: a string, a number, or a list of them (joined with ", ")."""
    if isinstance(value, list):
        return all(_is_text(v) for v in value)
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _key(value, path: Path, line: int, column: str) -> str:
    """An id as text: a string, or an integer (a JSON ``1.0`` is ``"1"``, as a spreadsheet writes 1)."""
    if value is None or isinstance(value, str):
        return "" if value is None else value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise DataFormatError(f"{path}:{line}: field '{column}' is not an id ({value!r})",
                          hint="ids must be strings or whole numbers")


DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(text: str) -> str:
    """The field separator of a CSV text, read from its header line: a comma unless the header has none and
    another separator (a semicolon, as spreadsheets in many locales write CSV; a tab; a bar) splits it."""
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in DELIMITERS[1:]}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _csv_rows(path: Path, text: str, delimiter: str = ",") -> tuple[list[str], list[tuple[int, dict]]]:
    reader = csv.reader(io.StringIO(text), strict=True, delimiter=delimiter)
    # A field is no longer than its file (whose size is already checked); long descriptions are real, and
    # the tokenizer truncates them (the csv module's default limit is 131,072 characters).
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))
    columns, rows, start = None, [], 1
    try:
        for record in reader:
            if columns is None:
                columns = record
                if not columns:
                    break
                named = [c for c in columns if c.strip()]
                repeated = next((c for c in named if named.count(c) > 1), None)
                if repeated is not None:
                    # A dict keeps one value per name: the other column's text would be lost.
                    raise DataFormatError(f"{path}:1: column '{repeated}' repeats in the header {columns}",
                                          hint="give each column its own name")
            elif record:
                extra = record[len(columns):]
                if any(f.strip() for f in extra):
                    raise DataFormatError(
                        f"{path}:{start}: {len(record)} fields, but the header has {len(columns)} {columns}",
                        hint="put a value holding a comma in double quotes (\"Mug, large\")")
                if reader.line_num > start and len(record) < len(columns):
                    # A row spanning lines that still lacks fields: a quote opened and closed too late,
                    # swallowing the rows between as one value.
                    raise DataFormatError(f"{path}:{start}: a quoted value runs over lines {start}-{reader.line_num} "
                                          f"and the row still has {len(record)} of {len(columns)} fields "
                                          f"(a quote that is not closed?)", hint=QUOTE_HINT)
                rows.append((start, dict(zip(columns, record))))
            start = reader.line_num + 1
    except csv.Error as err:
        if "end of data" in str(err):  # strict: the file ends inside a quoted value
            raise DataFormatError(f"{path}:{start}: a quote opened in this row is never closed (the value runs "
                                  f"to the end of the file, line {reader.line_num})", hint=QUOTE_HINT) from None
        raise DataFormatError(f"{path}:{reader.line_num}: not valid CSV ({err})", hint=QUOTE_HINT) from None
    if not columns:
        raise DataFormatError(f"{path}: empty file, or no header line", hint=HINT)
    return columns, rows


def _rows(path: Path, text: str, notes: list[str] | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns in file order, [(line, row)]) of a CSV or JSON-lines file; a row's line is its first. A CSV's
    separator is sniffed from its header (``notes`` receives a line when it is not a comma)."""
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows, columns = [], []
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=no_repeated_keys)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{line_no}: not valid JSON ({err.msg})", hint=HINT) from None
            except RepeatedKey as err:
                raise DataFormatError(f"{path}:{line_no}: key '{err.key}' repeats", hint="give each key once") from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{line_no}: a line must be one JSON object, got {type(row).__name__}",
                                      hint=HINT)
            columns += [k for k in row if k not in columns]
            rows.append((line_no, row))
        return columns, rows
    delimiter = sniff_delimiter(text)
    if delimiter != "," and notes is not None:
        notes.append(f"{path.name}: fields separated by {'a tab' if delimiter == chr(9) else repr(delimiter)} "
                     "(read from its header line)")
    return _csv_rows(path, text, delimiter)


def read_items(path: str | Path, max_bytes: int = MAX_BYTES, max_items: int = MAX_ITEMS, text: str | None = None,
               no_text: dict[str, int] | None = None) -> tuple[list[str], list[dict[str, str]], list[str], list[str]]:
    """(item keys, attribute dicts in header order, the text columns, report lines) of an item file (or of
    ``text``, the file's content, ``path`` then only naming it and its format by its suffix). ``no_text``,
    when given, receives {id: line} of the rows dropped for having no text (to say why an id is missing)."""
    path = Path(path)
    notes: list[str] = []
    columns, rows = _rows(path, _text(path, max_bytes, text), notes)
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
    keys, items, seen, empty, dropped = [], [], {}, 0, Counter()
    for line, row in rows:
        key = _key(row.get(id_col), path, line, id_col)
        if not key:
            raise DataFormatError(f"{path}:{line}: empty '{id_col}'", hint=HINT)
        if key in seen:
            raise DataFormatError(f"{path}:{line}: id '{key}' repeats line {seen[key]}", hint="ids must be unique")
        seen[key] = line
        dropped.update(c for c in text_cols if row.get(c) is not None and not _is_text(row[c]))
        attrs = clean_attributes({c: row[c] for c in text_cols if _is_text(row.get(c))})
        if not attrs:
            empty += 1
            if no_text is not None:
                no_text[key] = line
            continue
        keys.append(key)
        items.append(attrs)
    report = list(notes)
    if dropped:
        report.append(f"{path.name}: dropped fields that are not text (objects, true/false): "
                      + ", ".join(f"{k} ({n:,} items)" for k, n in dropped.items()))
    if empty:
        report.append(f"{path.name}: dropped {empty:,} item(s) with no text in {text_cols}")
    if not items:
        raise DataFormatError(f"{path}: none of its {len(rows):,} items has any text in {text_cols}", hint=HINT)
    return keys, items, text_cols, report


def missing_ids(path: str | Path, ids: list[str], no_text: dict[str, int]) -> str:
    """The sentence for ``ids`` a catalogue lacks; those in the file but dropped for having no text (``no_text``,
    {id: line}) are named as such, not as unknown."""
    dropped = [i for i in ids if i in no_text]
    absent = [i for i in ids if i not in no_text]
    parts = [f"no item with id {', '.join(map(repr, absent[:5]))}"] if absent else []
    if dropped:
        one = len(dropped) == 1
        parts.append(f"item {', '.join(f'{i!r} (line {no_text[i]})' for i in dropped[:5])} "
                     f"{'is' if one else 'are'} in the file but {'was' if one else 'were'} dropped because "
                     f"{'its row has' if one else 'their rows have'} no text")
    return f"{path}: " + "; ".join(parts)


def _times(path: Path, rows: list[tuple[int, dict]], time_col: str | None) -> tuple[list[float], str | None]:
    """Each row's time as a number: the column as numbers, or else as dates (ISO 8601 or what pandas reads,
    day first when a value says so), in seconds; (times, how the dates were read, or None). A value that is
    neither names its line."""
    if time_col is None:
        return [0.0] * len(rows), None
    raw = [row.get(time_col) for _, row in rows]
    try:
        return [float(v) for v in raw], None
    except (TypeError, ValueError):
        pass
    import pandas as pd

    values = pd.Series([None if v is None else str(v).strip() for v in raw])
    day_first = values.str.match(r"\s*(1[3-9]|2\d|3[01])[/.-]\d{1,2}[/.-]\d{2,4}").fillna(False).any()
    parsed = pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=bool(day_first), utc=True)
    bad = parsed.isna().to_numpy().nonzero()[0]
    if len(bad):
        line, value = rows[bad[0]][0], raw[bad[0]]
        raise DataFormatError(f"{path}:{line}: field '{time_col}' is neither a number nor a date ({value!r})",
                              hint="give times as numbers (e.g. Unix seconds) or dates such as 2026-01-31 or "
                                   "2026-01-31 14:05")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().tolist()
    return seconds, "day first" if day_first else "ISO 8601 or month first"


def read_interactions(path: str | Path, item_keys: list[str], max_bytes: int = MAX_BYTES, text: str | None = None
                      ) -> tuple[list[str], list[list[int]], list[str]]:
    """(user keys, sequences of item indices oldest first, report lines)."""
    path = Path(path)
    notes: list[str] = []
    columns, rows = _rows(path, _text(path, max_bytes, text), notes)
    user_col, item_col, time_col = _pick(columns, USER_COLUMNS), _pick(columns, ITEM_COLUMNS), _pick(columns, TIME_COLUMNS)
    missing = [n for n, c in (("user", user_col), ("item", item_col)) if c is None]
    if missing:
        raise DataFormatError(f"{path}: no {' or '.join(missing)} column; columns: {columns}", hint=HINT)
    index = {k: i for i, k in enumerate(item_keys)}
    times, as_dates = _times(path, rows, time_col)
    events: dict[str, list[tuple[float, int, int]]] = {}
    unknown = duplicates = 0
    seen: set[tuple[str, str, float]] = set()
    for order, ((line, row), when) in enumerate(zip(rows, times)):
        user, item = _key(row.get(user_col), path, line, user_col), _key(row.get(item_col), path, line, item_col)
        if not user or not item:
            raise DataFormatError(f"{path}:{line}: empty {'user' if not user else 'item'}", hint=HINT)
        if item not in index:
            unknown += 1
            continue
        if time_col is not None and (user, item, when) in seen:  # the same purchase written twice
            duplicates += 1
            continue
        seen.add((user, item, when))
        events.setdefault(user, []).append((when, order, index[item]))
    users, sequences, short = [], [], 0
    for user, evs in events.items():
        if len(evs) < 2:  # a test case needs a history and a next item
            short += 1
            continue
        users.append(user)
        sequences.append([i for _, _, i in sorted(evs)])
    report = list(notes)
    if as_dates:
        report.append(f"{path.name}: '{time_col}' read as dates ({as_dates})")
    if duplicates:
        report.append(f"{path.name}: dropped {duplicates:,} duplicate row(s) (the same user, item and time)")
    if unknown:
        report.append(f"{path.name}: dropped {unknown:,} interaction(s) with items not in the catalogue")
    if short:
        report.append(f"{path.name}: dropped {short:,} user(s) with fewer than 2 known items")
    return users, sequences, report


def read_catalogue(items_path: str | Path, interactions_path: str | Path | None = None, name: str | None = None,
                   max_bytes: int = MAX_BYTES, max_items: int = MAX_ITEMS, items_text: str | None = None,
                   interactions_text: str | None = None, no_text: dict[str, int] | None = None
                   ) -> tuple[SeqRecDataset, list[str]]:
    """(the catalogue as a dataset, its text columns in header order); ``*_text`` hand over the files'
    content instead of reading them (the paths then only name them); ``no_text`` as in :func:`read_items`."""
    keys, items, columns, report = read_items(items_path, max_bytes, max_items, items_text, no_text=no_text)
    users, sequences = [], []
    if interactions_path is not None:
        users, sequences, more = read_interactions(interactions_path, keys, max_bytes, interactions_text)
        report += more
    dataset = SeqRecDataset(name=name or Path(items_path).stem, item_keys=keys, items=items, user_keys=users,
                            sequences=sequences, report=report)
    return dataset, columns
