"""Turning text into vectors and vectors into scores, one job per class; the Recommender
(:mod:`jepa4rec.recommender`) composes them, and fine-tuning uses them without it.

* :class:`ItemEncoder`: a model and its tokenizer on a device, in a precision: items alone and whole
  histories to vectors, in batches of similar length (little padding), in eval mode.
* :class:`CatalogueVectors`: one catalogue's items tokenized once and their vectors (unit length too, and a
  top-k index), cached on disk by model + catalogue + text config when a key is given, re-encoded on demand
  (fine-tuning changes the weights under them).
* :class:`CatalogueScorer`: the :class:`~jepa4rec.evaluation.Scorer` of a catalogue: the cosine of each history
  vector with every item (or an adapted model's adapter scores over the same item vectors), plus the model's
  score priors (:class:`~jepa4rec.evaluation.ScorePriors`).
"""
from __future__ import annotations

import collections.abc
import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .devices import native_bf16, resolve_device
from .evaluation import ScorePriors, item_log_popularity, with_score_priors
from .paths import cache_dir
from .ranking import ItemIndex
from .text import EncodedItem, ItemTokenizer

PRECISIONS = ("auto", "fp32", "bf16")


class ItemEncoder:
    """A model's encoder for items alone and for whole histories, batched and in inference mode."""

    def __init__(self, model, item_tokenizer: ItemTokenizer, device=None, precision: str = "auto",
                 batch_size: int = 128):
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        # auto: bf16 where the hardware computes it natively (a GPU that has it; a CPU with AVX512-BF16 or
        # AMX, where it encodes about 2.5x faster), else fp32. Vectors are returned in fp32 either way.
        self.precision = precision if precision != "auto" else ("bf16" if native_bf16(self.device) else "fp32")
        self.model = model.to(self.device).eval()
        self.tok = item_tokenizer
        self.batch_size = batch_size
        self.quantized = False
        # Called as progress(batches_done, batches_total) while a long list is encoded (the app's bar).
        self.progress: Callable[[int, int], None] | None = None

    @torch.no_grad()
    def _encode(self, batches, total: int | None = None) -> torch.Tensor:
        # Inference runs in eval mode even when called in the middle of fine-tuning.
        was_training = self.model.training
        if was_training:  # .eval() walks every module: not paid on each of a server's calls
            self.model.eval()
        out = []
        bf16 = self.precision == "bf16" and not self.quantized
        for done, batch in enumerate(batches, 1):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(self.model.encode(batch).float())
            if self.progress is not None and total:
                self.progress(done, total)
        if was_training:
            self.model.train()
        return torch.cat(out) if out else torch.zeros(0, self.model.config.hidden_size, device=self.device)

    def _in_length_order(self, inputs: Sequence, lengths: Sequence[int], collate) -> torch.Tensor:
        """Vectors of ``inputs`` in their own order, encoded shortest first: each batch pads only to its
        longest member."""
        order = np.argsort(lengths, kind="stable")
        batches = (collate([inputs[i] for i in order[s:s + self.batch_size]]) for s in range(0, len(inputs), self.batch_size))
        vectors = self._encode(batches, total=math.ceil(len(inputs) / self.batch_size))
        result = torch.empty_like(vectors)
        result[torch.as_tensor(order, device=vectors.device)] = vectors
        return result

    def items(self, items: Sequence[EncodedItem]) -> torch.Tensor:
        """[n, d] vectors of items alone ([CLS] S_i → h_i)."""
        return self._in_length_order(items, [len(it) for it in items], self.tok.collate_items)

    def histories(self, histories: Sequence[Sequence[EncodedItem]]) -> torch.Tensor:
        """[B, d] vectors of whole histories (h_CLS, or the pooled states)."""
        return self._in_length_order(histories, [self.tok.history_length(s) for s in histories], self.tok.collate)

    def quantize_int8(self) -> None:
        """Serve with int8 dynamic quantisation of every Linear layer (CPU only): weights stored as int8,
        activations quantised on the fly. Ranking fidelity is measured by scripts/benchmark_encoder.py."""
        if self.device.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on the CPU only; use bf16 on a GPU")
        import warnings

        with warnings.catch_warnings():  # torch deprecates quantized tensors in favour of torchao
            warnings.simplefilter("ignore", UserWarning)
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.quantized = True  # int8 kernels take fp32 activations: no bf16 autocast on top


def catalogue_digest(items: Sequence[dict]) -> str:
    return hashlib.sha256(json.dumps(list(items), sort_keys=False, ensure_ascii=False).encode()).hexdigest()


class EncodedItems(collections.abc.Sequence):
    """A catalogue's items tokenized on first use: one by one where only a few are needed (a history, a
    target), all at once in batched tokenizer calls (:meth:`all`) where every item is (encoding the catalogue).
    A large catalogue whose vectors come from a file is then never tokenized whole."""

    def __init__(self, tok: ItemTokenizer, items: Sequence[dict]):
        self._tok, self._items = tok, items
        self._done: list[EncodedItem | None] = [None] * len(items)
        self._complete = not items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]  # negative indices, and an IndexError beyond the end
        if self._done[i] is None:
            self._done[i] = self._tok.encode_items([self._items[i]])[0]
        return self._done[i]

    def __iter__(self):
        return iter(self.all())

    def all(self) -> list[EncodedItem]:
        if not self._complete:
            missing = [i for i, e in enumerate(self._done) if e is None]
            for i, e in zip(missing, self._tok.encode_items([self._items[i] for i in missing])):
                self._done[i] = e
            self._complete = True
        return self._done  # type: ignore[return-value]


# Shipped item vectors (the app's first switch to a dataset reads them instead of encoding every item): fp16,
# cut into files under this size so that none needs Git LFS on a Hugging Face Space.
SHIPPED_FILE_BYTES = 9_500_000


def shipped_vector_files(folder: Path, key: str) -> list[Path]:
    return sorted(Path(folder).glob(f"{key}-*.safetensors"))


def quantize_rows(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 rows and one fp32 scale per row (its largest magnitude / 127): a row read back is within half a step,
    ``scale / 2``, of every element, half the bytes of fp16 for the cosine ranking the app shows."""
    v = vectors.detach().to("cpu", torch.float32)
    scale = (v.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.round(v / scale[:, None]).to(torch.int8).contiguous(), scale.contiguous()


def save_shipped_vectors(vectors: torch.Tensor, folder: str | Path, key: str, meta: dict[str, str],
                         max_bytes: int = SHIPPED_FILE_BYTES) -> list[Path]:
    """``vectors`` [n, d] as int8 rows with a per-row scale (:func:`quantize_rows`) in files
    ``<key>-NN.safetensors`` in ``folder``, each under ``max_bytes``, with ``meta`` (strings: what computed
    them) in every file's header; replaces earlier files of the same key. int8: a checkpoint and the vectors of
    the five app datasets stay under 50 MB (fp16 took 56 MB for a comparison model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in shipped_vector_files(folder, key):
        old.unlink()
    rows_q, scale = quantize_rows(vectors)
    rows = max(1, (max_bytes - 4096) // max(1, rows_q.shape[1] + 4))
    paths = []
    for n, start in enumerate(range(0, max(rows_q.shape[0], 1), rows)):
        path = folder / f"{key}-{n:02d}.safetensors"
        save_file({"vectors": rows_q[start:start + rows].clone(), "scale": scale[start:start + rows].clone()},
                  str(path), metadata={**meta, "rows": str(rows_q.shape[0]), "first_row": str(start)})
        paths.append(path)
    return paths


def load_shipped_vectors(folder: str | Path, key: str, n_items: int) -> torch.Tensor | None:
    """The fp32 vectors :func:`save_shipped_vectors` wrote under ``key`` (None when there are none, or when
    they do not cover ``n_items`` rows)."""
    files = shipped_vector_files(Path(folder), key)
    if not files:
        return None
    parts = [load_file(str(f)) for f in files]
    vectors = torch.cat([p["vectors"].float() * p["scale"][:, None] for p in parts])
    return vectors if vectors.shape[0] == n_items else None


class CatalogueVectors:
    """One catalogue's items, tokenized on first use, and their vectors: computed on first use, cached on disk
    under ``cache_key`` (None: memory only), or read from shipped files (``shipped``: a folder and the key of
    this model + catalogue + text config there), re-encoded by :meth:`refresh`."""

    def __init__(self, encoder: ItemEncoder, items: Sequence[dict], cache_key: str | None = None,
                 shipped: tuple[Path, str] | None = None):
        self.encoder = encoder
        self.encoded = EncodedItems(encoder.tok, items)
        self.cache_key = cache_key
        self.shipped = shipped
        self._vectors: torch.Tensor | None = None
        self._unit: torch.Tensor | None = None
        self._index: ItemIndex | None = None

    @property
    def cache_path(self) -> Path | None:
        return cache_dir() / "item_vectors" / f"{self.cache_key}.safetensors" if self.cache_key else None

    @property
    def vectors(self) -> torch.Tensor:
        """[n_items, d] item vectors."""
        if self._vectors is None:
            path = self.cache_path
            if path is not None and path.exists():
                self._vectors = load_file(str(path))["vectors"].to(self.encoder.device)
            elif self.shipped and (shipped := load_shipped_vectors(*self.shipped, len(self.encoded))) is not None:
                self._vectors = shipped.to(self.encoder.device)
            else:
                self._vectors = self.encoder.items(self.encoded.all())
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_file({"vectors": self._vectors.cpu().contiguous()}, str(path))
        return self._vectors

    def set_vectors(self, vectors: torch.Tensor) -> None:
        """Vectors computed elsewhere (a catalogue extended by one item keeps the others' vectors)."""
        self._vectors, self._unit, self._index = vectors, None, None

    @property
    def unit(self) -> torch.Tensor:
        """The vectors scaled to unit length (cosine = dot product)."""
        if self._unit is None or self._unit.shape[0] != self.vectors.shape[0]:
            self._unit = F.normalize(self.vectors, dim=-1)
        return self._unit

    @property
    def index(self) -> ItemIndex:
        """Top-k over the unit vectors: exact up to ranking.EXACT_LIMIT items, faiss IVF beyond."""
        if self._index is None or self._index.n_items != self.unit.shape[0]:
            self._index = ItemIndex(self.unit)
        return self._index

    def refresh(self) -> torch.Tensor:
        """Re-encode every item (the weights changed), bypassing the disk cache and shipped vectors."""
        self._vectors = self._unit = self._index = None
        (key, self.cache_key), (shipped, self.shipped) = (self.cache_key, None), (self.shipped, None)
        try:
            return self.vectors
        finally:
            self.cache_key, self.shipped = key, shipped


class CatalogueScorer:
    """The Scorer of one catalogue: cos(h, h_i) for every item, plus the score priors (``priors``; the model's
    own by default) on each row's history items and on every item's log training-split popularity."""

    def __init__(self, encoder: ItemEncoder, catalogue: CatalogueVectors, train_sequences: Callable[[], list],
                 priors: ScorePriors | None = None):
        self.encoder, self.catalogue = encoder, catalogue
        self._train_sequences = train_sequences
        self._priors = priors
        self._log_popularity: torch.Tensor | None = None
        # A sequence adapter trained on a shop's purchases (jepa4rec.adaptation) replaces the cosine of the
        # history's vector by its own scores over the same item vectors; None: the model's own ranking.
        self.adapter = None
        self._head = None

    @property
    def priors(self) -> ScorePriors:
        return self._priors if self._priors is not None else self.encoder.model.score_priors

    @property
    def log_popularity(self) -> torch.Tensor:
        """``log(1 + count)`` of each item in the catalogue's training split (what the popularity bias weighs);
        all zero for a catalogue without interactions."""
        if self._log_popularity is None:
            n = len(self.catalogue.encoded)
            self._log_popularity = item_log_popularity(self._train_sequences(), n).to(self.encoder.device)
        return self._log_popularity

    def history_vectors(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        encoded = self.catalogue.encoded
        return self.encoder.histories([[encoded[i] for i in h] for h in histories])

    def with_priors(self, scores: torch.Tensor, histories: Sequence[Sequence[int]],
                    shares: Sequence[float] | None = None) -> torch.Tensor:
        """``scores`` [B, n_items] with the priors (a new tensor when either applies). With ``shares`` (each row's
        share of the target's words revealed) the priors fade by (1 - share): they stand for what is known
        before the target's text is shown, so all of it shown leaves the text alone to rank."""
        priors = self.priors
        weight = None if shares is None else 1.0 - torch.as_tensor(shares, dtype=torch.float32)
        return with_score_priors(scores, histories, priors.repeat_bias, priors.popularity_bias,
                                 self.log_popularity if priors.popularity_bias else None, weight)

    @property
    def adapter_head(self):
        """The adapter (:class:`jepa4rec.adaptation.SequenceAdapter`) over this catalogue's vectors, built once
        per set of vectors; None without one."""
        if self.adapter is None:
            return None
        unit = self.catalogue.unit
        if self._head is None or self._head[0] is not unit:
            self._head = (unit, self.adapter.for_vectors(unit).to(self.encoder.device))
        return self._head[1]

    def score_all(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """[B, n_items] scores of every item after each history, plus the priors (the Scorer API): the cosine of
        the history's vector with each item's, or, for an adapted model, its adapter's scores over the same
        item vectors."""
        head = self.adapter_head
        if head is not None:
            return self.with_priors(head.score_all([list(h) for h in histories]), histories)
        h = F.normalize(self.history_vectors(histories), dim=-1)
        return self.with_priors(h @ self.catalogue.unit.T, histories)
