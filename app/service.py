"""What the app serves: datasets, their Recommenders, cached 2-D maps and experiment result files.

Every dataset is served by a checkpoint listed in ``checkpoints/index.json``: a dataset with its own
fine-tuned checkpoint uses it, every other dataset found under the data root uses the ``default``
(pre-trained) checkpoint zero-shot, which works because items are text.

At most ``max_resident`` datasets stay loaded (least recently used first out), so a long-running
server visited on every dataset keeps a bounded memory; a dataset loaded again reads its item
vectors and map from the disk cache.
"""
from __future__ import annotations

import contextlib

import ctypes
import gc
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy

from jepa4rec.baselines.popularity import PopularityScorer
from jepa4rec.priors import evaluate_on_equal_terms
from jepa4rec.data import DataFormatError, SeqRecDataset, available_datasets, load_dataset
from jepa4rec.data.sources import SOURCES, download
from jepa4rec.evaluation import item_log_popularity, metrics_from_ranks
from jepa4rec.paths import CHECKPOINTS_DIR, RESULTS_DIR, cache_dir
from jepa4rec.checkpoint import checkpoint_index, compare_index, load_model_dir, weights_digest
from jepa4rec.recommender import Recommender
from jepa4rec.text import ItemTokenizer

from .batching import MicroBatcher, trim_heap
from .maps import MAP_NEIGHBOURS, MAP_SEED, cluster_groups, fit_map, item_groups

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "ml-100k"
# Datasets the app offers: present under the data root, or fetched from their public source on first use
# (jepa4rec.data.sources; the pre-training domains and the duplicate Online Retail copies are left out).
APP_DATASETS = ("ml-100k", "Scientific_UniSRec", "Instruments_IISAN", "OnlineRetail", "Scientific_LCRec")
# How the menu names each one, and the line that says what it is.
DATASET_INFO = {
    "ml-100k": ("MovieLens-100k (films)", "100,000 ratings of 1,682 films by 943 people; title, year and genres"),
    "Scientific_UniSRec": ("Amazon Scientific", "Amazon Industrial & Scientific purchases as UniSRec packages them: "
                           "one text per item (title, categories, brand)"),
    "Scientific_LCRec": ("Amazon Scientific, full text", "the same shop as LC-Rec packages it: title, brand, categories "
                         "and description as separate attributes"),
    "Instruments_IISAN": ("Amazon Musical Instruments", "IISAN's 10,000-user sample; titles only (the paper's case study)"),
    "OnlineRetail": ("UK online gift shop", "UCI Online Retail: a year of a UK gift retailer's orders; items are "
                     "their descriptions, and customers re-order"),
}
# Where people buy the same thing again (a shop's re-orders), history items stay recommendable by default.
REPEAT_PURCHASE_DATASETS = ("OnlineRetail",)
MAP_FILE = "embedding_map_{digest}.safetensors"  # shipped beside a checkpoint, keyed by the catalogue


@dataclass
class Served:
    name: str
    dataset: SeqRecDataset
    recommender: Recommender
    checkpoint: Path
    mode: str  # "fine-tuned" or "zero-shot"
    # test metrics of the popularity baseline under the served model's own protocol: history kept, and with the
    # score priors fitted on validation (the same fit, jepa4rec.priors) when the model carries priors
    popularity: dict = field(default_factory=dict)
    uploaded: bool = False  # a visitor's own catalogue: held in memory only, dropped when they leave
    extends: str | None = None  # the dataset this one is, plus items a visitor typed (same ids for the rest)
    # A visitor's catalogue with purchases: its scoreboard's evaluations so far (by the number of customers
    # scored), and the model adapted to it.
    evaluations: dict = field(default_factory=dict)
    adapted: Recommender | None = None
    board: dict | None = None
    # The served model's zero-shot test metrics from the Experiments tab's result file, for a dataset its
    # training card has none for (the card's zero-shot evaluation covered three of the app's datasets).
    measured: dict | None = None

    @property
    def display_name(self) -> str:
        """How the visitor sees its name: the dataset's readable name, or the file they uploaded (never a key)."""
        return self.dataset.name if self.uploaded else dataset_label(self.name)

    @property
    def repeats_by_default(self) -> bool:
        return (self.extends or self.name) in REPEAT_PURCHASE_DATASETS

    def model_test_metrics(self) -> dict | None:
        """The served checkpoint's measured test metrics on this dataset, from its training card."""
        card = self.recommender.card
        shipped = card.get("shipped_test") or {}
        if self.mode == "fine-tuned":
            if shipped.get("dataset") in (None, self.name) and shipped:
                return shipped
            return card.get("test")
        return (card.get("zero_shot") or {}).get(self.name) or self.measured


def dataset_label(name: str) -> str:
    """The menu's name of a dataset (its folder name when the app has none for it)."""
    return DATASET_INFO.get(name, (name, ""))[0]


class BoundedMemo:
    """The app's memo of a served Recommender (its history vectors and reveal curves): a visitor's slider asks
    for the same ones again and again; it forgets its oldest entry beyond ``limit`` (a session touches a few
    histories, a long-running server many)."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, compute):
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        value = compute()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


MAX_SCORED_USERS = 20_000  # a scoreboard ranks every item for each user twice (validation, test): minutes beyond
# Customers a scoreboard scores unless asked for more: the text model encodes about 70 histories a second on two
# CPU cores, and each customer is two (validation, test), so 1,000 take about half a minute where a shop of
# 10,000 customers takes five (docs/app.md, "How well does it do on your shop?").
DEFAULT_SCORED_USERS = 1_000


def scored_users(served: Served, users: int | None) -> int | None:
    """How many customers a scoreboard of ``served`` scores: ``users`` (None or 0: all), refused with a message
    when ``served`` has no purchases or when all of too many are asked for."""
    if not served.uploaded or not served.dataset.sequences:
        raise DataFormatError("upload your catalogue together with its purchases (user, item, time) first: the "
                              "scoreboard ranks each customer's last purchase")
    total = len(served.dataset.test_cases())
    users = int(users) if users else None
    if users is not None and users < 0:
        raise DataFormatError(f"customers to score must be 0 (all) or more, got {users}")
    if (users or total) > MAX_SCORED_USERS and total > MAX_SCORED_USERS:
        raise DataFormatError(f"{total:,} customers with a held-out purchase is over the {MAX_SCORED_USERS:,} the app "
                              "scores (each one is ranked twice, validation and test)",
                              hint=f"score the first {DEFAULT_SCORED_USERS:,}, or run python -m jepa4rec.evaluate "
                                   "--items ... --interactions ... --priors fit on a machine of your own")
    return None if users is None or users >= total else users


def lowest_priority() -> None:
    """Run the calling thread, and the threads it starts, at the lowest priority: speculative work (a map
    nobody asked for yet) must not slow what a visitor waits for (on two cores a UMAP fit beside a scoreboard
    slowed it by a third). Linux sets it per thread; elsewhere it is left as it is."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def has_priors(rec: Recommender) -> bool:
    """Whether a model scores with score priors of its own (a repeat or a popularity bias)."""
    return bool(rec.repeat_bias or rec.popularity_bias)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: each request thread would otherwise get its own, and a server under
    concurrent load keeps hundreds of MB of them mapped (M_ARENA_MAX is -8 in glibc's mallopt)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        pass


def resident_mb(pid: int | str = "self") -> float:
    """A process's resident memory in MB (Linux; NaN elsewhere): what the memory targets are stated in."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:")), float("nan"))
    except OSError:
        return float("nan")


def release_memory() -> None:
    """Return freed memory to the OS: glibc keeps freed arenas mapped, so RSS would not fall otherwise."""
    gc.collect()
    trim_heap()


class AppService:
    """Loads lazily and keeps up to ``max_resident`` Recommenders; safe to share between request threads."""

    def __init__(self, data_root: str | os.PathLike | None = None, checkpoints_dir: Path = CHECKPOINTS_DIR,
                 device: str | None = None, results_dir: Path = RESULTS_DIR, datasets: list[str] | None = None,
                 max_resident: int = 2, max_uploads: int = 4):
        if max_resident < 1:
            raise ValueError(f"max_resident must be at least 1, got {max_resident}")
        self.data_root = data_root
        self._datasets = list(datasets) if datasets else None  # names or folders; None = APP_DATASETS found
        self.checkpoints_dir = Path(checkpoints_dir)
        self.results_dir = Path(results_dir)
        self.device = device
        self.max_resident = max_resident
        self.index = checkpoint_index(self.checkpoints_dir)
        limit_malloc_arenas()
        self._served: OrderedDict[str, Served] = OrderedDict()
        self._maps: dict[str, np.ndarray] = {}
        self._groups: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._loading: dict[str, threading.Lock] = {}
        self._map_locks: dict[str, threading.Lock] = {}
        self._uploads: OrderedDict[str, dict[str, Served]] = OrderedDict()  # visitor session -> its catalogue
        self._upload_base: Recommender | None = None
        self.compare_index = compare_index(self.checkpoints_dir)
        self._compare: dict[tuple[str, str], dict] = {}  # (dataset, model) -> a loaded comparison model
        # checkpoint folder -> (model, tokenizer, card, weights digest): each model is loaded once and shared by
        # every dataset, comparison and upload that uses it (one copy in memory, no second load).
        self._models: dict[Path, tuple] = {}
        self._shared_tensors: dict[tuple, list] = {}  # (parameter name, shape) -> tensors loaded models hold
        self.max_uploads = max_uploads
        # Concurrent requests' history and item encodings share one forward pass (app.batching): several
        # times the answers per second under load, nothing added to a lone request.
        self.batcher = MicroBatcher()
        self._adapt_lock = threading.Lock()  # one adaptation at a time: two would halve each other's budget
        # Scoreboards and adaptations under way: a background map waits for them (a visitor is waiting on those;
        # on two cores a UMAP fit beside a scoreboard slows it by a third).
        self._scoring = 0
        self._scoring_done = threading.Condition()
        self._adapt_queue: list[str] = []  # sessions waiting or adapting, in order
        self._cancelled: set[str] = set()

    def dataset_names(self) -> list[str]:
        """Every dataset the app offers: present, or fetched from its public source on first use."""
        if self._datasets is not None:
            return list(self._datasets)
        found = set(available_datasets(self.data_root))
        return [n for n in APP_DATASETS if n in found or n in SOURCES]

    def is_present(self, name: str) -> bool:
        """Whether ``name`` can be read now, without a download."""
        return name in set(available_datasets(self.data_root)) or name not in SOURCES

    def checkpoint_for(self, name: str) -> tuple[Path, str]:
        if name in self.index and name != "default":
            return self.checkpoints_dir / self.index[name], "fine-tuned"
        return self.checkpoints_dir / self.index["default"], "zero-shot"

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._served)

    def get(self, name: str, progress: Callable[[float, str], None] | None = None) -> Served:
        """The dataset's Served, loading it (with ``progress(fraction, what)`` calls) when not resident."""
        with self._lock:
            for uploads in self._uploads.values():
                if name in uploads:
                    return uploads[name]
            if name in self._served:
                self._served.move_to_end(name)
                return self._served[name]
            if name not in self.dataset_names():
                raise DataFormatError(f"dataset '{name}' is not available (data root: {self.data_root or 'default'}); "
                                      f"available: {', '.join(self.dataset_names())}")
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # two visitors asking for the same dataset load it once; other datasets go on
            with self._lock:
                if name in self._served:
                    return self._served[name]
            served = self._load(name, progress or (lambda f, what: None))
            with self._lock:
                self._served[name] = served
                self._served.move_to_end(name)
                evicted = []
                while len(self._served) > self.max_resident:
                    old, _ = self._served.popitem(last=False)
                    self._maps.pop(old, None)
                    self._groups.pop(old, None)
                    for key in [k for k in self._compare if k[0] == old]:
                        del self._compare[key]
                    evicted.append(old)
            # Fit the map (and its colour groups) while the visitor looks at the ranking.
            threading.Thread(target=self._map_quietly, args=(served,), name=f"map-{name}", daemon=True).start()
            if evicted:
                logger.info("unloaded %s (at most %d datasets stay loaded)", ", ".join(evicted), self.max_resident)
                release_memory()
            return served

    def _load(self, name: str, progress: Callable[[float, str], None]) -> Served:
        if not self.is_present(name):
            # First use of a dataset that is not here: fetched from its public source (size and sha256 checked).
            # Without network this is a DataUnavailable naming the command that fetches it elsewhere.
            mb, outer = SOURCES[name].size / 2**20, progress
            download(name, self.data_root, progress=lambda done, total: outer(
                0.5 * done / max(total, 1),
                f"downloading {dataset_label(name)} from its public source ({done / 2**20:.1f} of {mb:.1f} MB)"))
            progress = lambda f, what: outer(0.5 + 0.5 * f, what)  # noqa: E731 -- the rest of the bar
        progress(0.0, f"reading {dataset_label(name)}")
        dataset = load_dataset(name, root=self.data_root, cache=True)
        path, mode = self.checkpoint_for(name)
        progress(0.1, f"loading the model {path.name}")
        rec = self._recommender(path, dataset)
        rec.progress = lambda done, total: progress(0.1 + 0.8 * done / max(total, 1),
                                                    f"encoding {dataset.n_items:,} items ({done}/{total} batches)")
        _ = rec.item_vectors  # encode (or read from the cache) once, up front
        rec.progress = None
        popularity = self._popularity(dataset, progress, with_priors=has_priors(rec), keep=True)
        progress(1.0, "ready")
        measured = self._zero_shot_result(path, name) if mode == "zero-shot" else None
        return Served(name, dataset, rec, path, mode, popularity, measured=measured)

    def _zero_shot_result(self, checkpoint: Path, name: str) -> dict | None:
        """``checkpoint``'s zero-shot test metrics on ``name`` in the zero-shot experiment's result file
        (scripts/results/zeroshot.json, the Experiments tab's Fig. 4), or None when it has none."""
        path = self.results_dir / "zeroshot.json"
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            model = next(m for m, c in result["meta"]["checkpoints"].items() if Path(c).name == checkpoint.name)
        except (OSError, ValueError, KeyError, StopIteration):
            return None
        metrics = {r["metric"]: r["value"] for r in result.get("rows", [])
                   if r.get("dataset") == name and r.get("model") == model}
        return metrics or None

    @staticmethod
    def _popularity(dataset: SeqRecDataset, progress: Callable[[float, str], None], with_priors: bool = False,
                    keep: bool = False) -> dict:
        """Popularity's test metrics under the served model's protocol (history kept; with priors fitted the way
        every model of the results table gets them when the model has priors), so the badge compares like
        with like. ``keep``: read them from, or write them to, the cache folder (keyed by the dataset's content:
        the fit of the priors takes seconds at every first switch otherwise)."""
        if not dataset.sequences:  # a catalogue without interactions has no test split
            return {}
        stored = None
        if keep:
            content = json.dumps([dataset.items, dataset.sequences, with_priors], ensure_ascii=False).encode()
            stored = cache_dir() / "popularity" / f"{hashlib.sha256(content).hexdigest()[:24]}.json"
            try:
                return json.loads(stored.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
        result = AppService._measure_popularity(dataset, progress, with_priors)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(result))
        return result

    @staticmethod
    def _measure_popularity(dataset: SeqRecDataset, progress: Callable[[float, str], None], with_priors: bool) -> dict:
        progress(0.9, "measuring the popularity baseline")
        scorer = PopularityScorer.from_dataset(dataset)
        if not with_priors:  # the ranks evaluate() would give, without scoring every user against every item
            cases = dataset.test_cases()
            return {**metrics_from_ranks(scorer.kept_ranks([c.target for c in cases])), "users": len(cases),
                    "priors": False}
        log_popularity = item_log_popularity(dataset.train_sequences(), dataset.n_items)
        result = evaluate_on_equal_terms(scorer, dataset.test_cases(), dataset.valid_cases(), log_popularity,
                                         progress=False)
        return {**result["cells"]["kept_priors"], "priors": True}

    # --- catalogues visitors bring ---------------------------------------------------------------

    def add_upload(self, session: str, items: str | os.PathLike, interactions: str | os.PathLike | None = None,
                   label: str | None = None, progress: Callable[[float, str], None] | None = None,
                   items_text: str | None = None, interactions_text: str | None = None) -> Served:
        """A visitor's catalogue, served zero-shot by the default (pre-trained) checkpoint: read, encoded
        (with progress) and held in memory for that visitor only; the same files again are not re-read.
        Each visitor keeps their latest catalogue; at most ``max_uploads`` visitors' are held."""
        progress = progress or (lambda f, what: None)
        digest = hashlib.sha256()
        for f, text in ((items, items_text), (interactions, interactions_text)):
            if text is not None:
                digest.update(text.encode("utf-8"))
            elif f is not None:
                digest.update(Path(f).read_bytes())
        key = f"upload:{session}:{digest.hexdigest()[:16]}"
        with self._lock:
            if key in self._uploads.get(session, {}):
                return self._uploads[session][key]
        progress(0.0, "reading the file")
        base = self._base_recommender()
        rec = Recommender.from_catalogue(base, items, interactions, name=label or Path(items).name,
                                         items_text=items_text, interactions_text=interactions_text,
                                         memo=BoundedMemo(), batcher=self.batcher)
        rec.progress = lambda done, total: progress(0.05 + 0.85 * done / max(total, 1),
                                                    f"encoding {rec.dataset.n_items:,} items ({done}/{total} batches)")
        _ = rec.item_vectors
        rec.progress = None
        served = Served(key, rec.dataset, rec, self.checkpoint_for("default")[0], "zero-shot",
                        self._popularity(rec.dataset, progress), uploaded=True)
        progress(1.0, "ready")
        with self._lock:
            self._uploads.pop(session, None)
            self._uploads[session] = {key: served}
            while len(self._uploads) > self.max_uploads:
                self._uploads.popitem(last=False)
        release_memory()
        # The map of a visitor's catalogue is fitted when its tab is opened, not now: UMAP holds the GIL while it
        # fits (a scoreboard would stall, nice or not), and numba's compiled code costs the server about 240 MB
        # that a visitor who never opens the map should not make it hold.
        return served

    def add_visitor_item(self, session: str, name: str, attrs: dict[str, str]) -> Served:
        """``name``'s catalogue plus an item the visitor typed, for that visitor only (held like an upload).
        Every existing item keeps its id and vector; only the new item is encoded."""
        import dataclasses

        import torch

        served = self.get(name)
        rec = served.recommender
        n = served.dataset.n_items
        dataset = dataclasses.replace(
            served.dataset, name=served.display_name if served.extends else f"{served.display_name} + your items",
            item_keys=served.dataset.item_keys + [f"yours-{n}"], items=served.dataset.items + [dict(attrs)], report=[])
        extended = Recommender(rec.model, rec.tok, dataset, device=rec.device, card=rec.card, precision=rec.precision,
                               memo=BoundedMemo(), batcher=self.batcher)
        extended.item_vectors = torch.cat([rec.item_vectors, rec.embed_items([attrs])])
        key = f"upload:{session}:{hashlib.sha256(json.dumps([name, attrs]).encode()).hexdigest()[:16]}"
        added = Served(key, dataset, extended, served.checkpoint, served.mode, served.popularity, uploaded=True,
                       extends=served.extends or served.name)
        with self._lock:
            self._uploads.pop(session, None)
            self._uploads[session] = {key: added}
            while len(self._uploads) > self.max_uploads:
                self._uploads.popitem(last=False)
        threading.Thread(target=self._map_quietly, args=(added,), name=f"map-{key}", daemon=True).start()
        return added

    # --- a shop owner's scoreboard and adapted model -----------------------------------------------

    def scoreboard(self, served: Served, users: int | None = DEFAULT_SCORED_USERS,
                   progress: Callable[[float, str], None] | None = None) -> dict:
        """How popularity, the zero-shot model (raw and with priors) and, once there is one, the adapted model rank
        the visitor's own held-out purchases (:func:`jepa4rec.scoreboard.scoreboard`) for the first ``users``
        customers (None or 0: all); the zero-shot evaluation is done once per catalogue and number."""
        from jepa4rec.scoreboard import scoreboard

        max_users = scored_users(served, users)
        with self._scoring_now():
            served.board = scoreboard(served.recommender, served.adapted, max_users=max_users, progress=progress,
                                      results=served.evaluations.setdefault(max_users, {}))
        return served.board

    def adapt(self, served: Served, budget_s: float, session: str,
              progress: Callable[[float, str], None] | None = None, users: int | None = DEFAULT_SCORED_USERS) -> dict:
        """Adapt a model to the visitor's catalogue within ``budget_s`` seconds of training (one adaptation at a
        time on the server: the others wait, told their place), then score it; a cancel (:meth:`cancel`) stops
        it after the epoch under way. The scoreboard scores the first ``users`` customers (None or 0: all)."""
        from jepa4rec.adaptation import adapt

        scored_users(served, users)
        progress = progress or (lambda f, what: None)
        with self._lock:
            self._adapt_queue.append(session)
            self._cancelled.discard(session)
        try:
            while True:
                with self._lock:
                    ahead = self._adapt_queue.index(session)
                if ahead == 0 and self._adapt_lock.acquire(timeout=1.0):
                    break
                progress(0.0, f"waiting: {ahead} visitor(s) are adapting a model before you")
                if self.is_cancelled(session):
                    raise DataFormatError("cancelled while waiting: nothing was trained")
            try:
                rec = served.recommender
                adapted = Recommender(rec.model, rec.tok, rec.dataset, device=rec.device, card=rec.card,
                                      precision=rec.precision, memo=BoundedMemo(), batcher=self.batcher)
                adapted.model_digest = rec.model_digest
                adapted.item_vectors = rec.item_vectors  # the same frozen item vectors: nothing to encode again
                started = time.perf_counter()

                def epoch_done(row: dict) -> None:
                    spent = time.perf_counter() - started
                    valid = row.get("valid", {}).get("NDCG@10")
                    shape = f", {row['shape']}" if "shape" in row else ""
                    progress(min(spent / max(budget_s, 1e-9), 0.99),
                             f"epoch {row['epoch']}{shape}: validation NDCG@10 {valid:.4f} ({spent:.0f} of {budget_s:.0f} s)"
                             if valid is not None else f"epoch {row['epoch']}{shape} ({spent:.0f} of {budget_s:.0f} s)")

                with self._scoring_now():
                    adapted.adapter = adapt(rec, budget_s, on_epoch=epoch_done,
                                            cancelled=lambda: self.is_cancelled(session))
            finally:
                self._adapt_lock.release()
        finally:
            with self._lock:
                self._adapt_queue.remove(session)
        served.adapted = adapted
        for results in served.evaluations.values():
            results.pop("adapted", None)  # a new adapted model: its rows are scored anew
        return self.scoreboard(served, users)

    def cancel(self, session: str) -> None:
        """Stop ``session``'s adaptation after the epoch under way (the best epoch so far is kept)."""
        with self._lock:
            self._cancelled.add(session)

    def is_cancelled(self, session: str) -> bool:
        with self._lock:
            return session in self._cancelled

    def adapted_archive(self, served: Served) -> Path:
        """The adapted model as a zip of its model directory (safetensors + JSON), for the visitor to take home."""
        import shutil
        import tempfile

        from jepa4rec.adaptation import save_adapted

        if served.adapted is None:
            raise DataFormatError("there is no adapted model yet: adapt one first")
        stem = "jepa4rec-adapted-" + "".join(c if c.isalnum() else "-" for c in Path(served.dataset.name).stem)[:40]
        work = Path(tempfile.mkdtemp(prefix="jepa4rec-download-"))
        save_adapted(served.adapted, served.adapted.adapter, work / stem)
        return Path(shutil.make_archive(str(work / stem), "zip", root_dir=work, base_dir=stem))

    def drop_session(self, session: str) -> None:
        """Forget a visitor's catalogue (called when their page closes)."""
        with self._lock:
            dropped = self._uploads.pop(session, None)
            for key in dropped or {}:
                self._maps.pop(key, None)
                self._groups.pop(key, None)
                for pair in [k for k in self._compare if k[0] == key]:
                    del self._compare[pair]
        if dropped:
            release_memory()

    def _base_recommender(self) -> Recommender:
        """The default checkpoint's model, loaded once and shared by every visitor's catalogue."""
        with self._lock:
            base = self._upload_base
        if base is None:
            empty = SeqRecDataset(name="base", item_keys=[], items=[], user_keys=[], sequences=[])
            base = self._recommender(self.checkpoint_for("default")[0], empty)
            with self._lock:
                self._upload_base = self._upload_base or base
        return self._upload_base

    def preload(self, name: str) -> None:
        """Load dataset ``name`` and the default checkpoint's model (every zero-shot dataset and upload uses it)
        while the server starts, so that neither the first visitor nor the first switch waits for them."""
        try:
            self.get(name)
            self._model(self.checkpoint_for("default")[0])
        except Exception:  # a visitor's request will load them again and say what went wrong
            logger.exception("preloading %s failed", name)

    def _model(self, folder: Path) -> tuple:
        """(model, tokenizer, card, weights digest) of a checkpoint folder, loaded once and shared."""
        with self._lock:
            loaded = self._models.get(folder)
        if loaded is None:
            model, tok, card = load_model_dir(folder, device="cpu")
            model = model.to(self.device).eval().requires_grad_(False)  # served, never trained
            with self._lock:
                if folder not in self._models:
                    self._share_identical_tensors(model)
                loaded = self._models.setdefault(folder, (model, tok, card, weights_digest(folder)))
        return loaded

    SHARE_MIN_ELEMENTS = 1_000_000  # smaller tensors are not worth comparing

    def _share_identical_tensors(self, model) -> None:
        """Point ``model``'s large tensors at an identical one another loaded model already holds: the text
        models all keep MiniLM's word embeddings unchanged (45 MB each), so four models hold one copy."""
        for name, param in model.named_parameters():
            if param.numel() < self.SHARE_MIN_ELEMENTS:
                continue
            same = next((t for t in self._shared_tensors.get((name, tuple(param.shape)), [])
                         if t.dtype == param.dtype and t.device == param.device and torch.equal(t, param)), None)
            if same is not None:
                param.data = same
            else:
                self._shared_tensors.setdefault((name, tuple(param.shape)), []).append(param.data)

    def vectors_dir(self, folder: Path) -> Path:
        """Where the item vectors of ``folder``'s model are shipped (scripts/ship_item_vectors.py writes them)."""
        return self.checkpoints_dir / "vectors" / folder.name

    def _recommender(self, folder: Path, dataset: SeqRecDataset, tok: ItemTokenizer | None = None) -> Recommender:
        """``folder``'s shared model over ``dataset``, reading the shipped item vectors where they match."""
        model, own_tok, card, digest = self._model(folder)
        return Recommender(model, tok or own_tok, dataset, device=self.device, card=card, model_digest=digest,
                           memo=BoundedMemo(), vectors_dir=self.vectors_dir(folder), batcher=self.batcher)

    # --- embedding maps --------------------------------------------------------------------------

    def _map_digest(self, served: Served) -> str:
        """The map depends on the weights and the catalogue, not on the precision vectors were computed in."""
        rec = served.recommender
        text = json.dumps(rec.tok.config.to_dict())
        return hashlib.sha256(f"{rec.model_digest}|{rec.catalogue_digest}|{text}|"
                              f"{MAP_NEIGHBOURS}|{MAP_SEED}".encode()).hexdigest()[:16]

    def map_files(self, served: Served) -> tuple[Path, Path]:
        """(the file shipped beside the checkpoint, the disk-cache file) for this checkpoint + catalogue."""
        name = MAP_FILE.format(digest=self._map_digest(served))
        return served.checkpoint / name, cache_dir() / "umap" / name

    def has_map(self, name: str) -> bool:
        with self._lock:
            if name in self._maps:
                return True
            served = self._current(name)
        return served is not None and not served.uploaded and any(p.exists() for p in self.map_files(served))

    def embedding_map(self, name: str) -> np.ndarray:
        """2-D UMAP coordinates of every item vector: fitted once per checkpoint + catalogue, then read
        from the file shipped with the checkpoint or the disk cache."""
        return self._map_for(self.get(name))

    def _map_for(self, served: Served) -> np.ndarray:
        name = served.name
        with self._lock:
            fitting = self._map_locks.setdefault(name, threading.Lock())
        with fitting:  # the background fit and a visitor's tab wait for one another, never fit twice
            with self._lock:
                if name in self._maps:
                    return self._maps[name]
            if served.uploaded:  # a visitor's catalogue never reaches the disk
                coords = fit_map(served.recommender.unit_item_vectors.float().cpu().numpy())
            else:
                shipped, cached = self.map_files(served)
                source = shipped if shipped.exists() else cached if cached.exists() else None
                if source is not None:
                    coords = load_numpy(str(source))["coords"]
                else:
                    coords = fit_map(served.recommender.unit_item_vectors.float().cpu().numpy())
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    save_numpy({"coords": coords}, str(cached))
            with self._lock:
                if self._current(name) is served:  # not unloaded meanwhile
                    self._maps[name] = coords
            return coords

    def map_groups(self, name: str) -> list[str]:
        """The map's colour group per item: genre or category where the data has one, else clusters."""
        return self._groups_for(self.get(name))

    def _groups_for(self, served: Served) -> list[str]:
        name = served.name
        with self._lock:
            if name in self._groups:
                return self._groups[name]
        groups = item_groups(served.dataset.items)
        if groups is None:
            groups = cluster_groups(served.recommender.unit_item_vectors.float().cpu().numpy(), served.recommender.titles)
        with self._lock:
            if self._current(name) is served:
                self._groups[name] = groups
        return groups

    def _current(self, name: str) -> Served | None:
        """What ``name`` serves now (None once unloaded or dropped); call with the lock held."""
        for uploads in self._uploads.values():
            if name in uploads:
                return uploads[name]
        return self._served.get(name)

    @contextlib.contextmanager
    def _scoring_now(self):
        with self._scoring_done:
            self._scoring += 1
        try:
            yield
        finally:
            with self._scoring_done:
                self._scoring -= 1
                self._scoring_done.notify_all()

    def _map_quietly(self, served: Served) -> None:
        with self._scoring_done:  # not beside a scoreboard or an adaptation a visitor is waiting for
            self._scoring_done.wait_for(lambda: self._scoring == 0)
        lowest_priority()
        try:  # works on the Served it was given: a dataset unloaded meanwhile is not loaded again
            self._map_for(served)
            self._groups_for(served)
        except Exception:  # a background map must never take the app down; the tab will try again
            logger.exception("embedding map of %s failed", served.name)

    def ship_map(self, name: str) -> Path:
        """Write the dataset's map beside its checkpoint (done for the app's default dataset)."""
        served = self.get(name)
        shipped, _ = self.map_files(served)
        save_numpy({"coords": self.embedding_map(name)}, str(shipped))
        return shipped

    def warm_up_maps(self) -> threading.Thread:
        """Pay UMAP's one-off numba compilation in the background, so the first map fitted is fast. The app
        does not call it at start: every app dataset ships its map, and the compiled code holds about 240 MB."""
        def run():
            lowest_priority()  # numba's worker threads start here, and keep this priority
            try:
                fit_map(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32))
            except Exception:  # a warm-up must never take the app down
                logger.exception("UMAP warm-up failed")
        thread = threading.Thread(target=run, name="umap-warmup", daemon=True)
        thread.start()
        return thread

    # --- other models on the same history ------------------------------------------------------

    def comparison_models(self, name: str) -> list[str]:
        """The models ``checkpoints/compare.json`` offers beside JEPA4Rec for this dataset."""
        served = self.get(name)
        out = []
        for label, by_dataset in self.compare_index.items():
            key = served.name if served.name in by_dataset else "default" if "default" in by_dataset else None
            if key is None or (served.uploaded and label == "SASRec"):  # item IDs mean nothing in another catalogue
                continue
            out.append(label)
        return out

    def comparison(self, name: str, label: str, progress: Callable[[float, str], None] | None = None) -> dict:
        """{"scorer": something with ``score_all(histories)``, "ndcg": test NDCG@10 or None, "mode": ...} for
        the model ``label`` on dataset ``name``; loaded once per dataset while it stays loaded."""
        served = self.get(name)
        with self._lock:
            cached = self._compare.get((served.name, label))
            if cached is not None and cached["served"] is served:
                return cached
        by_dataset = self.compare_index[label]
        folder = self.checkpoints_dir / by_dataset.get(served.name, by_dataset.get("default", ""))
        progress = progress or (lambda f, what: None)
        if label == "SASRec":
            from jepa4rec.baselines import load_sasrec

            model, card = load_sasrec(folder)
            if card.get("catalogue_digest") != served.recommender.catalogue_digest or model.n_items != served.dataset.n_items:
                raise DataFormatError(f"{folder}: this SASRec was trained on another version of {served.display_name}'s "
                                      "catalogue; its item IDs do not match", hint="retrain it with scripts/train_sasrec.py --save")
            entry = {"scorer": model, "ndcg": (card.get("test") or {}).get("NDCG@10"), "mode": f"fine-tuned on {card.get('dataset')}",
                     "checkpoint": folder.name}
        else:
            progress(0.0, f"loading {folder.name}")
            model, tok, card, digest = self._model(folder)
            if served.uploaded:
                import dataclasses

                tok = ItemTokenizer(tok.tokenizer, dataclasses.replace(
                    tok.config, attribute_order=served.recommender.tok.config.attribute_order, include_unlisted=False))
                rec = Recommender(model, tok, served.dataset, device=self.device, card=card,  # memory only
                                  batcher=self.batcher)
            else:
                rec = self._recommender(folder, served.dataset)
            rec.progress = lambda done, total: progress(done / max(total, 1),
                                                        f"{label}: encoding {served.dataset.n_items:,} items ({done}/{total})")
            _ = rec.item_vectors
            rec.progress = None
            fine_tuned = card.get("kind") == "finetune" and card.get("dataset") == served.name
            metrics = (card.get("shipped_test") or card.get("test")) if fine_tuned else (card.get("zero_shot") or {}).get(served.name)
            entry = {"scorer": rec, "ndcg": (metrics or {}).get("NDCG@10"),
                     "mode": "fine-tuned" if fine_tuned else "zero-shot", "checkpoint": folder.name}
        entry["served"] = served
        with self._lock:
            self._compare[(served.name, label)] = entry
        return entry

    def result_file(self, stem: str) -> Path | None:
        # The CSV holds the rows; a JSON of the same name is the run's metadata (config, seeds, time).
        p = self.results_dir / f"{stem}.csv"
        return p if p.exists() else None


