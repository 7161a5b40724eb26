"""LC-Rec JSON: ``*.item.json`` and ``*.inter.json``."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ._registry import register_format
from ..dataset import DataFormatError, RawData, ordered_attributes
from ._io import _find_one, _id, _read_text


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


@register_format("lcrec", recognises=lambda names: any(n.endswith(".item.json") for n in names) and any(n.endswith(".inter.json") for n in names), order=20)
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
