"""Top-k over item vectors: the exact path, the faiss IVF path against it, and bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepa4rec.ranking import ItemIndex

torch.set_num_threads(1)


def clustered(n: int, d: int = 32, centres: int = 50, seed: int = 0) -> torch.Tensor:
    """Unit vectors around a few directions, like a text encoder's item vectors (not isotropic noise)."""
    g = torch.Generator().manual_seed(seed)
    c = F.normalize(torch.randn(centres, d, generator=g), dim=-1)
    x = c[torch.randint(0, centres, (n,), generator=g)] + 0.35 * torch.randn(n, d, generator=g) / d ** 0.5
    return F.normalize(x, dim=-1)


def test_exact_top_k_is_the_matrix_product_top_k():
    items, queries = clustered(500), clustered(7, seed=1)
    index = ItemIndex(items)
    assert index.method == "exact"
    scores, ids = index.search(queries, 10)
    ref = torch.topk(queries @ items.T, 10)
    assert torch.equal(ids, ref.indices) and torch.allclose(scores, ref.values)
    s1, i1 = index.search(queries[0], 10)  # one query, [d]
    assert torch.equal(i1, ref.indices[0])
    assert index.search(queries, 10_000)[1].shape == (7, 500)  # k capped at the catalogue


def test_ivf_index_is_chosen_beyond_the_exact_limit_and_recalls_the_exact_top_10():
    items, queries = clustered(20_000), clustered(200, seed=1)
    index = ItemIndex(items, exact_limit=10_000, threads=1)
    assert index.method == "ivf" and index.nprobe >= 16
    _, ann = index.search(queries, 10)
    exact = torch.topk(queries @ items.T, 10).indices
    recall = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(ann, exact)) / exact.numel()
    assert recall >= 0.95, recall
    index.nprobe = index.nlist  # every list scanned: exact
    _, full = index.search(queries, 10)
    assert sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(full, exact)) / exact.numel() > 0.999


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-empty"):
        ItemIndex(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="method"):
        ItemIndex(torch.ones(3, 8), method="hnsw")
    with pytest.raises(ValueError, match="ivf index only"):
        ItemIndex(torch.ones(3, 8)).nprobe = 4
