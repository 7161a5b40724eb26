"""What the format readers share: opening text (naming non-UTF-8 bytes by file, line and byte), CSV and JSON-lines
records, ids and fields, each problem a :class:`~jepa4rec.data.dataset.DataFormatError` naming the file and line."""
from __future__ import annotations

import gzip
import io
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..dataset import DataFormatError


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
