"""One reader per source format. Each returns a :class:`RawData`; none applies shared processing.

Every reader raises :class:`DataFormatError` naming the file and the line or field it could not read.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .dataset import DataFormatError, RawData, ordered_attributes


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    return path


def _open_text(path: Path):
    """Open a plain or gzip-compressed text file."""
    _require(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


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


def read_unisrec(folder: Path) -> RawData:
    folder = Path(folder)
    text_path = _find_one(folder, "*.text")
    stem = text_path.name[: -len(".text")]
    texts: dict[str, str] = {}
    with _open_text(text_path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if len(header) < 2 or not header[0].startswith("item_id"):
            raise DataFormatError(f"{text_path}:1: expected header 'item_id:token<TAB>text:token_seq', got {header}")
        for lineno, line in enumerate(fh, 2):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 2:
                raise DataFormatError(f"{text_path}:{lineno}: expected 2 tab-separated fields, got {len(cols)}")
            texts[cols[0]] = cols[1]
    top = unisrec_top_category(texts.values())
    items = {k: split_unisrec_text(v, top_category=top) for k, v in texts.items()}

    index2item: list[str] = []
    map_path = folder / f"{stem}.item2index"
    with _open_text(map_path) as fh:
        for lineno, line in enumerate(fh, 1):
            cols = line.split()
            if len(cols) != 2 or not cols[1].isdigit():
                raise DataFormatError(f"{map_path}:{lineno}: expected '<asin> <index>'")
            idx = int(cols[1])
            if idx != len(index2item):
                raise DataFormatError(f"{map_path}:{lineno}: indexes must run 0, 1, 2, ... (got {idx})")
            index2item.append(cols[0])
    user_map_path = folder / f"{stem}.user2index"
    index2user: list[str] = []
    if user_map_path.exists():
        with _open_text(user_map_path) as fh:
            index2user = [line.split()[0] for line in fh if line.strip()]

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
                try:
                    hist = [index2item[int(x)] for x in cols[1].split()]
                    target = index2item[int(cols[2])]
                except (ValueError, IndexError):
                    raise DataFormatError(f"{path}:{lineno}: item index not in {map_path.name}") from None
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

def read_lcrec(folder: Path) -> RawData:
    folder = Path(folder)
    item_path = _find_one(folder, "*.item.json")
    inter_path = _find_one(folder, "*.inter.json")
    try:
        meta = json.loads(_require(item_path).read_text(encoding="utf-8"))
        inters = json.loads(_require(inter_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{err.doc[:0] or ''}{item_path if 'meta' not in locals() else inter_path}:{err.lineno}: not valid JSON ({err.msg})") from None
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
    with _open_text(item_path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) < 2:
                raise DataFormatError(f"{item_path}:{lineno}: expected '<asin><TAB><title>'")
            items[cols[0].strip()] = {"title": "\t".join(cols[1:])}
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
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot parse as CSV ({err})") from None
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
        path = hits[0]
    _require(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix in (".xlsx", ".xls"):
        df = pd.read_excel(path, dtype={"InvoiceNo": str, "StockCode": str})
    else:
        df = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str}, encoding_errors="replace")
    if item_key not in ("Description", "StockCode"):
        raise DataFormatError(f"item_key must be 'Description' or 'StockCode', got '{item_key}'")
    needed = ["Description", "Quantity", "InvoiceDate", "CustomerID", item_key]
    lacking = sorted({c for c in needed if c not in df.columns})
    if lacking:
        hint = " (this copy has no StockCode: key items by Description)" if "StockCode" in lacking else ""
        raise DataFormatError(f"{path}: missing column(s) {lacking}; found {list(df.columns)}{hint}")
    report = [f"{path.name}: {len(df)} rows"]

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
    times = pd.to_datetime(df["InvoiceDate"], errors="coerce")
    bad = times.isna()
    if bad.any():
        first = df.index[bad.to_numpy()][0]
        raise DataFormatError(f"{path}: row {first}: field 'InvoiceDate' is not a date ({df.loc[first, 'InvoiceDate']!r})")
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
