"""The embedding map: every item's vector in 2-D (UMAP over exact cosine neighbours) and the colour group of
each item (its genre or first telling category level, else clusters of the vectors). The service fits and
caches the maps; the handlers draw them; neither imports the other for it."""
from __future__ import annotations

import importlib
import re
import threading
from collections import Counter

import numpy as np

MAP_NEIGHBOURS, MAP_SEED = 15, 0


def exact_neighbours(vectors: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine distances) of each vector's k nearest, itself included, by exact matrix products:
    on a few thousand items this is far faster than UMAP's own approximate search, which compiles
    pynndescent (about 30 s) the first time a catalogue reaches 4,096 items."""
    import torch

    x = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)), dim=-1)
    indices, distances = [], []
    for start in range(0, len(x), chunk):
        top = torch.topk(x[start:start + chunk] @ x.T, k, dim=1)
        indices.append(top.indices)
        distances.append((1 - top.values).clamp(min=0))
    return torch.cat(indices).numpy(), torch.cat(distances).numpy()


# umap imports scikit-learn, whose modules import one another: two threads importing them for the first time
# at once (the background map, the UMAP warm-up, a visitor's map tab) can be handed a half-initialised module
# ("cannot import name 'clone' from partially initialized module 'sklearn.base'"). One lock for these imports.
_LIBRARY_IMPORT = threading.Lock()


def import_library(name: str):
    """``importlib.import_module(name)`` for the app's late-imported libraries, one thread at a time."""
    with _LIBRARY_IMPORT:
        return importlib.import_module(name)


MAP_MIN_ITEMS = 4  # UMAP needs n_neighbors > 1 and, for its spectral start, more items than 3


def fit_map(vectors: np.ndarray) -> np.ndarray:
    import warnings

    if len(vectors) < MAP_MIN_ITEMS:
        # Too few items for UMAP (it raises for 1, 2 and 3): they are drawn evenly on a circle, in catalogue
        # order, the same every time; with so few points the distances would say little anyway.
        angles = 2 * np.pi * np.arange(len(vectors)) / max(len(vectors), 1)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32).reshape(len(vectors), 2)
    umap = import_library("umap")

    k = min(MAP_NEIGHBOURS, len(vectors) - 1)
    knn_indices, knn_distances = exact_neighbours(vectors, k)
    reducer = umap.UMAP(n_neighbors=k, min_dist=0.1, metric="cosine", random_state=MAP_SEED,
                        precomputed_knn=(knn_indices, knn_distances, None))
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": a fixed seed is the point
        warnings.simplefilter("ignore", UserWarning)
        return reducer.fit_transform(vectors).astype(np.float32)


def item_groups(items: list[dict], top: int = 20, max_label: int = 40) -> list[str] | None:
    """A colour group per item: its first genre, or the first category level that tells items apart;
    None when the catalogue has neither (the map then colours by clusters of the item vectors).

    Where most category strings hold commas, commas separate levels (LC-Rec's "A,B,C") and a group is
    one level; otherwise categories are a run of words (UniSRec's text, whose names may hold ", ") and a
    group is two words. Leading levels or words that nearly every item shares (e.g. "Industrial &
    Scientific") are skipped; groups beyond the ``top`` most frequent become "other".
    """
    if not any(a.get("genres") or a.get("categories") for a in items):
        return None
    cats = [a.get("categories", "") if not a.get("genres") else "" for a in items]
    with_cats = [c for c in cats if c]
    by_level = sum("," in c for c in with_cats) >= 0.5 * max(1, len(with_cats))
    width = 1 if by_level else 2

    def parts(text: str) -> list[str]:
        if by_level:
            return [p.strip() for p in text.split(",") if p.strip()]
        return [w.strip(",") for w in text.split() if w.strip(",") and w != "&"]

    paths = [parts(c) if c else None for c in cats]
    with_path = [p for p in paths if p]
    depth = 0
    while with_path:
        heads = Counter(tuple(p[:depth + 1]) for p in with_path if len(p) > depth)
        if not heads or heads.most_common(1)[0][1] < 0.8 * len(with_path):
            break
        depth += 1
    raw = []
    for attrs, path in zip(items, paths):
        if attrs.get("genres"):
            label = attrs["genres"].split(",")[0].strip()
        elif path:
            label = " ".join(path[depth:depth + width]) or " ".join(path[-width:])
        else:
            label = ""
        raw.append(label if len(label) <= max_label else label[:max_label - 1].rstrip() + "…")
    keep = {g for g, _ in Counter(raw).most_common(top) if g}
    return [g if g in keep else "other" for g in raw]


_WORD = re.compile(r"[a-z][a-z]+")
_STOP = {"the", "and", "for", "with", "of", "in", "to", "set", "pack", "size", "new", "a", "an", "by", "on", "x"}


def cluster_groups(vectors: np.ndarray, titles: list[str], n_clusters: int = 12, seed: int = 0) -> list[str]:
    """Groups for a catalogue with no category: k-means clusters of the item vectors, each named by the
    two title words most over-represented in it."""
    KMeans = import_library("sklearn.cluster").KMeans
    # Items with the same text share a vector; k-means cannot make more clusters than distinct points.
    n_clusters = max(1, min(n_clusters, len(np.unique(vectors, axis=0))))
    labels = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(vectors)
    docs = [set(_WORD.findall(t.lower())) - _STOP for t in titles]
    overall = Counter(w for d in docs for w in d)
    names = {}
    for c in range(n_clusters):
        members = [docs[i] for i in np.flatnonzero(labels == c)]
        inside = Counter(w for d in members for w in d)
        # Frequent in the cluster, and more so than in the whole catalogue.
        ranked = sorted(inside, key=lambda w: -(inside[w] / len(members)) * (inside[w] / overall[w]))
        names[c] = " ".join(ranked[:2]) or f"cluster {c + 1}"
    return [f"≈ {names[c]}" for c in labels]
