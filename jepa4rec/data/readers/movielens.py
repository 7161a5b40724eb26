"""MovieLens-100k from the ``recbole`` wheel on PyPI (RecBole atomic files inside it), downloaded with pip where
a registry is reachable and cached; read by name (``ml-100k``), not detected. MovieLens terms forbid
redistribution: nothing of it is committed."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from ._registry import register_format
from ...paths import CACHE_ENV, cache_dir
from ..dataset import DataFormatError, DataUnavailable, RawData
from .recbole_atomic import read_recbole_atomic

RECBOLE_WHEEL_VERSION = "1.2.1"


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


@register_format("movielens")
def read_movielens(path: Path | None = None, wheel: Path | None = None) -> RawData:
    """MovieLens-100k from the recbole wheel (``wheel``: a given copy of it; ``path`` is unused: it has no folder)."""
    wheel = Path(wheel) if wheel else recbole_wheel()
    base = "recbole/dataset_example/ml-100k/ml-100k"
    try:
        with zipfile.ZipFile(wheel) as zf:
            inter = zf.read(f"{base}.inter").decode("utf-8")
            item = zf.read(f"{base}.item").decode("latin-1")
    except (KeyError, zipfile.BadZipFile) as err:
        raise DataFormatError(f"{wheel}: no MovieLens-100k inside ({err})") from None
    return read_recbole_atomic(inter, item, f"{wheel.name}!{base}.inter", f"{wheel.name}!{base}.item")
