"""One reader per source format. Each returns a :class:`RawData`; none applies shared processing.

Every reader raises :class:`DataFormatError` naming the file and the line or field it could not read.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .dataset import DataFormatError, RawData, ordered_attributes


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    return path


UTF8_HINT = "save the file as UTF-8 (README 'Data' describes each layout)"


def _first_non_utf8(path: Path) -> tuple[int, int] | None:
    """(line, file offset) of the first byte that is not UTF-8, or None."""
    offset = 0
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
        for lineno, line in enumerate(fh, 1):  # b"\n" never occurs inside a UTF-8 character
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return lineno, offset + err.start
            offset += len(line)
    return None


def _not_utf8(path: Path) -> DataFormatError:
    """The error for a file that is not UTF-8, worded as jepa4rec.data.catalogue words it."""
    where = _first_non_utf8(path)
    if where is None:
        return DataFormatError(f"{path}: not UTF-8 text", hint=UTF8_HINT)
    return DataFormatError(f"{path}:{where[0]}: not UTF-8 text (byte {where[1]})", hint=UTF8_HINT)


@contextmanager
def _open_text(path: Path):
    """Open a plain or gzip-compressed UTF-8 text file (a BOM is skipped, as pandas does for CSV)."""
    _require(path)
    if path.suffix == ".gz":
        fh = io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    else:
        fh = open(path, encoding="utf-8-sig")
    try:
        with fh:
            yield fh
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _read_text(path: Path) -> str:
    with _open_text(path) as fh:
        return fh.read()


def _csv_error(path: Path, err: Exception) -> DataFormatError:
    """One line for what pandas could not read in a CSV, with the file line when pandas gives one."""
    if isinstance(err, UnicodeDecodeError):
        return _not_utf8(path)
    if isinstance(err, pd.errors.EmptyDataError):
        return DataFormatError(f"{path}: empty file (no header line)")
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
    if ragged:
        want, line, saw = ragged.groups()
        return DataFormatError(f"{path}:{line}: expected {want} comma-separated fields, saw {saw} "
                               "(a comma inside a value needs quotes)")
    return DataFormatError(f"{path}: cannot parse as CSV ({str(err).strip().splitlines()[-1]})")


def _find_one(folder: Path, pattern: str) -> Path:
    hits = sorted(folder.glob(pattern))
    if not hits:
        raise DataFormatError(f"{folder}: no file matching '{pattern}'")
    if len(hits) > 1:
        raise DataFormatError(f"{folder}: several files match '{pattern}': {[h.name for h in hits]}")
    return hits[0]


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a JSON-lines file; Amazon 2018 meta may hold Python literals."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _field(obj: dict, key: str, path: Path, lineno: int):
    if key not in obj or obj[key] is None:
        raise DataFormatError(f"{path}:{lineno}: missing field '{key}'")
    return obj[key]


_INTEGER = re.compile(r"[+-]?\d+")


def _id(value, key: str, where: str, integer: bool = False) -> str:
    """An id field as a string: a non-empty string or an integer (only an integer when ``integer``);
    ``where`` names the file and line for the error."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        ok = False
    elif integer:
        ok = isinstance(value, int) or bool(_INTEGER.fullmatch(value.strip()))
    else:
        ok = bool(str(value).strip())
    if not ok:
        raise DataFormatError(f"{where}: field '{key}' is not {'an integer' if integer else 'an id'} ({value!r})")
    return str(int(value)) if integer else str(value).strip()


def _json_id(obj: dict, key: str, path: Path, lineno: int, integer: bool = False) -> str:
    return _id(_field(obj, key, path, lineno), key, f"{path}:{lineno}", integer)


def _id_column(values: pd.Series, key: str, path, integer: bool = False) -> pd.Series:
    """A column of ids read as strings, checked row by row (line = row + 2: the header is line 1)."""
    text = values.astype("string").str.strip()
    ok = text.str.fullmatch(_INTEGER.pattern) if integer else text.str.len() > 0
    bad = ~ok.fillna(False).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = values.iloc[row]
        raise DataFormatError(f"{path}:{row + 2}: field '{key}' is not {'an integer' if integer else 'an id'} "
                              f"({'empty' if pd.isna(raw) else repr(raw)})")
    return text.map(lambda v: str(int(v))) if integer else text.astype(object)


def _is_text(value) -> bool:
    """A value an item sentence can hold: a string, a number, or a list of them (joined with commas)."""
    if isinstance(value, list):
        return all(_is_text(v) for v in value)
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


# --- a. UniSRec / RecBole atomic files -------------------------------------------------------------

# Amazon category paths in UniSRec's text start with the top-level category name.
_UNISREC_SPLIT = re.compile(r"\.\s+")


def _pieces(text: str) -> list[str]:
    text = text.strip()
    if text.endswith("."):
        text = text[:-1]
    return [p.strip() for p in _UNISREC_SPLIT.split(text)]


def unisrec_top_category(texts, share: float = 0.8) -> str | None:
    """The top-level category name (e.g. "Industrial & Scientific") that starts most category paths.

    A right split ("title. categories. brand") gives each text's candidate path; the longest word
    prefix that at least ``share`` of them have is the top-level name (None when there is none).
    """
    paths = [parts[-2].split() for parts in map(_pieces, texts) if len(parts) >= 3 and parts[-2]]
    best = None
    for n in range(1, 8):
        counts = Counter(tuple(p[:n]) for p in paths if len(p) >= n)
        if not counts:
            break
        prefix, count = counts.most_common(1)[0]
        if count < share * len(paths):
            break
        best = " ".join(prefix)
    return best


def split_unisrec_text(text: str, top_category: str | None = None) -> dict[str, str]:
    """Split UniSRec's "title. categories. brand." string into attributes where the structure allows.

    The string is built by joining the title, the category path and the brand with ". ". Titles and
    brands may contain ". " themselves ("Mr. Heater", "Norton Abrasives - St. Gobain"). With
    ``top_category`` the category piece is the last one (after the first) that starts with it, or, for
    items without categories, the last empty piece before the brand; otherwise (or when neither is
    found) we split from the right: the last piece is the brand and the one before it the categories.
    Texts with fewer than three pieces are kept as one ``title`` attribute.
    """
    parts = _pieces(text)
    if len(parts) < 3:
        return {"title": ". ".join(parts)}
    cut = len(parts) - 2
    if top_category:
        hits = [i for i in range(1, len(parts)) if parts[i] == top_category or parts[i].startswith(top_category + " ")]
        if not hits:
            hits = [i for i in range(1, len(parts) - 1) if not parts[i]]
        if hits:
            cut = hits[-1]
    return {"title": ". ".join(parts[:cut]), "brand": ". ".join(parts[cut + 1:]), "categories": parts[cut]}


def _unisrec_index(path: Path, what: str) -> list[str]:
    """A RecBole ``.item2index`` / ``.user2index`` file as a list (position = index); the indexes must
    run 0, 1, 2, ... in file order, as RecBole writes them, so position and index column agree."""
    names: list[str] = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            cols = line.split()
            if not cols:
                continue  # a blank line shifts nothing: the index column is checked
            if len(cols) != 2 or not cols[1].isdigit():
                raise DataFormatError(f"{path}:{lineno}: expected '<{what}> <index>', got {line.strip()[:80]!r}")
            if int(cols[1]) != len(names):
                raise DataFormatError(f"{path}:{lineno}: indexes must run 0, 1, 2, ... (got {cols[1]}, "
                                      f"expected {len(names)})")
            names.append(cols[0])
    return names


def read_unisrec(folder: Path) -> RawData:
    folder = Path(folder)
    text_path = _find_one(folder, "*.text")
    stem = text_path.name[: -len(".text")]
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with _open_text(text_path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if len(header) < 2 or not header[0].startswith("item_id"):
            raise DataFormatError(f"{text_path}:1: expected header 'item_id:token<TAB>text:token_seq', got {header}")
        for lineno, line in enumerate(fh, 2):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 2:
                raise DataFormatError(f"{text_path}:{lineno}: expected 2 tab-separated fields, got {len(cols)}")
            if cols[0] in first_line:  # the later text would silently replace the first
                raise DataFormatError(f"{text_path}:{lineno}: item_id {cols[0]} repeats line {first_line[cols[0]]}")
            first_line[cols[0]] = lineno
            texts[cols[0]] = cols[1]
    top = unisrec_top_category(texts.values())
    items = {k: split_unisrec_text(v, top_category=top) for k, v in texts.items()}

    map_path = folder / f"{stem}.item2index"
    index2item = _unisrec_index(map_path, "asin")
    user_map_path = folder / f"{stem}.user2index"
    index2user = _unisrec_index(user_map_path, "user") if user_map_path.exists() else []

    def rows(split: str) -> list[tuple[str, list[str], str]]:
        path = folder / f"{stem}.{split}.inter"
        out = []
        with _open_text(path) as fh:
            header = fh.readline().split("\t")
            if len(header) != 3:
                raise DataFormatError(f"{path}:1: expected 3 columns (user_id, item_id_list, item_id)")
            for lineno, line in enumerate(fh, 2):
                cols = line.rstrip("\n").split("\t")
                if len(cols) != 3:
                    raise DataFormatError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(cols)}")
                indexes = cols[1].split() + [cols[2]]
                # isdigit() also keeps '-3' from becoming an item through Python's negative indexing.
                bad = [x for x in indexes if not (x.isdigit() and int(x) < len(index2item))]
                if bad:
                    raise DataFormatError(f"{path}:{lineno}: item index not in {map_path.name} ({bad[0]!r}; "
                                          f"it holds 0..{len(index2item) - 1})")
                *hist, target = [index2item[int(x)] for x in indexes]
                out.append((cols[0], hist, target))
        return out

    # Train has one row per prefix; rebuild: shortest prefix, then the train targets from the
    # shortest prefix to the longest, then the valid target, then the test target.
    sequences: dict[str, list[str]] = {}
    # Histories are cut to the last 50 items, so several prefixes of a long user have the same length;
    # the file lists a user's rows longest (latest) first, so equal lengths sort by reversed row order.
    prefixes: dict[str, list[tuple[int, int, list[str], str]]] = {}
    for rownum, (user, hist, target) in enumerate(rows("train")):
        prefixes.setdefault(user, []).append((len(hist), -rownum, hist, target))
    for user, plist in prefixes.items():
        plist.sort(key=lambda p: (p[0], p[1]))
        seq = list(plist[0][2])
        seq.extend(p[3] for p in plist)
        sequences[user] = seq
    for split in ("valid", "test"):
        for user, hist, target in rows(split):
            sequences.setdefault(user, list(hist)).append(target)
    users, item_col = [], []
    for user, seq in sequences.items():
        name = index2user[int(user)] if index2user and user.isdigit() and int(user) < len(index2user) else user
        users.extend([name] * len(seq))
        item_col.extend(seq)
    ordered = {k: items.get(k, {}) for k in index2item}
    return RawData(ordered, pd.DataFrame({"user": users, "item": item_col}))


# --- b. LC-Rec JSON ----------------------------------------------------------------------------------

def _json_object(path: Path, key: str) -> dict:
    """A whole-file JSON object (LC-Rec's files map an item or user id to its record)."""
    try:
        obj = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a JSON object keyed by {key} id, got {_json_type(obj)}")
    return obj


def _json_type(obj) -> str:
    return {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(type(obj), "a number")


def read_lcrec(folder: Path) -> RawData:
    folder = Path(folder)
    item_path = _find_one(folder, "*.item.json")
    inter_path = _find_one(folder, "*.inter.json")
    meta, inters = _json_object(item_path, "item"), _json_object(inter_path, "user")
    items = {}
    for key, attrs in meta.items():
        if not isinstance(attrs, dict):
            raise DataFormatError(f"{item_path}: item '{key}' is not an object")
        items[str(key)] = ordered_attributes(attrs)
    users, item_col = [], []
    for user, seq in inters.items():
        if not isinstance(seq, list):
            raise DataFormatError(f"{inter_path}: user '{user}' has no item list")
        users.extend([str(user)] * len(seq))
        item_col.extend(_id(i, f"item {n + 1}", f"{inter_path}: user '{user}'") for n, i in enumerate(seq))
    return RawData(items, pd.DataFrame({"user": users, "item": item_col}))


# --- c. IISAN TSV -----------------------------------------------------------------------------------

def read_iisan(folder: Path) -> RawData:
    folder = Path(folder)
    item_path = _find_one(folder, "*items*.tsv")
    user_path = _find_one(folder, "*users*.tsv")
    items: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    with _open_text(item_path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) < 2:
                raise DataFormatError(f"{item_path}:{lineno}: expected '<asin><TAB><title>'")
            key = cols[0].strip()
            if key in first_line:  # the later title would silently replace the first
                raise DataFormatError(f"{item_path}:{lineno}: item {key} repeats line {first_line[key]}")
            first_line[key] = lineno
            items[key] = {"title": "\t".join(cols[1:])}
    users, item_col = [], []
    with _open_text(user_path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) != 2:
                raise DataFormatError(f"{user_path}:{lineno}: expected '<user><TAB><asin asin ...>'")
            seq = cols[1].split()
            users.extend([cols[0]] * len(seq))
            item_col.extend(seq)
    return RawData(items, pd.DataFrame({"user": users, "item": item_col}))


# --- d. SeqRecBench items.jsonl + interactions.csv ----------------------------------------------------

def read_seqrecbench(folder: Path) -> RawData:
    """``items.jsonl`` (``item_id`` and ``title``; any other text field is kept as an attribute) and
    ``interactions.csv`` (``user_id,item_id,timestamp``); ids are integers, as in the published files."""
    folder = Path(folder)
    item_path = folder / "items.jsonl"
    inter_path = _require(folder / "interactions.csv")
    items: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    kept, dropped = Counter(), Counter()
    for lineno, obj in _json_lines(item_path):
        key = _json_id(obj, "item_id", item_path, lineno, integer=True)
        if key in first_line:
            raise DataFormatError(f"{item_path}:{lineno}: item_id {key} repeats line {first_line[key]}")
        first_line[key] = lineno
        title = obj.get("title")
        if title is not None and not _is_text(title):
            raise DataFormatError(f"{item_path}:{lineno}: field 'title' is not text ({type(title).__name__})")
        attrs = {"title": title if title is not None else ""}
        for name, value in obj.items():
            if name in ("item_id", "title") or value is None:
                continue
            (kept if _is_text(value) else dropped)[name] += 1
            if _is_text(value):
                attrs[name] = value
        items[key] = ordered_attributes(attrs)
    report = []
    if kept:
        report.append(f"{item_path.name}: attributes besides title: "
                      + ", ".join(f"{k} ({n:,} items)" for k, n in kept.items()))
    if dropped:
        report.append(f"{item_path.name}: dropped fields that are not text (objects, true/false): "
                      + ", ".join(f"{k} ({n:,} items)" for k, n in dropped.items()))
    df = _read_csv(inter_path, {"user_id": "user", "item_id": "item", "timestamp": "time"},
                   integer_ids=("user_id", "item_id"))
    return RawData(items, df, report)


def _read_csv(path: Path, columns: dict[str, str], integer_ids: tuple[str, ...] = (), **kwargs) -> pd.DataFrame:
    """Read a CSV with the given columns (source name -> our name), naming the file when they lack and
    the line of any id in ``integer_ids`` that is not an integer."""
    try:
        df = pd.read_csv(path, dtype={c: str for c in integer_ids}, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise _csv_error(path, err) from None
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise DataFormatError(f"{path}: missing column(s) {lacking}; found {list(df.columns)}")
    for col in integer_ids:
        df[col] = _id_column(df[col], col, path, integer=True)
    df = df[list(columns)].rename(columns=columns)
    if "time" in df.columns:
        bad = pd.to_numeric(df["time"], errors="coerce").isna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise DataFormatError(f"{path}:{line}: field 'timestamp' is not a number")
    return df


# --- e. UCI Online Retail ---------------------------------------------------------------------------

RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def _read_retail_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """The CSV and the encoding it was read with: UTF-8, else cp1252 (which Excel writes on Windows),
    else latin-1 (which decodes any byte)."""
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            return pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str}, encoding=encoding), encoding
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise _csv_error(path, err) from None
    raise AssertionError("latin-1 decodes every byte")


_SLASH_DATE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/\d{2,4}\b")


def _day_first(dates: pd.Series, name: str) -> tuple[bool, str | None]:
    """Whether 'a/b/yyyy' dates are day-first, and a report line when the file cannot tell.

    The UCI file is month-first (12/1/2010 is 1 December); European exports are day-first. A first
    field over 12 means day-first; when every first and second field is <= 12 both readings are valid.
    """
    text = dates[dates.map(lambda v: isinstance(v, str))].astype(str)  # parquet and Excel give timestamps
    parts = text.str.extract(_SLASH_DATE).dropna().astype(int)
    if parts.empty:
        return False, None  # timestamps (parquet, Excel) or ISO dates: nothing to choose
    if (parts[0] > 12).any():
        return True, f"{name}: InvoiceDate read day-first (dd/mm/yyyy: a first field is over 12)"
    if not (parts[1] > 12).any():
        return False, (f"warning: {name}: InvoiceDate is ambiguous (every a/b/yyyy date reads both ways); "
                       "read month-first (mm/dd/yyyy, as the UCI file)")
    return False, None


def read_online_retail(path: Path, item_key: str = "Description") -> RawData:
    """UCI Online Retail rows (parquet copies, or the original CSV / XLSX a user downloads).

    Rows without a customer (missing or 0), cancellations (InvoiceNo starting with 'C') and returns
    (Quantity < 1) are dropped, each with a count in the report. Items are keyed by ``item_key``
    (``Description`` by default, or ``StockCode``); the item text is the most frequent Description.
    """
    path = Path(path)
    if path.is_dir():
        hits = [p for p in sorted(path.iterdir()) if p.suffix.lower() in (".parquet", ".csv", ".xlsx", ".xls")]
        if not hits:
            raise DataFormatError(f"{path}: no .parquet, .csv or .xlsx file")
        if len(hits) > 1:  # reading one would silently leave the others out
            raise DataFormatError(f"{path}: several data files ({', '.join(h.name for h in hits)}); "
                                  "which one holds the rows?", hint="give the path of one file, or keep one in the folder")
        path = hits[0]
    _require(path)
    suffix = path.suffix.lower()
    report = []
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataFormatError(f"{path}: not a readable parquet file ({str(err).strip().splitlines()[0][:200]})") from None
    elif suffix in (".xlsx", ".xls"):
        try:
            df = pd.read_excel(path, dtype={"InvoiceNo": str, "StockCode": str})
        except (zipfile.BadZipFile, ValueError, OSError, KeyError) as err:
            raise DataFormatError(f"{path}: not a readable Excel file ({type(err).__name__}: "
                                  f"{str(err).strip()[:200]})") from None
    else:
        df, encoding = _read_retail_csv(path)
        if encoding != "utf-8":  # the UCI CSV people download is often a Windows (cp1252) export
            line = (_first_non_utf8(path) or (0,))[0]
            report.append(f"{path.name}: not UTF-8 (first at line {line}); read as {encoding}")
    if item_key not in ("Description", "StockCode"):
        raise DataFormatError(f"item_key must be 'Description' or 'StockCode', got '{item_key}'")
    needed = ["Description", "Quantity", "InvoiceDate", "CustomerID", item_key]
    lacking = sorted({c for c in needed if c not in df.columns})
    if lacking:
        hint = " (this copy has no StockCode: key items by Description)" if "StockCode" in lacking else ""
        raise DataFormatError(f"{path}: missing column(s) {lacking}; found {list(df.columns)}{hint}")
    report.insert(0, f"{path.name}: {len(df)} rows")

    customer = pd.to_numeric(df["CustomerID"], errors="coerce")
    mask = customer.isna() | (customer == 0)
    report.append(f"rows without a customer: dropped {int(mask.sum())}")
    df = df[~mask].assign(CustomerID=customer[~mask])
    if "InvoiceNo" in df.columns:
        cancelled = df["InvoiceNo"].astype(str).str.upper().str.startswith("C")
        report.append(f"cancelled invoices ('C' prefix): dropped {int(cancelled.sum())}")
        df = df[~cancelled]
    quantity = pd.to_numeric(df["Quantity"], errors="coerce")
    returns = ~(quantity >= 1)
    report.append(f"returns (Quantity < 1): dropped {int(returns.sum())}")
    df = df[~returns]
    desc = df["Description"].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    no_desc = desc == ""
    if item_key == "Description":
        report.append(f"rows without a Description: dropped {int(no_desc.sum())}")
        df = df[~no_desc]
        desc = desc[~no_desc]
    dayfirst, note = _day_first(df["InvoiceDate"], path.name)
    if note:
        report.append(note)
    times = pd.to_datetime(df["InvoiceDate"], errors="coerce", dayfirst=dayfirst)
    bad = times.isna()
    if bad.any():
        first = df.index[bad.to_numpy()][0]
        # CSV and sheet rows are named by their line (the header is line 1); a parquet table has no lines.
        where = f"{path}: row {first}" if suffix == ".parquet" else f"{path}:{first + 2}"
        raise DataFormatError(f"{where}: field 'InvoiceDate' is not a date ({df.loc[first, 'InvoiceDate']!r})")
    key = desc if item_key == "Description" else df["StockCode"].astype(str).str.strip()
    frame = pd.DataFrame({
        "user": df["CustomerID"].astype("int64").astype(str).to_numpy(),
        "item": key.to_numpy(),
        # Seconds whatever the parsed resolution (pandas >= 3 parses strings to datetime64[us]).
        "time": times.dt.as_unit("s").astype("int64").to_numpy(),
        "desc": desc.to_numpy(),
    })
    # Rows of one invoice share a time: keep file order, then time order (stable) in build_dataset.
    text = frame[frame["desc"] != ""].groupby("item")["desc"].agg(lambda s: s.value_counts().index[0])
    items = {k: {"description": text.get(k, "")} for k in pd.unique(frame["item"])}
    return RawData(items, frame[["user", "item", "time"]], report)


# --- f. Raw Amazon reviews (2018 and 2023 layouts) ---------------------------------------------------

def _amazon_categories(value) -> str:
    # 2018 meta: "category": [..] (or the older "categories": [[..]]); 2023: "categories": [..]
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if str(v).strip())
    return str(value or "")


def _read_reviews(path: Path, user_key: str, item_key: str, time_key: str) -> pd.DataFrame:
    """(user, item, time) rows of an Amazon review file, naming the line of any bad record."""
    users, item_col, times = [], [], []
    for lineno, obj in _json_lines(path):
        users.append(_json_id(obj, user_key, path, lineno))
        item_col.append(_json_id(obj, item_key, path, lineno))
        t = _field(obj, time_key, path, lineno)
        if not isinstance(t, (int, float)):
            raise DataFormatError(f"{path}:{lineno}: field '{time_key}' is not a number")
        times.append(t)
    return pd.DataFrame({"user": users, "item": item_col, "time": times})


def read_amazon2018(reviews: Path, meta: Path) -> RawData:
    items: dict[str, dict[str, str]] = {}
    for lineno, obj in _json_lines(Path(meta)):
        asin = _json_id(obj, "asin", meta, lineno)
        items[asin] = {
            "title": obj.get("title", ""),
            "brand": obj.get("brand", ""),
            "categories": _amazon_categories(obj.get("category", obj.get("categories", []))),
        }
    return RawData(items, _read_reviews(Path(reviews), "reviewerID", "asin", "unixReviewTime"))


def read_amazon2023(reviews: Path, meta: Path) -> RawData:
    items: dict[str, dict[str, str]] = {}
    for lineno, obj in _json_lines(Path(meta)):
        asin = _json_id(obj, "parent_asin", meta, lineno)
        details = obj.get("details") or {}
        brand = obj.get("store") or (details.get("Brand") if isinstance(details, dict) else "") or ""
        items[asin] = {
            "title": obj.get("title", ""),
            "brand": brand,
            "categories": _amazon_categories(obj.get("categories", [])),
        }
    return RawData(items, _read_reviews(Path(reviews), "user_id", "parent_asin", "timestamp"))


# --- g. RecBole atomic ml-100k (.inter + .item), e.g. from the recbole wheel -------------------------

def parse_atomic_header(line: str, path: str) -> list[str]:
    names = [c.split(":")[0] for c in line.rstrip("\n").split("\t")]
    if not names or not all(names):
        raise DataFormatError(f"{path}:1: not a RecBole atomic header: {line[:80]!r}")
    return names


def read_recbole_atomic(inter_text: str, item_text: str, inter_name: str, item_name: str) -> RawData:
    """RecBole atomic ``.inter`` / ``.item`` contents (MovieLens-100k in the recbole wheel)."""
    item_lines = item_text.splitlines()
    header = parse_atomic_header(item_lines[0], item_name)
    if "item_id" not in header:
        raise DataFormatError(f"{item_name}:1: no item_id column")
    items: dict[str, dict[str, str]] = {}
    rename = {"movie_title": "title", "release_year": "year", "class": "genres"}
    for lineno, line in enumerate(item_lines[1:], 2):
        cols = line.split("\t")
        if len(cols) != len(header):
            raise DataFormatError(f"{item_name}:{lineno}: expected {len(header)} fields, got {len(cols)}")
        row = dict(zip(header, cols))
        _id(row["item_id"], "item_id", f"{item_name}:{lineno}")
        attrs = {rename.get(k, k): v for k, v in row.items() if k != "item_id"}
        if "genres" in attrs:
            attrs["genres"] = ", ".join(attrs["genres"].split())
        items[row["item_id"]] = attrs
    lines = inter_text.splitlines()
    header = parse_atomic_header(lines[0], inter_name)
    for col in ("user_id", "item_id"):
        if col not in header:
            raise DataFormatError(f"{inter_name}:1: no {col} column")
    df = pd.read_csv(io.StringIO(inter_text), sep="\t", header=0, names=header, dtype={"user_id": str, "item_id": str})
    out = pd.DataFrame({"user": _id_column(df["user_id"], "user_id", inter_name),
                        "item": _id_column(df["item_id"], "item_id", inter_name)})
    if "timestamp" in header:
        out["time"] = pd.to_numeric(df["timestamp"], errors="coerce")
        if out["time"].isna().any():
            line = int(np.flatnonzero(out["time"].isna().to_numpy())[0]) + 2
            raise DataFormatError(f"{inter_name}:{line}: field 'timestamp' is not a number")
    return RawData(items, out)
