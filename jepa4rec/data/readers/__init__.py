"""One reader per source format, each in its own module that registers itself here.

A format module declares its name, its reader (returning a :class:`~jepa4rec.data.dataset.RawData`; none
applies shared processing) and how it recognises a folder, with :func:`register_format`::

    @register_format("unisrec", recognises=lambda names: ..., order=10)
    def read_unisrec(folder: Path) -> RawData: ...

Every module of this package is imported when the package is, so a new format is one new module: nothing
else changes (:func:`detect_format` tries the registered formats in ``order``; :mod:`jepa4rec.data.registry`
maps dataset names onto format names). Every reader raises :class:`DataFormatError` naming the file and the
line or field it could not read.
"""
from __future__ import annotations

import importlib
import pkgutil
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


# Each module registers its format on import.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from .amazon import read_amazon2018, read_amazon2023  # noqa: E402 -- the readers by name, for callers
from .iisan import read_iisan  # noqa: E402
from .lcrec import read_lcrec  # noqa: E402
from .movielens import read_movielens, recbole_wheel  # noqa: E402
from .online_retail import read_online_retail  # noqa: E402
from .recbole_atomic import parse_atomic_header, read_recbole_atomic  # noqa: E402
from .seqrecbench import read_seqrecbench  # noqa: E402
from .unisrec import read_unisrec, split_unisrec_text, unisrec_top_category  # noqa: E402

__all__ = ["FORMATS", "Format", "register_format", "detect_format", "read_amazon2018", "read_amazon2023", "read_iisan",
           "read_lcrec", "read_movielens", "recbole_wheel", "read_online_retail", "read_recbole_atomic", "parse_atomic_header", "read_seqrecbench",
           "read_unisrec", "split_unisrec_text", "unisrec_top_category"]
