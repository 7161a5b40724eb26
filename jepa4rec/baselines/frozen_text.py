"""Frozen-text baselines: a language model's sentence vectors, with no training of the language model.

They are the floor every trained text model must clear (a sentence encoder that has never seen a
purchase already ranks well):

* :func:`sentence_vectors` -- each item sentence (the same text JEPA4Rec reads, ``title ... brand ...``)
  through the language model, mean-pooled over its tokens and scaled to unit length, the way
  all-MiniLM-L6-v2 was trained to be used. Cached per (language model, catalogue, text config).
* :class:`RecencyCosine` -- "MiniLM, frozen, last items": the history vector is the mean of its items'
  vectors weighted ``decay ** k`` (k = 0 for the most recent item), and items are ranked by cosine.
* "a small sequence transformer over frozen item vectors" is SASRec with these vectors as its item
  features (``train_sasrec(..., item_features=...)``): UniSRec-style text features without its MoE
  adaptor, trained with the full softmax over every item and no item IDs.
"""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..paths import cache_dir
from ..text import TextConfig, load_tokenizer, sentence_text


def sentence_vectors(items: Sequence[dict], source: str = "minilm", text_config: TextConfig | None = None,
                     max_tokens: int = 128, batch_size: int = 64, device: str | None = None,
                     progress: bool = True, use_cache: bool = True) -> torch.Tensor:
    """[n_items, d] unit-length mean-pooled vectors of the item sentences (inference only)."""
    from transformers import AutoModel

    from ..language_models import language_model_dir, source_description

    text_config = text_config or TextConfig()
    texts = [sentence_text(it, text_config) for it in items]
    key = hashlib.sha256(json.dumps([source_description(source), max_tokens, texts]).encode()).hexdigest()[:32]
    path = cache_dir() / "sentence_vectors" / f"{key}.safetensors"
    if use_cache and path.exists():
        return load_file(str(path))["vectors"]
    folder = language_model_dir(source)
    tokenizer = load_tokenizer(folder)
    device = resolve_device(device)
    model = AutoModel.from_pretrained(str(folder)).to(device).eval()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]]
    order = np.argsort(lengths, kind="stable")  # similar lengths per batch: little padding
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="sentence vectors", disable=not progress, leave=False):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_tokens,
                            return_tensors="pt").to(device)
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[torch.as_tensor(idx)] = F.normalize(pooled.float(), dim=-1).cpu()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": out.contiguous()}, str(path))
    return out


class RecencyCosine:
    """A :class:`~jepa4rec.evaluation.Scorer`: cosine of each item to the recency-weighted history mean."""

    def __init__(self, item_vectors: torch.Tensor, decay: float = 0.5, max_items: int = 50):
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.items = F.normalize(item_vectors.float(), dim=-1)
        self.decay = decay
        self.max_items = max_items

    def score_all(self, histories: list[list[int]]) -> torch.Tensor:
        d = self.items.shape[1]
        queries = torch.zeros(len(histories), d)
        for b, hist in enumerate(histories):
            recent = list(hist)[-self.max_items:][::-1]  # most recent first
            if recent:
                weights = self.decay ** torch.arange(len(recent), dtype=torch.float32)
                queries[b] = (weights[:, None] * self.items[recent]).sum(0)
        return F.normalize(queries, dim=-1) @ self.items.T
