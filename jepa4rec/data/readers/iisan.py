"""IISAN TSV: ``*items*.tsv`` and ``*users*.tsv``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ._registry import register_format
from ..dataset import DataFormatError, RawData
from ._io import _find_one, _open_text


@register_format("iisan", recognises=lambda names: any(n.endswith(".tsv") and "item" in n for n in names) and any(n.endswith(".tsv") and "user" in n for n in names), order=40)
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
