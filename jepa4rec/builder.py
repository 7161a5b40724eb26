"""Where a new model and its tokenizer come from: the one builder behind pre-training, fine-tuning from
scratch or from a language model, an untrained language model served as is, and the benchmarks.

* :func:`item_tokenizer`: a language model's own tokenizer, an existing tokenizer folder, or a WordPiece
  vocabulary trained on the run's item sentences;
* :func:`new_model`: a JEPA4Rec model sized for that tokenizer: random, its encoder converted from a
  language model (``init_from``), or its token embeddings from WordLlama (``token_init``).

A model that already exists (a JEPA4Rec model directory) is read by :func:`jepa4rec.checkpoint.load_model_dir`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch

from .language_models import init_from_language_model, language_model_dir, source_description
from .modeling import MODEL_SIZES, JEPA4RecForPreTraining, JepaConfig
from .text import ItemTokenizer, TextConfig, load_tokenizer, train_tokenizer
from .wordinit import init_token_embeddings

logger = logging.getLogger(__name__)


def item_tokenizer(text_cfg: TextConfig, *, init_from: str | None = None, tokenizer: str | None = None,
                   texts: Iterable[str] | None = None, vocab_size: int = 8000,
                   trained_dir: str | Path | None = None) -> ItemTokenizer:
    """The run's tokenizer; the first of these that applies:

    1. ``init_from`` names a language model: its own tokenizer;
    2. ``tokenizer`` names a tokenizer folder: that one;
    3. a WordPiece vocabulary of ``vocab_size`` trained on ``texts`` (the item sentences of the run's
       catalogues). With ``trained_dir`` it is trained once, saved there and read back, so a resumed run
       and every process of a multi-process run use the very same vocabulary (``texts=None``: only read
       it); without, it stays in memory.
    """
    if init_from:
        return ItemTokenizer(load_tokenizer(language_model_dir(init_from)), text_cfg)
    if tokenizer:
        return ItemTokenizer(load_tokenizer(tokenizer), text_cfg)
    if trained_dir is None:
        return ItemTokenizer(train_tokenizer(texts, vocab_size), text_cfg)
    trained_dir = Path(trained_dir)
    if texts is not None and not (trained_dir / "tokenizer.json").exists():
        ItemTokenizer(train_tokenizer(texts, vocab_size), text_cfg).save_pretrained(trained_dir)
    return ItemTokenizer(load_tokenizer(trained_dir), text_cfg)


def new_model(item_tok: ItemTokenizer, *, model_size: str, overrides: dict, max_items: int, max_tokens: int,
              init_from: str | None = None, token_init: str | None = None, freeze_word_embeddings: bool = False,
              seed: int = 0, model_class=JEPA4RecForPreTraining) -> JEPA4RecForPreTraining:
    """A new JEPA4Rec model for ``item_tok``'s vocabulary: random (seeded by ``seed``), or its encoder from
    a language model (``init_from``), or its token embeddings from WordLlama (``token_init``). ``model_class``
    picks the head (pre-training's by default; every head has the same weights).

    The token-position table covers the size's full length even when the run caps histories shorter
    (``max_tokens``), so a later fine-tuning may use longer histories than pre-training did.
    """
    torch.manual_seed(seed)
    model_cfg = JepaConfig.from_size(
        model_size,
        vocab_size=len(item_tok.tokenizer),
        pad_token_id=item_tok.pad_id,
        max_item_positions=max_items + 1,
        max_position_embeddings=max(MODEL_SIZES[model_size]["max_position_embeddings"], max_tokens),
        **overrides,
    )
    model = model_class(model_cfg)
    if init_from:
        init_from_language_model(model, init_from)
        model.config.base_model = {"source": init_from, **source_description(init_from)}
    if token_init:
        logger.info("%s", init_token_embeddings(model, item_tok.tokenizer, token_init, seed))
    if freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model
