"""The registry of source formats: each format module declares itself with :func:`register_format`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..dataset import DataFormatError, RawData


@dataclass(frozen=True)
class Format:
    name: str
    read: Callable[..., RawData]
    # the names of the files in a folder -> whether it is in this format (None: never detected, read by name)
    recognises: Callable[[list[str]], bool] | None
    order: int  # lower is tried first (a more specific layout before a catch-all)


FORMATS: dict[str, Format] = {}


def register_format(name: str, recognises: Callable[[list[str]], bool] | None = None, order: int = 100):
    """Register the decorated reader as format ``name``."""
    def decorate(read: Callable[..., RawData]) -> Callable[..., RawData]:
        if name in FORMATS:
            raise ValueError(f"format {name!r} is registered twice")
        FORMATS[name] = Format(name, read, recognises, order)
        return read
    return decorate


def detect_format(path: Path) -> str:
    """The format of a folder (from the names of its files) or of a single data file."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".parquet", ".csv", ".xlsx", ".xls"):
            return "online_retail"
        raise DataFormatError(f"{path}: cannot tell the format of this file",
                              hint="give a folder in one of the layouts of README 'Data'")
    names = [p.name for p in path.iterdir()]
    for fmt in sorted(FORMATS.values(), key=lambda f: f.order):
        try:
            hit = fmt.recognises is not None and fmt.recognises(names)
        except DataFormatError as err:  # a layout recognised as broken (half a SeqRecBench folder)
            raise DataFormatError(f"{path}: {err.message}", hint=err.hint) from None
        if hit:
            return fmt.name
    raise DataFormatError(f"{path}: no known dataset layout (files: {sorted(names)[:10]})",
                          hint="give a folder in one of the layouts of README 'Data'")
