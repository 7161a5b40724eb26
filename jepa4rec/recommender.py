"""The one inference API: load a checkpoint, rank every catalogue item for a history, optionally
with a partly revealed target item. The app, the scripts and the tests all go through it, and
:func:`evaluate_checkpoint` (what ``python -m jepa4rec.evaluate`` and the experiment commands call)
scores a model directory through it. Ranks follow :func:`jepa4rec.evaluation.rank_of_targets`'s rule
(ties count against the target).

Revealing the target (the paper's case study, Appendix D): the target item's sentence is encoded
with every value word masked except a fraction ``reveal`` of them; attribute names stay visible (they
carry no information about which item it is). The history vector and that partly masked item vector
go through the next-item predictor, ĥ = FFN2(h_CLS ⊕ h_{n+1,M}), and items are ranked by cosine to ĥ.

* ``reveal=None``: plain ranking by cos(h_CLS, h_i) (what evaluation uses).
* ``reveal=r``: ``round(r * n_words)`` words are revealed, in sentence order (``reveal_order="sequential"``:
  the first words of the title first) or in a random order drawn from ``seed`` (``"random"``).

Two ways for the revealed words to meet the history (``reveal_mode``):

* ``"evidence"`` (the default, the app's slider and the Fig. 7 chart's headline rows): every item is
  scored cos(h_CLS, h_i) + s · cos(h_{n+1,M}, h_i), where s is the share of the target's words that are
  revealed. At 0% this *is* the history-only ranking, and each revealed word can only add evidence. It
  needs no trained predictor, so the RecFormer-style model (λ2 = 0) is scored the same way.
* ``"predictor"``: the paper's mapping, items ranked by cos(FFN2(h_CLS ⊕ h_{n+1,M}), h_i). At 0% its
  input is a target with every value word masked, which is not the history-only ranking; how useful it
  is depends on how well the mapping loss trained FFN2 (``scripts/reproduce_reveal.py`` measures both).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import transformers

from .adaptation import load_adapter
from .builder import item_tokenizer, new_model
from .checkpoint import load_model_dir, weights_digest
from .data import SeqRecDataset
from .encoding import CatalogueScorer, CatalogueVectors, ItemEncoder, catalogue_digest  # noqa: F401 -- catalogue_digest re-exported
from .errors import ConfigError
from .evaluation import Cell, ScorePriors, compute_cell_ranks, metrics_from_ranks, rank_of_targets
from .language_models import is_language_model, source_description
from .modeling import matching_model_size
from .ranking import ItemIndex
from .significance import write_case_ranks
from .text import TYPE_VALUE, EncodedItem, ItemTokenizer, TextConfig, item_sentence

logger = logging.getLogger(__name__)

REVEAL_MODES = ("evidence", "predictor")


@dataclass
class RankedItem:
    item: int
    key: str
    title: str
    score: float


@dataclass
class Recommendation:
    items: list[RankedItem]
    target_rank: int | None  # 1-based rank of the target among all items (ties count against it)
    revealed_words: list[str]


def item_title(attrs: dict) -> str:
    for key in ("title", "description"):
        if attrs.get(key):
            return attrs[key]
    return next(iter(attrs.values()), "")


class NoMemo:
    """The Recommender's default memo: remembers nothing (every call computes). The app plugs in a bounded
    one (``app.service.BoundedMemo``) for the history vectors and reveal curves a visitor's slider asks for again."""

    def get(self, key, compute: Callable[[], object]):
        return compute()

    def clear(self) -> None:
        pass


class Recommender:
    """The one inference API: a model and its tokenizer (:class:`~jepa4rec.encoding.ItemEncoder`), one catalogue's
    vectors (:class:`~jepa4rec.encoding.CatalogueVectors`), its scorer with the model's score priors
    (:class:`~jepa4rec.encoding.CatalogueScorer`), and on top of them ranking, top-k and the reveal logic.
    ``memo`` remembers history vectors and reveal curves where a caller wants them remembered (the app)."""

    def __init__(self, model, item_tokenizer: ItemTokenizer, dataset: SeqRecDataset, *, device=None,
                 batch_size: int = 128, model_digest: str | None = None, card: dict | None = None,
                 use_cache: bool = True, precision: str = "auto", memo=None, vectors_dir: str | Path | None = None,
                 batcher: Callable | None = None):
        if dataset.n_items and not any(dataset.items):
            raise ValueError(f"dataset {dataset.name}: none of its {dataset.n_items:,} items has any text (is its "
                             "catalogue file empty?); a text model cannot rank items it cannot read")
        self.encoder = ItemEncoder(model, item_tokenizer, device=device, precision=precision, batch_size=batch_size)
        self.dataset = dataset
        # {id: line} of a catalogue file's rows dropped for having no text (from_catalogue), so an id asked
        # for can be told apart from one the file lacks.
        self.dropped_items: dict[str, int] = {}
        self.card = card or {}
        self.model_digest = model_digest
        self.titles = [item_title(it) for it in dataset.items]
        cache_key = (self._cache_key(model_digest, dataset, item_tokenizer, self.encoder.precision)
                     if use_cache and model_digest else None)
        # Vectors shipped for this model + catalogue + text config (the app's; never the evaluation's: it encodes).
        shipped = (Path(vectors_dir), self._shipped_key(model_digest, dataset, item_tokenizer)) \
            if vectors_dir is not None and model_digest else None
        self.catalogue = CatalogueVectors(self.encoder, dataset.items, cache_key, shipped)
        self.scorer = CatalogueScorer(self.encoder, self.catalogue, dataset.train_sequences)
        self.memo = memo if memo is not None else NoMemo()  # an empty memo is falsy (it has a len)
        # batcher(fn, x) -> fn([x])[0], possibly computed in one pass with other threads' x (the app's
        # app.batching.MicroBatcher); None: each call encodes alone.
        self.batcher = batcher

    # --- what it is made of ------------------------------------------------------------------------

    @property
    def model(self):
        return self.encoder.model

    @model.setter
    def model(self, model) -> None:  # another model over the same catalogue (an untrained one, say)
        self.encoder.model = model.to(self.device).eval()
        self.catalogue.cache_key = self.catalogue.shipped = None
        self.catalogue.set_vectors(None)
        self.memo.clear()

    @property
    def tok(self) -> ItemTokenizer:
        return self.encoder.tok

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def precision(self) -> str:
        return self.encoder.precision

    @property
    def batch_size(self) -> int:
        return self.encoder.batch_size

    @property
    def progress(self):
        """Called as progress(batches_done, batches_total) while the catalogue is encoded (the app's bar)."""
        return self.encoder.progress

    @progress.setter
    def progress(self, fn) -> None:
        self.encoder.progress = fn

    @property
    def encoded(self) -> list[EncodedItem]:
        """The catalogue's items, tokenized once."""
        return self.catalogue.encoded

    @property
    def use_cache(self) -> bool:
        return self.catalogue.cache_key is not None

    # The score priors are the model's (its score_priors module, fitted by jepa4rec.calibrate; 0 = the paper's
    # model): an offset for items already in the history, and a weight on each item's log training popularity.
    @property
    def priors(self) -> ScorePriors:
        return self.scorer.priors

    @property
    def repeat_bias(self) -> float:
        return self.priors.repeat_bias

    @repeat_bias.setter
    def repeat_bias(self, value: float) -> None:
        self.priors.repeat_bias = value

    @property
    def popularity_bias(self) -> float:
        return self.priors.popularity_bias

    @popularity_bias.setter
    def popularity_bias(self, value: float) -> None:
        self.priors.popularity_bias = value

    @property
    def log_popularity(self) -> torch.Tensor:
        """``log(1 + count)`` of each item in the catalogue's training split (what ``popularity_bias`` weighs)."""
        return self.scorer.log_popularity

    # --- construction -----------------------------------------------------------------------------

    @property
    def adapter(self):
        """The sequence adapter an adapted model ranks with (:mod:`jepa4rec.adaptation`); None: the model's own."""
        return self.scorer.adapter

    @adapter.setter
    def adapter(self, adapter) -> None:
        self.scorer.adapter, self.scorer._head = adapter, None
        self.memo.clear()

    @classmethod
    def from_pretrained(cls, path: str | Path, dataset: SeqRecDataset, device=None, **kwargs) -> "Recommender":
        """The model directory at ``path`` over ``dataset``'s catalogue; an adapted model's directory brings its
        adapter, which then ranks (its ``adapter/`` folder: :func:`jepa4rec.adaptation.save_adapted`)."""
        path = Path(path)
        model, tok, card = load_model_dir(path, device="cpu")
        rec = cls(model, tok, dataset, device=device, model_digest=weights_digest(path), card=card, **kwargs)
        rec.adapter = load_adapter(path)
        return rec

    @classmethod
    def from_catalogue(cls, model: "str | Path | Recommender", items: str | Path, interactions: str | Path | None = None,
                       *, name: str | None = None, device=None, items_text: str | None = None,
                       interactions_text: str | None = None, **kwargs) -> "Recommender":
        """Zero-shot over a catalogue file someone brings (CSV or JSON lines: an id column and text
        attributes, written in the header's order; see :mod:`jepa4rec.data.catalogue`), optionally with
        an interactions file. ``model`` is a model directory, or a Recommender whose (already loaded)
        model is shared. The item vectors stay in memory: nothing of the file is written to disk."""
        import dataclasses

        from .data.catalogue import read_catalogue

        no_text: dict[str, int] = {}
        dataset, columns = read_catalogue(items, interactions, name=name, items_text=items_text,
                                          interactions_text=interactions_text, no_text=no_text)
        if isinstance(model, Recommender):
            net, tok, card, digest = model.model, model.tok, model.card, model.model_digest
            device = device or model.device
        else:
            net, tok, card = load_model_dir(model, device="cpu")
            digest = weights_digest(model)
        text = dataclasses.replace(tok.config, attribute_order=tuple(columns), include_unlisted=False)
        rec = cls(net, ItemTokenizer(tok.tokenizer, text), dataset, device=device, model_digest=digest,
                  card=card, use_cache=False, **kwargs)
        rec.dropped_items = no_text
        rec.adapter = model.adapter if isinstance(model, Recommender) else load_adapter(model)
        return rec

    @classmethod
    def from_language_model(cls, source: str, dataset: SeqRecDataset, *, model_size: str | None = None,
                            max_items: int = 20, max_tokens: int = 128, pooling: str = "cls",
                            model_overrides: dict | None = None, device=None, **kwargs) -> "Recommender":
        """The converted language model with no training at all ("step 0"): ranks by the cosine of the
        history's vector (written as one text, as every JEPA4Rec model does) and each item's, both pooled
        by ``pooling`` (``cls`` or ``mean``, as the model a run starts from will pool). ``model_size`` and
        ``model_overrides`` as a training run from ``source`` sets them (a run's ``model_size`` and ``model``)."""
        model_size = model_size or matching_model_size(source)
        tok = item_tokenizer(TextConfig(max_items=max_items, max_tokens=max_tokens), init_from=source)
        model = new_model(tok, model_size=model_size, overrides={**(model_overrides or {}), "pooling": pooling},
                          max_items=max_items, max_tokens=max_tokens, init_from=source)
        card = {"kind": "language_model", "source": source_description(source), "pooling": pooling}
        return cls(model, tok, dataset, device=device, card=card, **kwargs)

    def quantize_int8(self) -> "Recommender":
        """Serve with int8 dynamic quantisation of every Linear layer (CPU only; see ItemEncoder.quantize_int8)."""
        self.encoder.quantize_int8()
        self.model_digest = f"{self.model_digest}:int8" if self.model_digest else None
        if self.catalogue.cache_key:
            self.catalogue.cache_key = self.cache_key()
        self.catalogue.shipped = None  # shipped vectors are the full-precision weights'
        self.catalogue.set_vectors(None)
        self.memo.clear()
        return self

    # --- vectors ---------------------------------------------------------------------------------

    @staticmethod
    def _cache_key(model_digest: str | None, dataset: SeqRecDataset, tok: ItemTokenizer, precision: str) -> str:
        return hashlib.sha256("|".join([model_digest or "", catalogue_digest(dataset.items),
                                        json.dumps(tok.config.to_dict()), precision]).encode()).hexdigest()[:32]

    @staticmethod
    def _shipped_key(model_digest: str, dataset: SeqRecDataset, tok: ItemTokenizer) -> str:
        # Not the precision: shipped vectors serve any machine, bf16 or not (they are stored in int8 anyway).
        return hashlib.sha256("|".join([model_digest, catalogue_digest(dataset.items),
                                        json.dumps(tok.config.to_dict())]).encode()).hexdigest()[:16]

    def save_item_vectors(self, folder: str | Path) -> list[Path]:
        """Ship this catalogue's vectors (int8 with a per-row scale, files under 10 MB) in ``folder``, where a Recommender of the same
        model, catalogue and text config made with ``vectors_dir=folder`` reads them instead of encoding."""
        from .encoding import save_shipped_vectors

        if not self.model_digest:
            raise ValueError("vectors are shipped for a model directory's weights: this model has no digest")
        meta = {"dataset": self.dataset.name, "model_digest": self.model_digest, "precision": self.precision,
                "catalogue_digest": self.catalogue_digest}
        return save_shipped_vectors(self.item_vectors, folder, self._shipped_key(self.model_digest, self.dataset,
                                                                                 self.tok), meta)

    @functools.cached_property
    def catalogue_digest(self) -> str:
        """sha256 of the catalogue's content, computed once (the cache keys and the app's map files use it)."""
        return catalogue_digest(self.dataset.items)

    def cache_key(self) -> str:
        """Identifies this checkpoint + catalogue + text config + precision (the key of every derived cache)."""
        return self._cache_key(self.model_digest, self.dataset, self.tok, self.precision)

    def embed_encoded_items(self, items: Sequence[EncodedItem]) -> torch.Tensor:
        return self.encoder.items(items)

    def embed_items(self, items: Sequence[dict]) -> torch.Tensor:
        """Item vectors h_i ([CLS] S_i → h_CLS) for arbitrary attribute dicts."""
        return self.encoder.items(self.tok.encode_items(items))

    @property
    def item_vectors(self) -> torch.Tensor:
        """[n_items, d] vectors of the whole catalogue, cached by checkpoint + catalogue content."""
        return self.catalogue.vectors

    @item_vectors.setter
    def item_vectors(self, vectors: torch.Tensor) -> None:
        self.catalogue.set_vectors(vectors)

    @property
    def unit_item_vectors(self) -> torch.Tensor:
        """The catalogue's item vectors scaled to unit length (cosine = dot product)."""
        return self.catalogue.unit

    @property
    def item_index(self) -> ItemIndex:
        """Top-k over the unit item vectors: exact up to ranking.EXACT_LIMIT items, faiss IVF beyond."""
        return self.catalogue.index

    def refresh_item_vectors(self) -> torch.Tensor:
        """Re-encode the catalogue (the weights changed under the cache)."""
        self.memo.clear()
        return self.catalogue.refresh()

    def embed_history(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """History vectors [B, d]; encoded in order of token length so each batch pads little."""
        return self.scorer.history_vectors(histories)

    # --- scoring ---------------------------------------------------------------------------------

    def score_all(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Cosine of every history vector with every catalogue item, plus the model's score priors:
        [B, n_items] (the Scorer API)."""
        return self.scorer.score_all(histories)

    def with_priors(self, scores: torch.Tensor, histories: Sequence[Sequence[int]],
                    shares: Sequence[float] | None = None) -> torch.Tensor:
        """``scores`` [B, n_items] with the model's score priors, faded by the revealed ``shares`` (see
        :meth:`jepa4rec.encoding.CatalogueScorer.with_priors`)."""
        return self.scorer.with_priors(scores, histories, shares)

    def masked_item(self, item: int, reveal: float, order: str = "sequential", seed: int = 0,
                    n_words: int | None = None) -> tuple[EncodedItem, list[str]]:
        """The item's tokens with all value words masked except ``round(reveal * n_words)`` of them
        (or exactly ``n_words`` of them when given, as in "reveal two words")."""
        n_reveal, total = self.reveal_count(item, reveal, n_words)
        if order == "sequential":
            shown = np.arange(n_reveal)
        elif order == "random":
            shown = np.random.default_rng(seed).permutation(total)[:n_reveal]
        else:
            raise ValueError(f"reveal_order must be 'sequential' or 'random', got {order!r}")
        value_words = self.value_words(item)
        revealed = [value_words[w] for w in sorted(shown.tolist()) if w < len(value_words)]
        return self.with_words_shown(item, shown), revealed

    def with_words_shown(self, item: int, shown: Sequence[int] | np.ndarray) -> EncodedItem:
        """The item's tokens with every value word masked but those numbered in ``shown`` (attribute
        names always stay): the reveal slider's input, and why-this-item's one-word-masked copies."""
        enc = self.encoded[item]
        visible = np.isin(enc.words, np.asarray(shown, dtype=enc.words.dtype)) | (enc.types != TYPE_VALUE)
        return EncodedItem(np.where(visible, enc.ids, self.tok.mask_id), enc.types, enc.words)

    def value_words(self, item: int) -> list[str]:
        """The item's value words in sentence order (what word number w of its tokens is)."""
        return " ".join(v for _, v in item_sentence(self.dataset.items[item], self.tok.config)).split()

    def reveal_count(self, item: int, reveal: float, n_words: int | None = None) -> tuple[int, int]:
        """(value words revealed, value words in all) of ``item`` at fraction ``reveal`` (or ``n_words``)."""
        words = self.encoded[item].words
        total = int(words.max()) + 1 if len(words) and words.max() >= 0 else 0
        shown = min(n_words, total) if n_words is not None else int(math.floor(reveal * total + 0.5))
        return shown, total

    def revealed_share(self, item: int, reveal: float, n_words: int | None = None) -> float:
        """The share of ``item``'s value words actually revealed (a 3-word title at 50% shows 2 of 3)."""
        shown, total = self.reveal_count(item, reveal, n_words)
        return shown / total if total else 0.0

    def history_vector(self, history: Sequence[int]) -> torch.Tensor:
        """h_CLS of one history (remembered by the memo: moving the reveal slider re-encodes only the target)."""
        return self.memo.get(("history", tuple(history)), lambda: self._one(self.embed_history, list(history)))

    def _one(self, encode: Callable[[Sequence], torch.Tensor], x) -> torch.Tensor:
        """``encode([x])[0]``, through the batcher when one is plugged in (concurrent callers share a pass)."""
        return self.batcher(encode, x) if self.batcher is not None else encode([x])[0]

    @torch.no_grad()
    def reveal_curve(self, history: Sequence[int], target: int, reveals: Sequence[float], order: str = "sequential",
                     seed: int = 0, mode: str = "evidence", exclude_history: bool = False) -> list[int]:
        """The target's rank at each reveal fraction, for one history (one batched forward; remembered by the
        memo: it does not depend on the slider, so moving it costs nothing there)."""
        key = ("curve", tuple(history), int(target), tuple(reveals), order, seed, mode, exclude_history)

        def compute() -> list[int]:
            h_cls = self.history_vector(history).expand(len(reveals), -1)
            masked = [self.masked_item(target, r, order, seed)[0] for r in reveals]
            shares = [self.revealed_share(target, r) for r in reveals]
            scores = self.with_priors(self._query_scores(h_cls, self.embed_encoded_items(masked), mode, shares),
                                      [history] * len(reveals), shares)
            if exclude_history:
                self._exclude(scores, history, [target] * len(reveals))
            return rank_of_targets(scores, [target] * len(reveals)).tolist()

        return list(self.memo.get(key, compute))

    def _query_scores(self, h_cls: torch.Tensor, h_masked: torch.Tensor, mode: str,
                      shares: Sequence[float]) -> torch.Tensor:
        items = self.unit_item_vectors
        if mode == "predictor":
            query = self.model.predict_next(h_cls, h_masked).float()
            return F.normalize(query, dim=-1) @ items.T
        if mode == "evidence":
            # Each row's masked target counts in proportion to the words it shows: 0% adds nothing.
            share = torch.as_tensor(shares, dtype=torch.float32, device=h_cls.device)[:, None]
            return self._history_scores(F.normalize(h_cls, dim=-1)) + share * (F.normalize(h_masked, dim=-1) @ items.T)
        raise ValueError(f"reveal_mode must be one of {REVEAL_MODES}, got {mode!r}")

    def _history_scores(self, h_unit: torch.Tensor) -> torch.Tensor:
        """[B, n_items] cosines of unit history vectors with every item, a row at a time: the same
        arithmetic whatever the batch, so 0% revealed reproduces the history-only scores bit for bit
        (a batched product may round differently and swap near-ties)."""
        items_t = self.unit_item_vectors.T
        return torch.cat([row[None] @ items_t for row in h_unit])

    @staticmethod
    def _exclude(scores: torch.Tensor, history: Sequence[int], targets: Sequence[int | None]) -> None:
        """Push the history's items to the bottom of each row in place; a row's target always competes."""
        if not len(history):
            return
        rows = torch.arange(scores.shape[0], device=scores.device)
        kept = [scores[r, t].clone() if t is not None else None for r, t in enumerate(targets)]
        scores[:, torch.as_tensor(list(history), device=scores.device)] = float("-inf")
        for r, (t, v) in enumerate(zip(targets, kept)):
            if t is not None:
                scores[rows[r], t] = v

    @torch.no_grad()
    def reveal_scores(self, histories: Sequence[Sequence[int]], targets: Sequence[int], reveal: float,
                      order: str = "sequential", seed: int = 0, mode: str = "evidence",
                      n_words: int | None = None, h_cls: torch.Tensor | None = None) -> torch.Tensor:
        """[B, n_items] scores given each history and a partly revealed target (``h_cls``: the
        histories' vectors when already computed, e.g. across a sweep of reveal fractions)."""
        masked = [self.masked_item(t, reveal, order, seed + i, n_words)[0] for i, t in enumerate(targets)]
        shares = [self.revealed_share(t, reveal, n_words) for t in targets]
        if h_cls is None:
            h_cls = self.embed_history(histories) if len(histories) > 1 else self.history_vector(histories[0])[None]
        if mode == "evidence" and not any(shares):  # nothing shown counts for nothing: no need to encode it
            h_masked = torch.zeros(len(masked), h_cls.shape[-1], device=h_cls.device)
        elif len(masked) == 1:
            h_masked = self._one(self.embed_encoded_items, masked[0])[None]
        else:
            h_masked = self.embed_encoded_items(masked)
        return self.with_priors(self._query_scores(h_cls, h_masked, mode, shares), histories, shares)

    def _ranked(self, scores: torch.Tensor, ids: torch.Tensor) -> list[RankedItem]:
        """Top-k rows as RankedItems (an ANN index pads with id -1 when it finds fewer than k)."""
        return [RankedItem(int(i), self.dataset.item_keys[int(i)], self.titles[int(i)], float(s))
                for s, i in zip(scores.tolist(), ids.tolist()) if i >= 0]

    def recommend(self, history: Sequence[int], k: int = 10, target: int | None = None, reveal: float | None = None,
                  reveal_order: str = "sequential", seed: int = 0, reveal_mode: str = "evidence",
                  exclude_history: bool = False) -> Recommendation:
        """Top-``k`` items for one history; with ``target`` also its rank, with ``reveal`` its words.

        ``exclude_history`` keeps the history's own items out of the list (a shop that sells each thing
        once); the target is never excluded, so its rank stays defined."""
        if reveal is not None and target is None:
            raise ValueError("reveal needs a target item")
        if reveal is not None and not 0.0 <= reveal <= 1.0:
            raise ValueError(f"reveal must be within [0, 1], got {reveal}")
        revealed: list[str] = []
        if reveal is None and target is None and not self.popularity_bias and self.adapter is None:
            # Only the top k is needed: the index answers it (an ANN one for very large catalogues),
            # asked for as many more as the history could take away. (A popularity bias moves every
            # item, so the cosine index's top k is not the answer then: the exact path below scores all.)
            seen = set(int(i) for i in history) if exclude_history or self.repeat_bias else set()
            query = F.normalize(self.history_vector(history), dim=-1)
            scores_k, ids = self.item_index.search(query, k + len(seen))
            ranked = [r for r in self._ranked(scores_k, ids) if r.item not in seen]
            if seen and not exclude_history:
                # The repeat bias moves the history's items, up or down: score them exactly and merge.
                hist = torch.as_tensor(sorted(seen), device=query.device)
                ranked = sorted(ranked + self._ranked(self.unit_item_vectors[hist] @ query + self.repeat_bias, hist),
                                key=lambda r: -r.score)
            return Recommendation(ranked[:k], None, revealed)
        if reveal is None and self.adapter is not None:
            scores = self.score_all([list(history)])[0]  # an adapted model ranks by its adapter
        elif reveal is None:
            scores = self.with_priors(
                self._history_scores(F.normalize(self.history_vector(history), dim=-1)[None]), [history])[0]
        else:  # the reveal reads the base model's history vector and predictor (an adapter has neither)
            _, revealed = self.masked_item(target, reveal, reveal_order, seed)
            scores = self.reveal_scores([list(history)], [target], reveal, reveal_order, seed, reveal_mode)[0]
        if exclude_history:
            scores = scores.clone()  # never write into a cached matrix product
            self._exclude(scores[None], history, [target])
            # Only the items left compete: a larger k would list excluded ones at -inf.
            k = min(k, scores.numel() - len({int(i) for i in history} - {target}))
        top = torch.topk(scores, min(k, scores.numel()))
        items = self._ranked(top.values, top.indices)
        rank = int(rank_of_targets(scores[None], [target])[0]) if target is not None else None
        return Recommendation(items, rank, revealed)


PRIOR_CHOICES = ("own", "none", "fit")


def evaluate_checkpoint(checkpoint: str | Path, dataset: SeqRecDataset | None, split: str = "test", *,
                        random_init: bool = False, priors: str = "own", batch_size: int = 128, device: str | None = None,
                        max_users: int | None = None, seed: int = 0, pooling: str | None = None,
                        precision: str = "auto", progress: bool = True, ranks_path: str | Path | None = None,
                        catalogue: tuple | None = None) -> dict:
    """Metrics (and timing) of one model directory on one dataset's leave-one-out split under both protocols,
    through a Recommender and one scoring pass (:func:`jepa4rec.evaluation.compute_cell_ranks`).

    ``priors``: ``own`` scores as the model directory says (the score priors in its config, 0 for the paper's
    model); ``none`` scores raw; ``fit`` scores raw and also with the priors fitted on the validation split
    under each protocol, as every model of a comparison gets them (:mod:`jepa4rec.priors`; never with
    ``split="valid"``). The record's top-level metrics are the ``kept`` cell's; ``cells`` holds every cell
    (``kept``, ``excluded``, and with ``fit`` ``kept_priors`` and ``excluded_priors``).

    ``checkpoint`` may also name a language model (``minilm``): its converted encoder with no training at all,
    pooled by ``pooling`` (default cls); a model directory pools as it was trained. ``random_init``: an
    untrained model with the same config and tokenizer (seeded by ``seed``), the floor a pre-training run must
    beat. ``ranks_path``: also write each case's rank in every cell there (``user,target,rank_<cell>...``), the
    input of :mod:`jepa4rec.significance`. ``catalogue``: ``(items file, interactions file)`` of a shop's own
    catalogue instead of ``dataset``, read and ranked as the app's "Your catalogue" tab reads and ranks it
    (:meth:`Recommender.from_catalogue`), so its scoreboard is reproduced by command."""
    from .priors import evaluate_on_equal_terms

    if priors not in PRIOR_CHOICES:
        raise ConfigError(f"priors must be one of {list(PRIOR_CHOICES)}, got {priors!r}")
    if priors == "fit" and split != "test":
        raise ConfigError("priors are fitted on the validation split, so they cannot be evaluated on it",
                          hint="use --split test with --priors fit")
    if catalogue is None:
        dataset.require_text()  # before a model is loaded: a text model cannot rank items without text
    if catalogue is not None:
        items, interactions = catalogue
        rec = Recommender.from_catalogue(checkpoint, items, interactions, device=device, batch_size=batch_size,
                                         precision=precision)
        dataset = rec.dataset
    elif is_language_model(checkpoint):
        rec = Recommender.from_language_model(str(checkpoint), dataset, device=device, batch_size=batch_size,
                                              pooling=pooling or "cls", precision=precision)
    elif pooling is not None:
        raise ConfigError(f"--pooling applies to a language model only; {checkpoint} pools as it was trained",
                          hint="leave --pooling out")
    else:
        rec = Recommender.from_pretrained(checkpoint, dataset, device=device, batch_size=batch_size, precision=precision)
    if random_init:
        torch.manual_seed(seed)
        fresh = type(rec.model)(rec.model.config)
        rec.model = fresh  # the setter drops the cached vectors of the trained weights
    own = {"repeat_bias": rec.repeat_bias, "popularity_bias": rec.popularity_bias}
    cases = dataset.test_cases() if split == "test" else dataset.valid_cases()
    # The first max_users users, for the test and, with priors=fit, for the fit: as the app's scoreboard samples.
    valid_cases = dataset.valid_cases()[:max_users] if max_users else dataset.valid_cases()
    if max_users:
        cases = cases[:max_users]
    t0 = time.time()
    _ = rec.item_vectors
    encode_s = time.time() - t0
    t0 = time.time()
    desc = f"{dataset.name} {split}"
    if priors == "own":
        ranks = compute_cell_ranks(rec, cases, [Cell("kept"), Cell("excluded")], batch_size=batch_size,
                                   progress=progress, desc=desc)
        result = {"cells": {name: metrics_from_ranks(r) for name, r in ranks.items()}, "ranks": ranks, "fits": {}}
    else:
        fit = priors == "fit"
        result = evaluate_on_equal_terms(rec, cases, valid_cases if fit else None,
                                         rec.log_popularity if fit else None, batch_size=batch_size,
                                         progress=progress, desc=desc)
    elapsed = time.time() - t0
    if ranks_path is not None:
        write_case_ranks(ranks_path, dataset, cases, result["ranks"])
    # Every option that can change a number goes into the record.
    return {"dataset": dataset.name, "checkpoint": str(checkpoint), "split": split, "random_init": random_init,
            "priors": priors, "model_priors": own, "seed": seed, "pooling": rec.model.config.pooling,
            "precision": rec.precision, "device": str(rec.device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "users": len(cases), "items": dataset.n_items, "item_encoding_s": round(encode_s, 2),
            "seconds": round(elapsed, 1), "users_per_s": round(len(cases) / max(elapsed, 1e-9), 1),
            **result["cells"]["kept"], "cells": result["cells"], "fits": result["fits"]}
