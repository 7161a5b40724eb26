"""Named datasets: which folder under the data root and which format each is (the data root itself:
:mod:`jepa4rec.paths`; the formats: :mod:`jepa4rec.data.readers`, one module each).

``load_dataset("Scientific_UniSRec")`` reads ``<data root>/Scientific_UniSRec`` with that dataset's
reader and preset; ``load_dataset("path/to/folder")`` detects the format from the files it holds.
The data root is ``$JEPA4REC_DATA_ROOT`` or, by default, ``../shared/data`` next to the project.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..paths import DATA_ROOT_ENV, data_root
from .dataset import DataFormatError, ProcessingConfig, SeqRecDataset, build_dataset
from .readers import FORMATS, detect_format
from .sources import SOURCES, download_command, download_root
from .readers.movielens import RECBOLE_WHEEL_VERSION, read_movielens, recbole_wheel  # noqa: F401 -- re-exported


@dataclass(frozen=True)
class DatasetSpec:
    reader: str  # a format name of jepa4rec.data.readers (each format module registers its own)
    folder: str | None = None  # relative to the data root; None for wheel-backed data
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    options: dict = field(default_factory=dict)
    domain: str | None = None
    note: str = ""


# The pre-training folders are already exact 5-core; the filter runs anyway and drops nothing.
PRETRAIN_DOMAINS = (
    "Beauty2014_SeqRecBench",
    "Toys2014_SeqRecBench",
    "Clothing2014_SeqRecBench",
    "Health2014_SeqRecBench",
    "Games2018_SeqRecBench",
    "Books2014-1M_SeqRecBench",
    "Electronics2014-1M_SeqRecBench",
    "Electronics2018-1M_SeqRecBench",
)

DATASETS: dict[str, DatasetSpec] = {
    "Scientific_UniSRec": DatasetSpec("unisrec", "Scientific_UniSRec", domain="Scientific"),
    "Scientific_LCRec": DatasetSpec("lcrec", "Scientific_LCRec", domain="Scientific"),
    # IISAN's published sample is only user-5-core (items may have fewer than 5 interactions);
    # an item 5-core would remove most of it, so the preset keeps the sample as published.
    "Instruments_IISAN": DatasetSpec(
        "iisan", "Instruments_IISAN", ProcessingConfig(k_core=0), domain="Instruments",
        note="user-5-core sample kept as published (k_core=0); repeats kept",
    ),
    "OnlineRetail": DatasetSpec(
        "online_retail", "OnlineRetail_raw_BenJMcCarty", options={"item_key": "Description"}, domain="OnlineRetail",
    ),
    "OnlineRetail_raw_BenJMcCarty": DatasetSpec(
        "online_retail", "OnlineRetail_raw_BenJMcCarty", options={"item_key": "Description"}, domain="OnlineRetail",
    ),
    "OnlineRetail_cleaned_Yussufgit": DatasetSpec(
        "online_retail", "OnlineRetail_cleaned_Yussufgit", options={"item_key": "Description"}, domain="OnlineRetail",
    ),
    "OnlineRetail_StockCode": DatasetSpec(
        "online_retail", "OnlineRetail_cleaned_Yussufgit", options={"item_key": "StockCode"}, domain="OnlineRetail",
    ),
    "ml-100k": DatasetSpec("movielens", None, domain="Movies", note="MovieLens-100k from the recbole wheel"),
}
for _name in PRETRAIN_DOMAINS:
    DATASETS[_name] = DatasetSpec("seqrecbench", _name, domain=_name.split("_")[0])


def load_dataset(
    name_or_path: str,
    root: str | os.PathLike | None = None,
    processing: ProcessingConfig | None = None,
    **overrides,
) -> SeqRecDataset:
    """Load a named dataset from the data root, or a folder in any supported layout.

    ``overrides`` replace fields of the preset's :class:`ProcessingConfig` (e.g. ``k_core=10``) or
    are passed to the reader (e.g. ``item_key="StockCode"``).
    """
    spec = DATASETS.get(name_or_path)
    if spec is None:
        path = Path(name_or_path)
        if not path.exists():
            raise DataFormatError(
                f"'{name_or_path}' is neither a known dataset ({', '.join(sorted(DATASETS))}) nor an existing path",
                hint="check the spelling, or give a folder in one of the layouts of README 'Data'")
        spec = DatasetSpec(detect_format(path), str(path))
        name = path.name
        folder = path
    else:
        name = name_or_path
        folder = dataset_folder(name, root) if spec.folder else None
        if folder is not None and not folder.exists():
            fetch = f"run {download_command(name)}, or " if name in SOURCES else ""
            raise DataFormatError(f"dataset '{name}' expects {folder}: not found",
                                  hint=f"{fetch}set {DATA_ROOT_ENV} or --data-root to the folder holding {spec.folder}/")
    proc_fields = set(ProcessingConfig.__dataclass_fields__)
    proc = processing or spec.processing
    proc = replace(proc, **{k: v for k, v in overrides.items() if k in proc_fields})
    options = {**spec.options, **{k: v for k, v in overrides.items() if k not in proc_fields}}
    read = FORMATS[spec.reader].read
    raw = read(folder, **options) if folder is not None else read(**options)
    return build_dataset(name, raw, proc, domain=spec.domain)


def dataset_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset ``name``'s folder is: under the data root, else where a download put it (when no data root
    is set, downloads go to the cache: :func:`jepa4rec.data.sources.download_root`); the data root's path when
    it is in neither."""
    spec = DATASETS[name]
    here = data_root(root) / spec.folder
    downloaded = download_root(root) / spec.folder
    return downloaded if not here.exists() and downloaded.exists() else here


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Named datasets whose folder exists under the data root or was downloaded (ml-100k is always listed)."""
    return [n for n, s in DATASETS.items() if s.folder is None or dataset_folder(n, root).exists()]
