"""SeqRecBench: ``items.jsonl`` (integer ids, title) and ``interactions.csv``."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ._registry import register_format
from ..dataset import DataFormatError, RawData, ordered_attributes
from ._io import _is_text, _json_id, _json_lines, _read_csv, _require


def _is_seqrecbench(names: list[str]) -> bool:
    if "items.jsonl" in names and "interactions.csv" in names:
        return True
    if "interactions.csv" in names:  # half a SeqRecBench folder, not an Online Retail CSV
        raise DataFormatError("no items.jsonl beside interactions.csv (SeqRecBench layout)")
    return False


@register_format("seqrecbench", recognises=_is_seqrecbench, order=30)
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
