"""What the app serves: datasets, their Recommenders, cached 2-D maps and experiment result files.

Every dataset is served by a checkpoint listed in ``checkpoints/index.json``: a dataset with its own
fine-tuned checkpoint uses it, every other dataset found under the data root uses the ``default``
(pre-trained) checkpoint zero-shot, which works because items are text.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jepa4rec.data import DataFormatError, SeqRecDataset, available_datasets, load_dataset
from jepa4rec.data.registry import PROJECT_ROOT, cache_dir
from jepa4rec.recommend import Recommender

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = PROJECT_ROOT / "checkpoints"
RESULTS_DIR = PROJECT_ROOT / "scripts" / "results"
DEFAULT_DATASET = "ml-100k"
# Datasets the app offers when their folder exists under the data root (the pre-training domains
# and the duplicate Online Retail copies are left out of the menu).
APP_DATASETS = ("ml-100k", "Scientific_UniSRec", "Instruments_IISAN", "OnlineRetail", "Scientific_LCRec")


@dataclass
class Served:
    name: str
    dataset: SeqRecDataset
    recommender: Recommender
    checkpoint: Path
    mode: str  # "fine-tuned" or "zero-shot"


def checkpoint_index(checkpoints_dir: Path = CHECKPOINTS_DIR) -> dict[str, str]:
    path = checkpoints_dir / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it maps datasets to checkpoint folders (see checkpoints/README.md)")
    return json.loads(path.read_text())


class AppService:
    """Loads lazily and keeps one Recommender per dataset; safe to share between request threads."""

    def __init__(self, data_root: str | os.PathLike | None = None, checkpoints_dir: Path = CHECKPOINTS_DIR,
                 device: str | None = None, results_dir: Path = RESULTS_DIR, datasets: list[str] | None = None):
        self.data_root = data_root
        self._datasets = list(datasets) if datasets else None  # names or folders; None = APP_DATASETS found
        self.checkpoints_dir = Path(checkpoints_dir)
        self.results_dir = Path(results_dir)
        self.device = device
        self.index = checkpoint_index(self.checkpoints_dir)
        self._served: dict[str, Served] = {}
        self._maps: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def dataset_names(self) -> list[str]:
        if self._datasets is not None:
            return list(self._datasets)
        found = set(available_datasets(self.data_root))
        return [n for n in APP_DATASETS if n in found]

    def checkpoint_for(self, name: str) -> tuple[Path, str]:
        if name in self.index and name != "default":
            return self.checkpoints_dir / self.index[name], "fine-tuned"
        return self.checkpoints_dir / self.index["default"], "zero-shot"

    def get(self, name: str) -> Served:
        with self._lock:
            if name not in self._served:
                if name not in self.dataset_names():
                    raise DataFormatError(f"dataset '{name}' is not available (data root: {self.data_root or 'default'})")
                dataset = load_dataset(name, root=self.data_root)
                path, mode = self.checkpoint_for(name)
                rec = Recommender.from_pretrained(path, dataset, device=self.device)
                _ = rec.item_vectors  # encode (or load from cache) once, up front
                self._served[name] = Served(name, dataset, rec, path, mode)
            return self._served[name]

    def embedding_map(self, name: str, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
        """2-D UMAP coordinates of every item vector: fitted once per checkpoint + catalogue, cached on disk."""
        served = self.get(name)
        rec = served.recommender
        key = hashlib.sha256(f"{rec.cache_key()}|umap|{n_neighbors}|{seed}".encode()).hexdigest()[:32]
        path = cache_dir() / "umap" / f"{key}.npy"
        with self._lock:
            if name in self._maps:
                return self._maps[name]
            if path.exists():
                coords = np.load(path)
            else:
                import umap

                vectors = rec.unit_item_vectors.cpu().numpy()
                reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, metric="cosine", random_state=seed)
                coords = reducer.fit_transform(vectors).astype(np.float32)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, coords)
            self._maps[name] = coords
            return coords

    def result_file(self, stem: str) -> Path | None:
        # The CSV holds the rows; a JSON of the same name is the run's metadata (config, seeds, time).
        for ext in (".csv",):
            p = self.results_dir / f"{stem}{ext}"
            if p.exists():
                return p
        return None
