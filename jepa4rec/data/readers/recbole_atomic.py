"""RecBole atomic ``.inter`` + ``.item`` text (MovieLens-100k inside the recbole wheel)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ..dataset import DataFormatError, RawData
from ._io import _id, _id_column


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
