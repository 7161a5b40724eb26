"""Named datasets: which folder under the data root and which format each is (the data root itself:
:mod:`jepa4rec.paths`; the formats: :mod:`jepa4rec.data.readers`, one module each).

``load_dataset("Scientific_UniSRec")`` reads ``<data root>/Scientific_UniSRec`` with that dataset's
reader and preset; ``load_dataset("path/to/folder")`` detects the format from the files it holds.
The data root is ``$JEPA4REC_DATA_ROOT`` or, by default, ``../shared/data`` next to the project.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..paths import DATA_ROOT_ENV, cache_dir, data_root
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
    cache: bool = False,
    **overrides,
) -> SeqRecDataset:
    """Load a named dataset from the data root, or a folder in any supported layout.

    ``overrides`` replace fields of the preset's :class:`ProcessingConfig` (e.g. ``k_core=10``) or
    are passed to the reader (e.g. ``item_key="StockCode"``). ``cache``: keep the processed dataset as JSON in
    the cache folder and read it from there while the source files, the processing and the code are the
    same (the app's first switch: Online Retail takes 7 s to read and process, 0.3 s from the cache).
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
    _check_reader_options(read, spec.reader, {k for k in overrides if k not in proc_fields}, folder is not None)
    stored = _processed_path(name, spec.reader, folder, proc, options) if cache and folder is not None else None
    if stored is not None and stored.exists():
        try:
            return SeqRecDataset(**json.loads(stored.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):  # a cut or foreign file: read the source again
            pass
    raw = read(folder, **options) if folder is not None else read(**options)
    dataset = build_dataset(name, raw, proc, domain=spec.domain)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(dataclasses.asdict(dataset), ensure_ascii=False), encoding="utf-8")
        os.replace(partial, stored)
    return dataset


def _check_reader_options(read, reader: str, given: set[str], takes_folder: bool) -> None:
    """A keyword that is neither a processing field nor the reader's option is a mistake (``data_root=`` for
    ``root=``): name it and what is accepted, rather than a TypeError from inside the reader."""
    params = list(inspect.signature(read).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = {p.name for p in params[1 if takes_folder else 0:] if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    unknown = sorted(given - accepted)
    if unknown:
        raise ConfigError(f"load_dataset: unknown option(s) {', '.join(unknown)} for the {reader} reader",
                          hint=f"the data root is root=; processing options: "
                               f"{', '.join(sorted(ProcessingConfig.__dataclass_fields__))}; {reader} reader options: "
                               f"{', '.join(sorted(accepted)) or 'none'}")


def _processed_path(name: str, reader: str, folder: Path, proc: ProcessingConfig, options: dict) -> Path:
    """Where a processed dataset is kept (``load_dataset(cache=True)``): keyed by every source file's name, size
    and modification time, the processing, the reader's options and the code that reads and processes, so a
    changed file, preset or reader is read afresh."""
    files = sorted((str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
                   for f in folder.rglob("*") if f.is_file())
    code = [Path(inspect.getfile(FORMATS[reader].read)).read_bytes(), Path(inspect.getfile(build_dataset)).read_bytes()]
    key = hashlib.sha256(json.dumps([name, reader, files, dataclasses.asdict(proc), options], sort_keys=True,
                                    default=str).encode() + b"".join(code)).hexdigest()[:24]
    return cache_dir() / "datasets" / f"{name}-{key}.json"


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
