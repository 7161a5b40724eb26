"""Items as sentences of (attribute, value) pairs, the tokenizer, and the one collator.

An item ``{"title": "Fender Mustang", "brand": "Fender"}`` becomes the sentence
``title Fender Mustang brand Fender``; each attribute name + value is cut to ``max_attr_tokens``
tokens together. A history becomes ``[CLS] S_n ... S_1`` (most recent item first, item position 1),
with at most ``max_items`` items and ``max_tokens`` tokens; when the caps bite, the oldest items go.

Token types: 0 = [CLS], 1 = attribute name, 2 = attribute value, 3 = padding.
Item positions: 0 for [CLS] and padding, 1 for the most recent item, 2 for the one before, ...
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .data.dataset import ATTRIBUTE_ORDER

TYPE_CLS, TYPE_ATTR, TYPE_VALUE, TYPE_PAD = 0, 1, 2, 3
NUM_TOKEN_TYPES = 4

# One order for readers and item sentences (see jepa4rec.data.dataset.ATTRIBUTE_ORDER).
DEFAULT_ATTRIBUTE_ORDER = ATTRIBUTE_ORDER

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}


@dataclass
class TextConfig:
    attribute_order: tuple[str, ...] = DEFAULT_ATTRIBUTE_ORDER
    include_unlisted: bool = True  # keep attributes missing from attribute_order (after the listed ones)
    max_attr_tokens: int = 32  # attribute name + value, together
    max_items: int = 50
    max_tokens: int = 1024  # including [CLS]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attribute_order"] = list(self.attribute_order)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TextConfig":
        d = dict(d)
        if "attribute_order" in d:
            d["attribute_order"] = tuple(d["attribute_order"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def item_sentence(attrs: dict[str, str], config: TextConfig | None = None) -> list[tuple[str, str]]:
    """The item's (attribute, value) pairs in the configured order, empty values dropped."""
    cfg = config or TextConfig()
    # A value of only white space is empty too (it would leave an attribute name with no value).
    listed = [(k, attrs[k]) for k in cfg.attribute_order if attrs.get(k) and attrs[k].strip()]
    rest = [(k, v) for k, v in attrs.items() if v and v.strip() and k not in cfg.attribute_order] if cfg.include_unlisted else []
    return listed + rest


def sentence_text(attrs: dict[str, str], config: TextConfig | None = None) -> str:
    return " ".join(f"{k} {v}" for k, v in item_sentence(attrs, config))


# --- tokenizer ------------------------------------------------------------------------------------

def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2):
    """Train a lower-cased WordPiece vocabulary on item sentences; returns a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
    )
    # Not reproducible run to run: the trainer breaks count ties in hash-map order (huggingface/tokenizers
    # #1794), so two trainings on the same texts can differ in a few tokens. A trained vocabulary is
    # saved with its model; reload it rather than train it again. MiniLM models use MiniLM's own.
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def load_tokenizer(name_or_path: str | os.PathLike):
    """A tokenizer from a local directory, or from a hub id where a hub is reachable."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    local = Path(name_or_path)
    if (local / "tokenizer.json").exists():
        # Our own model directories: read the fast tokenizer directly (AutoTokenizer would consult
        # config.json, whose model type "jepa4rec" it does not know).
        tok = PreTrainedTokenizerFast.from_pretrained(str(local))
    else:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    missing = [t for t in ("cls_token", "mask_token", "pad_token") if getattr(tok, t) is None]
    if missing:
        raise ValueError(f"tokenizer {name_or_path} lacks {missing}; JEPA4Rec needs [CLS], [MASK] and padding tokens")
    return tok


# --- encoding -------------------------------------------------------------------------------------

@dataclass
class EncodedItem:
    """One item's tokens without [CLS]: ids and token types (1 = attribute name, 2 = value)."""

    ids: np.ndarray
    types: np.ndarray
    # Which word of the item sentence each value token belongs to (-1 for attribute names);
    # the reveal feature uses it to unmask whole words.
    words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.ids)


def model_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                 item_position_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch dict the encoder takes: adds token positions (0 = [CLS]) and [CLS]-only global attention."""
    B, length = input_ids.shape
    positions = torch.arange(length, device=input_ids.device).expand(B, length) * attention_mask
    global_attention_mask = torch.zeros_like(attention_mask)
    global_attention_mask[:, 0] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "global_attention_mask": global_attention_mask,
        "token_type_ids": token_type_ids,
        "position_ids": positions.contiguous(),
        "item_position_ids": item_position_ids,
    }


class ItemTokenizer:
    """Turns catalogues into per-item token arrays and histories into padded model batches."""

    def __init__(self, tokenizer, config: TextConfig | None = None):
        self.tokenizer = tokenizer
        self.config = config or TextConfig()
        self.cls_id = tokenizer.cls_token_id
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = sorted({i for i in tokenizer.all_special_ids})
        self.vocab_size = len(tokenizer)

    def encode_items(self, items: Sequence[dict[str, str]]) -> list[EncodedItem]:
        """Tokenize many items with a few batched tokenizer calls."""
        pairs = [item_sentence(it, self.config) for it in items]
        names = sorted({k for p in pairs for k, _ in p})
        # Every word is tokenized with its leading space, as it stands inside the sentence: byte-level
        # BPE tokenizers (RoBERTa / Longformer) otherwise encode it as a text-initial word ("brand" ->
        # "br" "and" instead of "Ġbrand"); WordPiece / BERT pre-tokenizers drop the space anyway.
        name_ids = {n: ids for n, ids in zip(names, self.tokenizer([" " + n for n in names], add_special_tokens=False)["input_ids"])} if names else {}
        # Tokenize values word by word (pre-split on whitespace) so each token knows its word.
        values = [[" " + w for w in v.split()] for p in pairs for _, v in p]
        # Each value is cut to max_attr_tokens below, so a long one is no "indexing error" (verbose=False keeps
        # transformers from saying so).
        enc = self.tokenizer(values, is_split_into_words=True, add_special_tokens=False,
                             verbose=False) if values else None
        out: list[EncodedItem] = []
        j = 0
        for p in pairs:
            ids: list[int] = []
            types: list[int] = []
            words: list[int] = []
            word_base = 0
            for name, _ in p:
                n_ids = name_ids[name][: self.config.max_attr_tokens]
                budget = self.config.max_attr_tokens - len(n_ids)
                v_ids = enc["input_ids"][j][:budget]
                w_ids = enc.word_ids(j)[:budget]
                n_words = len(values[j])
                j += 1
                ids += n_ids + v_ids
                types += [TYPE_ATTR] * len(n_ids) + [TYPE_VALUE] * len(v_ids)
                words += [-1] * len(n_ids) + [word_base + (w if w is not None else 0) for w in w_ids]
                word_base += n_words
            out.append(EncodedItem(np.asarray(ids, dtype=np.int64), np.asarray(types, dtype=np.int64),
                                   np.asarray(words, dtype=np.int64)))
        return out

    def history_length(self, history: Sequence[EncodedItem]) -> int:
        """Tokens :meth:`collate` gives this history ([CLS] included), without building it."""
        cfg = self.config
        n = 1
        for item in reversed(history[-cfg.max_items:] if cfg.max_items else history):
            if n + len(item) > cfg.max_tokens:
                break
            n += len(item)
        return n

    def collate(self, histories: Sequence[Sequence[EncodedItem]], pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
        """Pad a batch of histories (each oldest first) into model inputs.

        Returns input_ids, attention_mask, global_attention_mask (1 on [CLS]), token_type_ids,
        position_ids (token positions, 0 = [CLS]) and item_position_ids, all [B, L] int64.
        """
        cfg = self.config
        rows = []
        for history in histories:
            ids, types, item_pos = [self.cls_id], [TYPE_CLS], [0]
            for k, item in enumerate(reversed(history[-cfg.max_items:] if cfg.max_items else history)):
                if len(ids) + len(item) > cfg.max_tokens:
                    break  # the caps drop the oldest items, never the most recent
                ids.extend(item.ids.tolist())
                types.extend(item.types.tolist())
                item_pos.extend([k + 1] * len(item))
            rows.append((ids, types, item_pos))
        length = max(len(r[0]) for r in rows)
        if pad_to_multiple_of > 1:
            length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
        B = len(rows)
        input_ids = torch.full((B, length), self.pad_id, dtype=torch.long)
        token_type_ids = torch.full((B, length), TYPE_PAD, dtype=torch.long)
        item_position_ids = torch.zeros((B, length), dtype=torch.long)
        attention_mask = torch.zeros((B, length), dtype=torch.long)
        for b, (ids, types, item_pos) in enumerate(rows):
            n = len(ids)
            input_ids[b, :n] = torch.tensor(ids)
            token_type_ids[b, :n] = torch.tensor(types)
            item_position_ids[b, :n] = torch.tensor(item_pos)
            attention_mask[b, :n] = 1
        return model_inputs(input_ids, attention_mask, token_type_ids, item_position_ids)

    def collate_items(self, items: Sequence[EncodedItem], pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
        """Each item alone, ``[CLS] S_i``: the input that gives item vectors."""
        return self.collate([[it] for it in items], pad_to_multiple_of)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(path))
        (path / "text_config.json").write_text(json.dumps(self.config.to_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "ItemTokenizer":
        path = Path(path)
        cfg_path = path / "text_config.json"
        config = TextConfig.from_dict(json.loads(cfg_path.read_text())) if cfg_path.exists() else TextConfig()
        return cls(load_tokenizer(path), config)
