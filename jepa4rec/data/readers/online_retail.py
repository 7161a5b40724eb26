"""UCI Online Retail: parquet, or the original CSV / XLSX (one row per invoice line)."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ._registry import register_format
from ..dataset import DataFormatError, RawData
from ._io import _csv_error, _first_non_utf8, _require


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


@register_format("online_retail", recognises=lambda names: any(n.lower().endswith((".parquet", ".csv", ".xlsx")) for n in names), order=90)
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
