"""SASRec (Kang & McAuley, 2018): the ID-only baseline, in plain PyTorch.

Architecture (the paper's standard settings by default): learnable item and positional embeddings,
``n_layers`` causal self-attention blocks (pre-LayerNorm, as in the authors' implementation, with a
ReLU point-wise feed-forward layer), a final LayerNorm, and the item embedding table reused as the
output layer, so the score of item ``i`` is ``<h_t, E_i>``.

Training objective: **full-softmax cross-entropy over all items at every position** of each
training sequence (position ``t`` predicts item ``t+1``). The original paper uses binary
cross-entropy with one sampled negative; full softmax is simpler (no sampler to seed), is
well-known to be stronger for SASRec, and matches how JEPA4Rec itself is fine-tuned (full
softmax over the catalogue), so the comparison is about the encoder rather than the loss.

Data protocol (leave-one-out, same as :mod:`jepa4rec.evaluation`): each user trains on
``seq[:-2]``; validation ranks ``seq[-2]`` given ``seq[:-2]``; the test ranks ``seq[-1]`` given
``seq[:-1]``. Each user contributes its most recent ``max_len + 1`` training items (one window,
as in the original implementation). Model selection: early stopping on validation NDCG@10 with
``patience`` evaluations, keeping the best weights.

Item features instead of IDs: given ``item_features`` ([n_items, f], e.g. frozen sentence vectors from
:mod:`jepa4rec.baselines.frozen_text`), the item table is a learned projection of those features and no
item ID is learned (UniSRec-style text features, without its MoE adaptor); everything else is unchanged.
``text_skip`` adds to the scores a learned multiple of each item's cosine to the recent items' features
(decayed as :class:`~jepa4rec.baselines.frozen_text.FrozenTextScorer` weighs them): the model starts as
that text baseline and learns the sequence on top of it, where a projection learned from scratch would
first have to relearn what the features already say (the shop adapter of :mod:`jepa4rec.adaptation`).

Ids: dataset item ids are 0-based; inside the model id 0 is padding and item ``i`` is stored as
``i + 1``. :meth:`SASRec.score_all` returns scores for the ``n_items`` real items only, in the
dataset's id order, so it plugs straight into :func:`jepa4rec.evaluation.evaluate`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.dataset import SeqRecDataset
from ..devices import resolve_device
from ..evaluation import evaluate
from ..optim import EarlyStopping, FitState, fit_epochs

logger = logging.getLogger(__name__)

PAD = 0  # internal padding id; real item i is stored as i + 1
TEXT_SKIP_ITEMS = 8  # the text skip's recent items: 0.5 ** 8 is already under 0.4% of the latest's weight


@dataclass
class SASRecConfig:
    """Model and training settings. Defaults follow the SASRec paper (hidden 64, 2 blocks, 1 head,
    max length 50, dropout 0.2, Adam lr 1e-3) except the loss (full softmax, see module doc)."""

    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    ffn_size: int | None = None  # None = hidden_size (the paper's point-wise FFN keeps width d)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10  # evaluations without a better validation NDCG@10 before stopping
    eval_every: int = 1  # epochs between validation runs
    eval_batch_size: int = 1024
    select_metric: str = "NDCG@10"
    seed: int = 42
    device: str = "auto"  # "auto" = cuda when available, else cpu
    # With item features only: add text_skip_scale (learned) x cosine(recent items' features, item's features),
    # the recent items weighted text_skip_decay ** k (k = 0 for the latest) over the last TEXT_SKIP_ITEMS.
    text_skip: bool = False
    text_skip_scale: float = 20.0  # its starting value: 1 / 0.05, the contrastive temperature of JEPA4Rec
    text_skip_decay: float = 0.5


class _Block(nn.Module):
    """Pre-LN Transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden_size {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.attn_dropout = dropout
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.proj(y.transpose(1, 2).reshape(b, length, d)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class SASRec(nn.Module):
    """Causal self-attention sequential recommender; also a :class:`~jepa4rec.evaluation.Scorer`."""

    def __init__(self, n_items: int, config: SASRecConfig | None = None, item_features: torch.Tensor | None = None):
        super().__init__()
        self.config = config or SASRecConfig()
        self.n_items = n_items
        cfg = self.config
        d = cfg.hidden_size
        if item_features is not None:
            if item_features.shape[0] != n_items:
                raise ValueError(f"item_features has {item_features.shape[0]} rows for {n_items} items")
            self.register_buffer("item_features", item_features.float().contiguous())
            self.feature_proj = nn.Linear(item_features.shape[1], d)
            self.item_emb = None
        else:
            self.item_features = None
            self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=PAD)
        if cfg.text_skip:
            if item_features is None:
                raise ValueError("text_skip needs item_features: it scores by the items' own features")
            self.skip_scale = nn.Parameter(torch.tensor(float(cfg.text_skip_scale)))
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            _Block(d, cfg.n_heads, cfg.ffn_size or d, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.final_norm = nn.LayerNorm(d)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Small normal init (as RecBole): the shared output layer starts near-uniform.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    @property
    def device(self) -> torch.device:
        return self.pos_emb.weight.device

    def item_table(self) -> torch.Tensor:
        """``[n_items + 1, d]`` item vectors, row 0 (padding) zero: learned IDs, or projected features."""
        if self.item_features is None:
            return self.item_emb.weight
        return F.pad(self.feature_proj(self.item_features), (0, 0, 1, 0))

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, L, d]`` for left-padded internal ids ``[B, L]`` (``L <= max_len``).

        Sequences are left-padded so the most recent item always sits at the last position and
        gets the last positional embedding, in training and at inference alike; trimming
        all-padding columns off the left therefore changes nothing.
        """
        b, length = ids.shape
        if length > self.config.max_len:
            raise ValueError(f"sequence length {length} > max_len {self.config.max_len}")
        d = self.config.hidden_size
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=ids.device)
        keep = (ids != PAD).unsqueeze(-1)  # [B, L, 1]
        x = self.item_table()[ids] * math.sqrt(d) + self.pos_emb(positions)
        x = self.emb_dropout(x) * keep
        # Query t may attend to real keys <= t. The diagonal is always allowed so that padding
        # queries (whose keys are all padding) never get an all-masked row, whose softmax is NaN
        # and would poison the gradients even though those outputs are ignored.
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
        mask = causal & keep.transpose(1, 2)  # [B, L, L]: key must be a real item
        mask = mask | torch.eye(length, dtype=torch.bool, device=ids.device)
        mask = mask.unsqueeze(1)  # broadcast over heads
        for block in self.blocks:
            x = block(x, mask) * keep  # padding stays zero between blocks, as in the original
        return self.final_norm(x)

    def recent_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``[B, L, f]`` unit vectors: at each position, the decayed sum of the features of the item there and the
        ``TEXT_SKIP_ITEMS - 1`` before it (padding adds nothing), for the text skip."""
        feats = F.pad(F.normalize(self.item_features, dim=-1), (0, 0, 1, 0))[ids]  # padding row: zero
        recent = feats.clone()
        weight = 1.0
        for k in range(1, min(TEXT_SKIP_ITEMS, ids.shape[1])):
            weight *= self.config.text_skip_decay
            recent[:, k:] += weight * feats[:, :-k]
        return F.normalize(recent, dim=-1)

    def item_logits(self, hidden: torch.Tensor, recent: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the ``n_items`` real items (padding row dropped) for hidden states ``[..., d]``, plus the
        text skip's for the matching rows of :meth:`recent_text` when the model has one."""
        logits = hidden @ self.item_table()[1:].T
        if recent is not None:
            logits = logits + self.skip_scale * (recent @ F.normalize(self.item_features, dim=-1).T)
        return logits

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy at every real position.

        ``inputs``: internal ids ``[B, L]``; ``targets``: 0-based next-item ids ``[B, L]``, -1 where
        there is nothing to predict (padding). Logits are computed only at real positions.
        """
        hidden = self.encode(inputs)
        real = targets >= 0
        recent = self.recent_text(inputs)[real] if self.config.text_skip else None
        return F.cross_entropy(self.item_logits(hidden[real], recent), targets[real])

    def pad_histories(self, histories: list[list[int]]) -> torch.Tensor:
        """Most recent ``max_len`` items of each history as left-padded internal ids ``[B, L]``."""
        max_len = self.config.max_len
        cut = [list(h)[-max_len:] for h in histories]
        length = max(1, max((len(h) for h in cut), default=1))  # an empty history scores from padding alone
        ids = torch.full((len(cut), length), PAD, dtype=torch.long)
        for row, hist in enumerate(cut):
            if hist:
                ids[row, length - len(hist):] = torch.tensor(hist, dtype=torch.long) + 1
        return ids

    def score_all(self, histories: list[list[int]]) -> torch.Tensor:
        """Scorer contract: ``[B, n_items]`` scores of every real item after each history.

        Switches to eval mode (no dropout) for the call and restores the previous mode.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                ids = self.pad_histories(histories).to(self.device)
                recent = self.recent_text(ids)[:, -1] if self.config.text_skip else None
                return self.item_logits(self.encode(ids)[:, -1], recent)
        finally:
            self.train(was_training)


def _training_windows(sequences: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ``(inputs [U, max_len] internal ids, targets [U, max_len] 0-based/-1, lengths [U])``.

    Each user's most recent ``max_len + 1`` training items give inputs ``w[:-1]`` and targets
    ``w[1:]``; users with fewer than two training items have nothing to learn from and are skipped.
    """
    windows = [list(s)[-(max_len + 1):] for s in sequences if len(s) >= 2]
    n = len(windows)
    inputs = torch.full((n, max_len), PAD, dtype=torch.long)
    targets = torch.full((n, max_len), -1, dtype=torch.long)
    lengths = torch.zeros(n, dtype=torch.long)
    for row, w in enumerate(windows):
        k = len(w) - 1
        w_t = torch.tensor(w, dtype=torch.long)
        inputs[row, max_len - k:] = w_t[:-1] + 1
        targets[row, max_len - k:] = w_t[1:]
        lengths[row] = k
    return inputs, targets, lengths


def _length_bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator, bucket: int = 50):
    """Shuffled batches of similar-length sequences.

    Batches are padded to their longest member, and a few long users in a random batch would pad
    everyone to ``max_len`` (most users here have ~4 training items). So: shuffle, sort chunks of
    ``bucket`` batches by length, cut into batches, shuffle the batches. Every user still appears
    once per epoch, in a seeded order.
    """
    order = torch.randperm(len(lengths), generator=generator)
    chunk = batch_size * bucket
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[torch.argsort(lengths[part], stable=True)]
        batches.extend(part.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def train_sasrec(
    dataset: SeqRecDataset,
    config: SASRecConfig | None = None,
    progress: bool = True,
    item_features: torch.Tensor | None = None,
    stop_early: Callable[[], bool] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    init_state: dict | None = None,
) -> tuple[SASRec, dict]:
    """Train SASRec on ``dataset.train_sequences()`` with early stopping on validation (over
    ``item_features`` instead of item IDs when given). ``stop_early()`` ends training after the epoch it
    returns True in (a time budget, a cancel button); ``on_epoch(row)`` hears of every epoch as it ends.
    ``init_state``: start from these weights (a state dict of a model of the same config) instead of the
    initialisation, with a fresh optimizer: how a training is continued.

    Returns ``(model, log)``: the model holds the best validation weights and is in eval mode;
    ``log`` has ``config``, ``epochs`` (one dict per epoch: ``epoch``, ``loss``, ``seconds`` and,
    when evaluated, ``valid`` metrics), ``best_epoch``, ``best_valid``, ``train_seconds``,
    ``n_parameters`` and ``device``.
    """
    cfg = config or SASRecConfig()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # model init and dropout
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)  # batch order, independent of the model

    model = SASRec(dataset.n_items, cfg, item_features).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    inputs, targets, lengths = _training_windows(dataset.train_sequences(), cfg.max_len)
    if len(inputs) == 0:
        raise ValueError(f"{dataset.name}: no user has two or more training items")
    valid_cases = dataset.valid_cases()

    log: dict = {
        "config": asdict(cfg),
        "device": str(device),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_train_users": len(inputs),
        "epochs": [],
        "best_epoch": None,
        "best_valid": None,
    }
    best_state = None
    t_start = time.perf_counter()
    bar = tqdm(total=cfg.epochs, desc=f"SASRec {dataset.name}", unit="epoch", disable=not progress)

    def train_epoch(epoch: int) -> dict:
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for idx in _length_bucketed_batches(lengths, cfg.batch_size, shuffle_gen):
            width = int(lengths[idx].max())  # drop all-padding columns on the left
            batch_in = inputs[idx, -width:].to(device)
            batch_tg = targets[idx, -width:].to(device)
            loss = model.loss(batch_in, batch_tg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n_pred = int(lengths[idx].sum())
            total += loss.item() * n_pred
            count += n_pred
        return {"loss": total / max(count, 1), "seconds": time.perf_counter() - t0}

    def keep_best(epoch: int, valid: dict) -> None:
        nonlocal best_state
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        log["best_epoch"], log["best_valid"] = epoch, valid

    def show(row: dict) -> None:
        if on_epoch is not None:
            on_epoch(row)
        bar.update(1)
        if "valid" in row:
            bar.set_postfix(loss=f"{row['loss']:.3f}", valid=f"{row['valid'][cfg.select_metric]:.4f}",
                            best=f"{state.stopper.best_score:.4f}")
        logger.info("epoch %d: %s", row["epoch"], row)

    state = FitState(EarlyStopping(cfg.patience), log["epochs"])
    fit_epochs(state, cfg.epochs, train_epoch,
               lambda: evaluate(model, valid_cases, batch_size=cfg.eval_batch_size, progress=False),
               cfg.select_metric, on_best=keep_best, validate_every=cfg.eval_every, log=show,
               stop_early=stop_early or (lambda: False))
    if state.stopper.should_stop:
        logger.info("early stop at epoch %d (best %d)", state.epoch, log["best_epoch"])
    bar.close()
    log["train_seconds"] = time.perf_counter() - t_start
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, log


SASREC_CONFIG = "sasrec_config.json"


def save_sasrec(model: SASRec, path: str | Path, card: dict | None = None) -> Path:
    """An ID-based SASRec as ``model.safetensors`` + ``sasrec_config.json`` (its settings, item count and
    ``card``: e.g. the dataset, its catalogue digest and the test metrics). Item IDs only mean something
    for the catalogue it was trained on, so the card should name it."""
    from safetensors.torch import save_file

    if model.item_features is not None:
        raise ValueError("only an ID-based SASRec is saved: a text-feature one is rebuilt from its features")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    (path / SASREC_CONFIG).write_text(json.dumps({"kind": "sasrec", "n_items": model.n_items,
                                                  "config": asdict(model.config), **(card or {})}, indent=2))
    return path


def load_sasrec(path: str | Path, device: str | torch.device = "cpu") -> tuple[SASRec, dict]:
    """(model in eval mode, its saved card) from :func:`save_sasrec`'s folder (safetensors + JSON only)."""
    from safetensors.torch import load_file

    from ..checkpoint import CheckpointError

    path = Path(path)
    meta_path = path / SASREC_CONFIG
    if not meta_path.is_file() or not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{path} is not a SASRec folder (needs {SASREC_CONFIG} and model.safetensors)",
                              hint="train one with scripts/train_sasrec.py --save DIR")
    meta = json.loads(meta_path.read_text())
    fields_ = {f.name for f in dataclasses.fields(SASRecConfig)}
    model = SASRec(meta["n_items"], SASRecConfig(**{k: v for k, v in meta["config"].items() if k in fields_}))
    try:
        state = load_file(str(path / "model.safetensors"), device=str(device))
    except Exception as err:  # safetensors raises its own types for a cut or corrupt file
        raise CheckpointError(f"{path / 'model.safetensors'}: not a readable safetensors file ({err})",
                              hint="copy or rebuild the checkpoint") from None
    model.load_state_dict(state)
    return model.to(device).eval(), meta

