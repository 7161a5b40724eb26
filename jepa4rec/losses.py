"""The three pre-training losses and the step that combines them.

L = L_SI + λ1·L_MLM + λ2·L_map  (paper: τ = 0.05, λ1 = λ2 = 0.1; λ2 = 0 gives the RecFormer-style
variant). :func:`pretrain_losses` runs one step's forward passes:

1. mask 15% of the history tokens and 50% of the next item's tokens (BERT 80/10/10);
2. context encoder on the masked history → h_CLS and token states (MLM);
3. context encoder on the full next items (S-I positives and in-batch negatives) and on the masked
   next items → h_{n+1,M};
4. target encoder (no grad) on the full next item and on one masked history item alone → targets;
5. FFN1(h_CLS ⊕ D_n) → ĥ_n and FFN2(h_CLS ⊕ h_{n+1,M}) → ĥ_{n+1}; L_map = squared L2 to the targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .masking import IGNORE_INDEX, bert_mask, sample_masked_item
from .modeling import JEPA4RecModel, JepaEncoder, PretrainOutput
from .text import TYPE_CLS, TYPE_PAD, model_inputs


@dataclass
class LossConfig:
    temperature: float = 0.05
    lambda_mlm: float = 0.1
    lambda_map: float = 0.1
    history_mask_ratio: float = 0.15
    next_item_mask_ratio: float = 0.5
    mlm_on_next_item: bool = True  # the masked next item's tokens also count in L_MLM
    # L_map on unit vectors (‖ĥ/|ĥ| − h/|h|‖² = 2 − 2cos): the scale ranking uses. Unnormalised, the
    # squared distance sums ~d terms and λ2·L_map outweighs L_SI a hundredfold at initialisation,
    # which drives a from-scratch encoder towards one constant vector (measured: see README).
    map_normalize: bool = True


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' rows (gradients flow back to this process's rows) and this process's offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


def contrastive_loss(
    h_seq: torch.Tensor,
    h_items: torch.Tensor,
    temperature: float,
    item_uids: torch.Tensor | None = None,
    gather: bool = True,
) -> torch.Tensor:
    """In-batch sequence-item contrastive loss with cosine similarity / τ.

    Row i's positive is item i; every other item in the (globally gathered) batch is a negative,
    except copies of the positive item itself (same ``item_uids``), which are masked out so that a
    popular item is not pushed away from its own sequence.
    """
    items, offset = gather_with_grad(h_items) if gather else (h_items, 0)
    logits = F.normalize(h_seq, dim=-1) @ F.normalize(items, dim=-1).T / temperature
    labels = torch.arange(h_seq.shape[0], device=h_seq.device) + offset
    if item_uids is not None:
        uids, _ = gather_with_grad(item_uids) if gather else (item_uids, 0)
        same = item_uids[:, None] == uids[None, :]
        same[torch.arange(len(labels)), labels] = False
        logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, labels)


def mapping_loss(pred: torch.Tensor, target: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """‖h − ĥ‖², summed over dimensions, averaged over rows (on unit vectors when ``normalize``)."""
    if normalize:
        pred, target = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    return (pred - target).pow(2).sum(dim=-1).mean()


def extract_item_alone(history: dict[str, torch.Tensor], item_position: torch.Tensor, cls_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    """``[CLS] S_k`` for the item at ``item_position[b]`` of each history, vectorised."""
    sel = (history["item_position_ids"] == item_position[:, None]) & (history["attention_mask"] == 1)
    sel &= item_position[:, None] > 0
    counts = sel.sum(dim=1)
    length = int(counts.max().item()) + 1
    B = sel.shape[0]
    dest = torch.cumsum(sel.long(), dim=1)  # 1..n for the selected tokens
    dest = torch.where(sel, dest, torch.zeros_like(dest))
    out_ids = torch.full((B, length), pad_id, dtype=torch.long, device=sel.device)
    out_types = torch.full((B, length), TYPE_PAD, dtype=torch.long, device=sel.device)
    rows = torch.arange(B, device=sel.device)[:, None].expand_as(sel)
    out_ids[rows[sel], dest[sel]] = history["input_ids"][sel]
    out_types[rows[sel], dest[sel]] = history["token_type_ids"][sel]
    out_ids[:, 0] = cls_id
    out_types[:, 0] = TYPE_CLS
    positions = torch.arange(length, device=sel.device)[None, :]
    attention = (positions <= counts[:, None]).long()
    item_positions = attention - (positions == 0).long()  # 1 on item tokens, 0 on [CLS] and padding
    return model_inputs(out_ids, attention, out_types, item_positions)


def _concat_batches(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], fills: dict[str, int]) -> dict[str, torch.Tensor]:
    L = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    def pad(x, k):
        return F.pad(x, (0, L - x.shape[1]), value=fills.get(k, 0))
    return {k: torch.cat([pad(a[k], k), pad(b[k], k)], dim=0) for k in a}


def pretrain_losses(
    model: JEPA4RecModel,
    target_encoder: JepaEncoder | None,
    batch: dict,
    cfg: LossConfig,
    *,
    cls_id: int,
    pad_id: int,
    mask_id: int,
    special_ids: list[int],
    generator: torch.Generator | None = None,
) -> PretrainOutput:
    """One pre-training forward. ``batch`` holds ``history`` and ``next_item`` (collated dicts) and
    ``next_uid`` (one integer per row identifying the next item across domains)."""
    history, next_item = batch["history"], batch["next_item"]
    vocab = model.config.vocab_size
    mask_kw = dict(mask_id=mask_id, vocab_size=vocab, special_ids=special_ids, generator=generator)
    hist_ids, hist_labels = bert_mask(history["input_ids"], history["token_type_ids"], cfg.history_mask_ratio, **mask_kw)
    next_ids, next_labels = bert_mask(next_item["input_ids"], next_item["token_type_ids"], cfg.next_item_mask_ratio, **mask_kw)

    states = model.encoder(**{**history, "input_ids": hist_ids})
    h_cls = model.encoder.pool(states, history["attention_mask"])
    fills = {"input_ids": pad_id, "token_type_ids": TYPE_PAD}
    B = h_cls.shape[0]
    both = _concat_batches(next_item, {**next_item, "input_ids": next_ids}, fills)
    item_states = model.encoder(**both)
    item_vectors = model.encoder.pool(item_states, both["attention_mask"])
    h_next, h_next_masked = item_vectors[:B], item_vectors[B:]

    loss_si = contrastive_loss(h_cls, h_next, cfg.temperature, batch.get("next_uid"))

    zero = h_cls.new_zeros(())
    loss_mlm = zero
    if cfg.lambda_mlm > 0:
        logits = model.mlm_head(states[hist_labels != IGNORE_INDEX])
        targets = hist_labels[hist_labels != IGNORE_INDEX]
        if cfg.mlm_on_next_item:
            next_sel = next_labels != IGNORE_INDEX
            logits = torch.cat([logits, model.mlm_head(item_states[B:][next_sel])])
            targets = torch.cat([targets, next_labels[next_sel]])
        if targets.numel():
            loss_mlm = F.cross_entropy(logits.float(), targets)

    loss_map = zero
    if cfg.lambda_map > 0:
        if target_encoder is None:
            raise ValueError("lambda_map > 0 needs the EMA target encoder")
        position, has_masked = sample_masked_item(hist_labels, history["item_position_ids"], generator)
        # Where nothing was masked, the learnable vector stands in for D_n and the most recent item
        # (position 1) is the target, so the vector learns "the item this history ends with".
        position = torch.where(has_masked, position, torch.ones_like(position))
        alone = extract_item_alone(history, position, cls_id, pad_id)
        with torch.no_grad():
            targets_in = _concat_batches(next_item, alone, fills)
            target_vectors = target_encoder.encode(targets_in)
            t_next, t_hist = target_vectors[:B], target_vectors[B:]
        pred_hist = model.predict_history_item(h_cls, position, has_masked)
        pred_next = model.predict_next(h_cls, h_next_masked)
        loss_map = (mapping_loss(pred_hist, t_hist.float(), cfg.map_normalize)
                    + mapping_loss(pred_next, t_next.float(), cfg.map_normalize))

    loss = loss_si + cfg.lambda_mlm * loss_mlm + cfg.lambda_map * loss_map
    with torch.no_grad():
        spread = F.normalize(h_next.float(), dim=-1).std(dim=0).mean()
    return PretrainOutput(loss, loss_si.detach(), loss_mlm.detach(), loss_map.detach(), spread)
