"""Datasets: readers for every source format, shared processing, leave-one-out split, stats."""
from .dataset import (
    DataFormatError,
    DataUnavailable,
    EvalCase,
    ProcessingConfig,
    RawData,
    SeqRecDataset,
    build_dataset,
    clean_text,
    k_core_filter,
)
from .registry import (
    DATA_ROOT_ENV,
    DATASETS,
    PRETRAIN_DOMAINS,
    available_datasets,
    data_root,
    load_dataset,
    read_movielens,
)

__all__ = [
    "DataFormatError", "DataUnavailable", "EvalCase", "ProcessingConfig", "RawData", "SeqRecDataset", "build_dataset",
    "clean_text", "k_core_filter", "DATA_ROOT_ENV", "DATASETS", "PRETRAIN_DOMAINS", "available_datasets",
    "data_root", "load_dataset", "read_movielens",
]
