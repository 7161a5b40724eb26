"""Raw Amazon reviews, 2018 and 2023 layouts (review and meta JSON lines); read by name, not detected."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..dataset import DataFormatError, RawData
from ._io import _field, _json_id, _json_lines


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
