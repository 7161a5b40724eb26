"""Where things live on disk: the project, the data root, the cache, shipped checkpoints and results.

Every other module asks here; none derives a path from its own ``__file__``. Imports nothing of the
project (the lowest layer, with :mod:`jepa4rec.errors`).

* data root: ``--data-root DIR``, else ``$JEPA4REC_DATA_ROOT``, else ``../shared/data`` beside the project;
* cache (item vectors, UMAP maps, sentence vectors, the recbole wheel): ``$JEPA4REC_CACHE``, else
  ``~/.cache/jepa4rec``;
* ``checkpoints/`` (shipped model directories and ``index.json``) and ``scripts/results/`` (what the
  experiment commands write and the app charts) sit in the project folder.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the shipped run configs (a --config NAME)
CHECKPOINTS_DIR = PROJECT_ROOT / "checkpoints"
RESULTS_DIR = PROJECT_ROOT / "scripts" / "results"
SCRIPTS_DIR = PROJECT_ROOT / "scripts"

DATA_ROOT_ENV = "JEPA4REC_DATA_ROOT"
CACHE_ENV = "JEPA4REC_CACHE"


def data_root(override: str | os.PathLike | None = None) -> Path:
    """The folder holding the named datasets (not created)."""
    if override is not None:
        return Path(override)
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """The cache folder (created)."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env) if env else Path.home() / ".cache" / "jepa4rec"
    path.mkdir(parents=True, exist_ok=True)
    return path
