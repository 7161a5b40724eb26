"""The losses both trainings share: the sequence-item contrastive loss (cosine / τ, negatives gathered
across processes) and the mapping loss (squared L2, optionally on unit vectors).

Pre-training combines them with MLM in one step (:meth:`jepa4rec.modeling.JEPA4RecForPreTraining.forward`);
fine-tuning adds them to its full-softmax loss (:mod:`jepa4rec.finetuning`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

IGNORE_INDEX = -100  # a label position that is not predicted (torch's cross-entropy and transformers' convention)


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
