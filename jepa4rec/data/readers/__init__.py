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

from ._registry import FORMATS, Format, detect_format, register_format


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
