"""Named datasets and MovieLens-100k from the recbole wheel (the data root itself: :mod:`jepa4rec.paths`).

``load_dataset("Scientific_UniSRec")`` reads ``<data root>/Scientific_UniSRec`` with that dataset's
reader and preset; ``load_dataset("path/to/folder")`` detects the format from the files it holds.
The data root is ``$JEPA4REC_DATA_ROOT`` or, by default, ``../shared/data`` next to the project.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..paths import CACHE_ENV, DATA_ROOT_ENV, cache_dir, data_root
from . import readers
from .dataset import DataFormatError, DataUnavailable, ProcessingConfig, RawData, SeqRecDataset, build_dataset

RECBOLE_WHEEL_VERSION = "1.2.1"


@dataclass(frozen=True)
class DatasetSpec:
    reader: str
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


def recbole_wheel(download: bool = True) -> Path:
    """Path of the recbole wheel that ships MovieLens-100k, downloading it with pip if needed.

    pip reaches only package registries, which is all a fresh machine (or a Space) needs. The wheel is
    cached under ``$JEPA4REC_CACHE`` (default ``~/.cache/jepa4rec``); nothing from it is committed.
    """
    target = cache_dir() / "wheels"
    hits = sorted(target.glob(f"recbole-{RECBOLE_WHEEL_VERSION}-*.whl"))
    if hits:
        return hits[0]
    requirement = f"recbole=={RECBOLE_WHEEL_VERSION}"
    how = (f"fetch it where there is network ('pip download --no-deps {requirement}') and copy "
           f"recbole-{RECBOLE_WHEEL_VERSION}-py3-none-any.whl into {target}, or set {CACHE_ENV} to a folder "
           "whose wheels/ holds it")
    if not download:
        raise DataUnavailable(f"MovieLens-100k: no recbole {RECBOLE_WHEEL_VERSION} wheel in {target}", hint=how)
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    hits = sorted(target.glob(f"recbole-{RECBOLE_WHEEL_VERSION}-*.whl"))
    if result.returncode != 0 or not hits:
        said = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise DataUnavailable(
            f"MovieLens-100k: no recbole {RECBOLE_WHEEL_VERSION} wheel in {target}, and pip could not download it "
            f"(no network? pip said: {said[-1][:200] if said else f'exit code {result.returncode}'})", hint=how)
    return hits[0]


def read_movielens(wheel: Path | None = None) -> RawData:
    wheel = Path(wheel) if wheel else recbole_wheel()
    base = "recbole/dataset_example/ml-100k/ml-100k"
    try:
        with zipfile.ZipFile(wheel) as zf:
            inter = zf.read(f"{base}.inter").decode("utf-8")
            item = zf.read(f"{base}.item").decode("latin-1")
    except (KeyError, zipfile.BadZipFile) as err:
        raise DataFormatError(f"{wheel}: no MovieLens-100k inside ({err})") from None
    return readers.read_recbole_atomic(inter, item, f"{wheel.name}!{base}.inter", f"{wheel.name}!{base}.item")


READERS: dict[str, Callable[..., RawData]] = {
    "unisrec": readers.read_unisrec,
    "lcrec": readers.read_lcrec,
    "iisan": readers.read_iisan,
    "seqrecbench": readers.read_seqrecbench,
    "online_retail": readers.read_online_retail,
    "movielens": lambda path=None, **kw: read_movielens(**kw),
}


def detect_reader(path: Path) -> str:
    """Guess the reader of a folder (or file) from the names of the files in it."""
    if path.is_file():
        if path.suffix.lower() in (".parquet", ".csv", ".xlsx", ".xls"):
            return "online_retail"
        raise DataFormatError(f"{path}: cannot tell the format of this file",
                              hint="give a folder in one of the layouts of README 'Data'")
    names = [p.name for p in path.iterdir()]
    if any(n.endswith(".text") for n in names) and any(n.endswith(".train.inter") for n in names):
        return "unisrec"
    if any(n.endswith(".item.json") for n in names) and any(n.endswith(".inter.json") for n in names):
        return "lcrec"
    if "items.jsonl" in names and "interactions.csv" in names:
        return "seqrecbench"
    if "interactions.csv" in names:  # half a SeqRecBench folder, not an Online Retail CSV
        raise DataFormatError(f"{path}: no items.jsonl beside interactions.csv (SeqRecBench layout)")
    if any(n.endswith(".tsv") and "item" in n for n in names) and any(n.endswith(".tsv") and "user" in n for n in names):
        return "iisan"
    if any(n.lower().endswith((".parquet", ".csv", ".xlsx")) for n in names):
        return "online_retail"
    raise DataFormatError(f"{path}: no known dataset layout (files: {sorted(names)[:10]})",
                          hint="give a folder in one of the layouts of README 'Data'")


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
        spec = DatasetSpec(detect_reader(path), str(path))
        name = path.name
        folder = path
    else:
        name = name_or_path
        folder = data_root(root) / spec.folder if spec.folder else None
        if folder is not None and not folder.exists():
            raise DataFormatError(f"dataset '{name}' expects {folder}: not found",
                                  hint=f"set {DATA_ROOT_ENV} or --data-root to the folder holding {spec.folder}/")
    proc_fields = set(ProcessingConfig.__dataclass_fields__)
    proc = processing or spec.processing
    proc = replace(proc, **{k: v for k, v in overrides.items() if k in proc_fields})
    options = {**spec.options, **{k: v for k, v in overrides.items() if k not in proc_fields}}
    raw = READERS[spec.reader](folder, **options) if folder is not None else READERS[spec.reader](**options)
    return build_dataset(name, raw, proc, domain=spec.domain)


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Named datasets whose folder exists under the data root (ml-100k is always listed)."""
    base = data_root(root)
    return [n for n, s in DATASETS.items() if s.folder is None or (base / s.folder).exists()]
