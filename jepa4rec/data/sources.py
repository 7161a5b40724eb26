"""Where each dataset comes from, and fetching it from there: ``python -m jepa4rec.data download NAME``.

Every file of the app's datasets is a byte-exact copy of a file committed to a public GitHub repository
(``../shared/data/SOURCES.md`` gives the provenance; :data:`SOURCES` restates what a download needs: the
repository, the commit, the path, and each file's size, sha256 and git blob id). A download fetches each
file from that commit, checks its size and sha256 (a truncated or altered file is deleted and refused),
and writes the folder under the download root with ``SOURCE.json``, a record of where it came from. Nothing
is converted and nothing is unpickled: the eight pre-training domains exist upstream only as pickles inside
zips, so they are not downloadable (their conversion needs an unpickler, see SOURCES.md).

The download root is the data root when one is set (``--data-root`` or ``$JEPA4REC_DATA_ROOT``), else
``<cache>/data`` (``$JEPA4REC_CACHE``, default ``~/.cache/jepa4rec``): a fresh clone or a Space writes nothing
beside the project. :func:`jepa4rec.data.load_dataset` looks in both.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..paths import DATA_ROOT_ENV, cache_dir
from .dataset import DataFormatError, DataUnavailable

GITHUB_RAW = "https://raw.githubusercontent.com"
BASE_URL_ENV = "JEPA4REC_DATA_URL"  # a mirror of raw.githubusercontent.com (tests serve one locally)
CHUNK = 1 << 16


@dataclass(frozen=True)
class SourceFile:
    name: str
    size: int
    sha256: str
    blob: str  # git blob id, as SOURCES.md records it


@dataclass(frozen=True)
class Source:
    folder: str  # under the data root
    repo: str
    commit: str
    path: str  # folder in the repository
    files: tuple[SourceFile, ...]
    license: str

    def url(self, file: SourceFile, base: str = GITHUB_RAW) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.path}/{file.name}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


_UNISREC = Source("Scientific_UniSRec", "ysh-1998/CoWPiRec", "db47560c2364650d22afc77080717287daec5079",
                  "dataset/Scientific", (
    SourceFile("Scientific.item2index", 69050, "896ab1017508cf20834d3d0537da9f8f624324223a835af272a98ba16f8c087a",
               "15d31dca0ccb11171cc0683b75a580a2b8c3e19e"),
    SourceFile("Scientific.test.inter", 309842, "546da7e5f44002b4518d7fd58066684bc09613f76c240914e16976d57cfe7083",
               "097d788387e9b3e868b09348b0316c95f8086d7e"),
    SourceFile("Scientific.text", 859222, "95887e6bda76e54f59b71b566320520d5da74e21d3b6ff8f20bfb6e8e84aa831",
               "657d413b287647c4d36b40b8e85ff2146146941f"),
    SourceFile("Scientific.train.inter", 929295, "7284f6489d956fa20c9b64ffc84569264320edba5c3bc2fcb22db2ea083a1163",
               "05d21204271aaca46567e8ce37ba462a74dcd3b3"),
    SourceFile("Scientific.user2index", 165602, "f0162b1a3a0c6b7e816f86208e7b36f65d6787923126f9558fbc6d368e4c4974",
               "72b88c9146f8161cde5ed9e165eee38efd643f34"),
    SourceFile("Scientific.valid.inter", 271473, "5f37c84d3b54617cdc46638c89dfe8741c7efc4987acd5eb64de2cbd4311f46c",
               "83d1b5e5e5ace14fc0c9cb49908ab46705543d2a"),
), "no LICENSE file in the repository; Amazon review data (McAuley lab), research use")
_LCREC = Source("Scientific_LCRec", "Nishikata97/CollisionGenRec", "505d5be3166f7c38ae67957daf8a3b7ec7092577",
                "data/Scientific", (
    SourceFile("Scientific.inter.json", 408626, "32c6c01876ebecebdfabd2dbd358594be36655e9e7b168772a7a3aa3624ee1b4",
               "b92cd4a75ff304454031cc07017e952a87984927"),
    SourceFile("Scientific.item.json", 3709486, "ad24200106868dac2b544d812305d61a11bf07fed78b2f7cdca41d66f3418e71",
               "abd862b199879b8793be544963a00c5167ac0299"),
), "MIT; Amazon review data (McAuley lab), research use")
_IISAN = Source("Instruments_IISAN", "GAIR-Lab/IISAN", "67f5c1faf12a1f9fc3258922bb05684561532d1d", "Dataset/Instrument", (
    SourceFile("Musical_Instruments_items.tsv", 2849271,
               "bd91547b58df5434de782336c54ffa80f8a83ce59f2811287dcfba555016645f", "c4b0b63e706fba4c5b9d4719b7e32e2b3d00a348"),
    SourceFile("am_Musical_Instruments_users_10K.tsv", 1069462,
               "d6c2d2a4e7108423c14014820abf47f90969b8655e9655b2963c793ad3f24e4b", "02958614b874cae2dc488782a59f472f1db07327"),
), "no LICENSE file in the repository; Amazon review data (McAuley lab), research use")
_RETAIL_RAW = Source("OnlineRetail_raw_BenJMcCarty", "BenJMcCarty/UCI_Dataset_Online_Retail",
                     "15986919cc97e40bc4bcfd61a63eb837f31d45c5", "data", (
    SourceFile("online_retail.parquet", 2261355, "d4bf11013582a8f3a068b6762a7e12d9899d456d615d5340ce998a61bc46c12a",
               "b497b6ba2edc87cae27bc2c50be580202a3999ea"),
), "no LICENSE file in the repository; UCI Online Retail, CC BY 4.0")
_RETAIL_CLEAN = Source("OnlineRetail_cleaned_Yussufgit", "Yussufgit/retail-customer-analytics",
                       "f91dc953cdf6cbd8db987c5a035ee26fcb595347", "data", (
    SourceFile("online_retail.parquet", 3305306, "ad09db649d5ee696a47d87d042b4c364c0d386a6873f195e34bda01411d2349d",
               "0bbcbd9027ee5edcbd0970b65ee9dd82e3da9d6a"),
), "no LICENSE file in the repository; UCI Online Retail, CC BY 4.0")

# Dataset name (as load_dataset takes it) -> where its folder comes from.
SOURCES: dict[str, Source] = {
    "Scientific_UniSRec": _UNISREC, "Scientific_LCRec": _LCREC, "Instruments_IISAN": _IISAN,
    "OnlineRetail": _RETAIL_RAW, "OnlineRetail_raw_BenJMcCarty": _RETAIL_RAW,
    "OnlineRetail_cleaned_Yussufgit": _RETAIL_CLEAN, "OnlineRetail_StockCode": _RETAIL_CLEAN,
}
RECORD = "SOURCE.json"


def download_root(override: str | os.PathLike | None = None) -> Path:
    """Where downloads go: the data root when one is set, else ``<cache>/data``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env) if env else cache_dir() / "data"


def download_command(name: str) -> str:
    return f"python -m jepa4rec.data download {name}"


def _fetch(url: str, dest: Path, file: SourceFile, progress: Callable[[int], None], timeout: float) -> None:
    """``url`` into ``dest``, checked against ``file``'s size and sha256; nothing is left behind on failure."""
    digest, got = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:  # noqa: S310 -- https or a given mirror
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                if got > file.size:
                    break
                progress(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
        dest.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise DataUnavailable(f"{file.name}: could not download {url} ({reason})",
                              hint="no network here? fetch the folder where there is one and set JEPA4REC_DATA_ROOT") from None
    if got != file.size:
        dest.unlink(missing_ok=True)
        raise DataFormatError(f"{file.name}: {url} gave {got:,} bytes, not the {file.size:,} of the committed file "
                              "(cut short, or not that file)", hint="try again; the file was not kept")
    if digest.hexdigest() != file.sha256:
        dest.unlink(missing_ok=True)
        raise DataFormatError(f"{file.name}: {url} is not the committed file (sha256 {digest.hexdigest()[:12]}…, expected "
                              f"{file.sha256[:12]}…)", hint="the mirror serves another file; the file was not kept")


def is_downloaded(name: str, root: str | os.PathLike | None = None) -> bool:
    source = SOURCES.get(name)
    if source is None:
        return False
    folder = download_root(root) / source.folder
    return all((folder / f.name).is_file() and (folder / f.name).stat().st_size == f.size for f in source.files)


def download(name: str, root: str | os.PathLike | None = None, base_url: str | None = None,
             progress: Callable[[int, int], None] | None = None, timeout: float = 60.0) -> Path:
    """Fetch dataset ``name``'s folder from its source commit into the download root (a folder already there
    whole is kept); returns the folder. ``progress(bytes_done, bytes_total)`` is called as it comes in.
    A failure leaves no partial folder behind."""
    if name not in SOURCES:
        downloadable = sorted(SOURCES)
        raise DataUnavailable(f"dataset '{name}' has no download source here",
                              hint=f"downloadable: {', '.join(downloadable)} (the pre-training domains exist upstream "
                                   "only as pickles; MovieLens-100k comes from the recbole wheel)")
    source = SOURCES[name]
    base = base_url or os.environ.get(BASE_URL_ENV) or GITHUB_RAW
    root = download_root(root)
    folder = root / source.folder
    if is_downloaded(name, root):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{source.folder}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    done, report = 0, progress or (lambda done, total: None)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        report(done, source.size)

    try:
        for file in source.files:
            _fetch(source.url(file, base), partial / file.name, file, advance, timeout)
        record = {"dataset": name, "repository": f"https://github.com/{source.repo}", "commit": source.commit,
                  "path": source.path, "license": source.license, "downloaded_from": base,
                  "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "files": [{"name": f.name, "bytes": f.size, "sha256": f.sha256, "git_blob": f.blob} for f in source.files]}
        (partial / RECORD).write_text(json.dumps(record, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
