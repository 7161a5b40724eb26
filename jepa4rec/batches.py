"""Training pairs cut from user sequences, and the batches built from them (both trainings).

A pair cut at t (:func:`cut`) has the (at most ``max_items``) items before t as history and item t as
target. Items are tokenized once per corpus (:class:`EncodedCorpus`); a batch then only assembles arrays.

Pre-training pairs (:func:`pretraining_pairs`): every epoch, each user of each domain gives ONE pair,
a cut point t drawn uniformly from 1..len-1 with a generator seeded by (seed, epoch): the history is
the (at most ``max_items``) items before t, the target is item t. Pairs of all domains are then
shuffled together, so batches mix domains while every sequence stays within its own domain; or, with
``group`` set to the global batch size, shuffled within each domain and cut into single-domain batches
(each domain's remainder dropped) whose order is then shuffled: in-batch negatives from the same
catalogue are harder than another domain's items, which a model can tell apart by vocabulary alone.

Fine-tuning pairs (:func:`finetuning_pairs`) come from each sequence's training part (``seq[:-2]``):
every prefix, or one random cut per user per epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .data import SeqRecDataset
from .text import EncodedItem, ItemTokenizer


@dataclass(frozen=True)
class Pair:
    domain: int
    history: tuple[int, ...]
    target: int


def cut(domain: int, seq: Sequence[int], t: int, max_items: int) -> Pair:
    """The pair cut from ``seq`` at ``t``: the (at most ``max_items``) items before it, then item ``t``."""
    return Pair(domain, tuple(seq[max(0, t - max_items):t]), seq[t])


class EncodedCorpus:
    """One or more datasets with their items tokenized; a global uid = domain offset + item id."""

    def __init__(self, datasets: Sequence[SeqRecDataset], item_tokenizer: ItemTokenizer):
        self.datasets = list(datasets)
        self.tok = item_tokenizer
        self.items: list[list[EncodedItem]] = [item_tokenizer.encode_items(ds.items) for ds in self.datasets]
        self.offsets = np.cumsum([0] + [ds.n_items for ds in self.datasets])[:-1].tolist()

    def uid(self, domain: int, item: int) -> int:
        return self.offsets[domain] + item

    def history_length(self, pair: Pair) -> int:
        """The tokens ``pair``'s history takes as the model reads it (capped at the tokenizer's max_tokens)."""
        return self.tok.history_length([self.items[pair.domain][i] for i in pair.history])

    def collate_pairs(self, pairs: Sequence[Pair]) -> dict:
        items = self.items
        return {
            "history": self.tok.collate([[items[p.domain][i] for i in p.history] for p in pairs]),
            "next_item": self.tok.collate_items([items[p.domain][p.target] for p in pairs]),
            "next_uid": torch.tensor([self.uid(p.domain, p.target) for p in pairs], dtype=torch.long),
        }


def pretraining_pairs(sequences_per_domain: Sequence[Sequence[Sequence[int]]], epoch: int, seed: int, max_items: int = 50,
                      group: int | None = None, length: Callable[[Pair], int] | None = None,
                      batch_size: int | None = None) -> list[Pair]:
    """One epoch's pairs in batch order (see the module docstring). With ``length`` (a pair's history length
    in tokens), each domain's pairs (single-domain batches) or all pairs (mixed) are grouped by that length
    (:func:`group_by_length`, batches of ``group`` or ``batch_size``) before the batches are shuffled: far
    less padding to compute, the same pairs."""
    rng = np.random.default_rng([seed, epoch])
    pairs: list[Pair] = []
    groups: list[list[Pair]] = []
    for d, sequences in enumerate(sequences_per_domain):
        lengths = np.array([len(s) for s in sequences])
        valid = np.flatnonzero(lengths >= 2)
        cuts = rng.integers(1, lengths[valid])  # t in [1, len-1]
        pairs += [cut(d, sequences[u], t, max_items) for u, t in zip(valid, cuts)]
        if group:
            mine = [pairs[i] for i in rng.permutation(len(pairs))]
            if length is not None:
                mine = group_by_length(mine, [length(p) for p in mine], group, rng, shuffle=False)
            groups += [mine[g:g + group] for g in range(0, len(mine) - group + 1, group)]
            pairs = []
    if group:
        return [p for g in rng.permutation(len(groups)) for p in groups[g]]
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    if length is not None:
        if not batch_size:
            raise ValueError("grouping mixed batches by length needs their batch_size")
        pairs = group_by_length(pairs, [length(p) for p in pairs], batch_size, rng)
    return pairs


def finetuning_pairs(dataset: SeqRecDataset, mode: str, max_items: int, rng: np.random.Generator) -> list[Pair]:
    """Shuffled pairs from the training part (``seq[:-2]``) of every user's sequence: every prefix
    (``mode="all"``) or one cut drawn per user (``"sample"``)."""
    if mode not in ("all", "sample"):
        raise ValueError(f"pairs must be 'all' or 'sample', got {mode!r}")
    pairs = []
    for seq in dataset.train_sequences():
        if len(seq) < 2:
            continue
        cuts = range(1, len(seq)) if mode == "all" else [int(rng.integers(1, len(seq)))]
        pairs += [cut(0, seq, t, max_items) for t in cuts]
    return [pairs[i] for i in rng.permutation(len(pairs))]


def iterate_batches(pairs: Sequence[Pair], batch_size: int, start: int = 0, rank: int = 0, world: int = 1) -> Iterator[tuple[int, list[Pair]]]:
    """Yield (batch index, this process's share) of full global batches, from batch ``start`` on.

    A global batch holds ``batch_size * world`` pairs; process ``rank`` takes every ``world``-th.
    The incomplete last batch is dropped so every step sees the same number of in-batch negatives.
    """
    global_bs = batch_size * world
    n_batches = len(pairs) // global_bs
    for b in range(start, n_batches):
        chunk = pairs[b * global_bs:(b + 1) * global_bs]
        yield b, list(chunk[rank::world])


def batches_per_epoch(n_pairs: int, batch_size: int, world: int = 1) -> int:
    return n_pairs // (batch_size * world)


def group_by_length(pairs: Sequence[Pair], lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None,
                    window: int = 64, shuffle: bool = True) -> list[Pair]:
    """Reorder shuffled pairs so that each batch holds histories of similar length (little padding to
    compute), as transformers' ``group_by_length`` does: pairs are sorted by length within windows of
    ``window`` batches, cut into batches, and the batches shuffled (unless ``shuffle`` is off: the caller
    shuffles them). ``lengths[i]`` is pair i's length."""
    if len(lengths) != len(pairs):
        raise ValueError(f"{len(lengths)} lengths for {len(pairs)} pairs")
    span = window * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(pairs), span):
        idx = sorted(range(start, min(start + span, len(pairs))), key=lambda i: lengths[i])
        batches += [idx[b:b + batch_size] for b in range(0, len(idx), batch_size)]
    # The incomplete batch stays last, where the epoch loop drops it.
    full = [b for b in batches if len(b) == batch_size]
    rest = [i for b in batches if len(b) < batch_size for i in b]
    order = rng.permutation(len(full)) if shuffle else range(len(full))
    return [pairs[i] for g in order for i in full[g]] + [pairs[i] for i in rest]
