"""BERT-style masking of item sentences, vectorised over the batch.

Only attribute-name and value tokens (token types 1 and 2) can be masked: [CLS], padding and every
special token are never touched. Of the selected tokens 80% become [MASK], 10% a random ordinary
token and 10% stay as they are; ``labels`` holds the original id there and -100 elsewhere.
"""
from __future__ import annotations

import torch

from .losses import IGNORE_INDEX
from .text import TYPE_ATTR, TYPE_VALUE


def masking_generator(seed: int, step: int, rank: int = 0, device="cpu") -> torch.Generator:
    """The generator a training step masks with, seeded by the run's seed, the step and the process alone: a
    resumed run masks identically (pre-training, fine-tuning, and the scripts that redo a step's masking)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step * 7919 + rank)


def maskable(input_ids: torch.Tensor, token_type_ids: torch.Tensor, special_ids: list[int]) -> torch.Tensor:
    ok = (token_type_ids == TYPE_ATTR) | (token_type_ids == TYPE_VALUE)
    if special_ids:
        ok &= ~torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    return ok


def bert_mask(
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor,
    ratio: float,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: list[int],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``ratio`` of the maskable tokens; returns (masked input ids, MLM labels)."""
    device = input_ids.device
    candidates = maskable(input_ids, token_type_ids, special_ids)
    draw = torch.rand(input_ids.shape, generator=generator, device=device)
    selected = candidates & (draw < ratio)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=generator, device=device)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    masked = input_ids.clone()
    masked[to_mask] = mask_id
    if to_random.any():
        # Random replacements avoid special tokens, so a [CLS] or [PAD] never appears inside a sentence.
        ordinary = torch.ones(vocab_size, dtype=torch.bool, device=device)
        ordinary[torch.tensor(special_ids, device=device, dtype=torch.long)] = False
        pool = ordinary.nonzero().squeeze(1)
        picks = torch.randint(len(pool), (int(to_random.sum()),), generator=generator, device=device)
        masked[to_random] = pool[picks]
    return masked, labels


def sample_masked_item(
    labels: torch.Tensor, item_position_ids: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one history item per sequence among those with at least one masked token.

    Returns (item position, 1-based like ``item_position_ids``, or 0 where nothing was masked;
    a boolean ``has_masked`` per sequence).
    """
    B = labels.shape[0]
    n_pos = int(item_position_ids.max()) + 1
    hit = torch.zeros((B, n_pos), dtype=torch.bool, device=labels.device)
    masked = labels != IGNORE_INDEX
    hit.scatter_(1, item_position_ids * masked, masked)  # writes into column 0 only where unmasked...
    hit[:, 0] = False  # ...so column 0 (CLS / padding / unmasked) is cleared afterwards
    has = hit.any(dim=1)
    # Uniform choice among hit items: random scores, -1 where not hit, take the arg-max.
    scores = torch.rand(hit.shape, generator=generator, device=labels.device)
    scores = torch.where(hit, scores, torch.full_like(scores, -1.0))
    choice = scores.argmax(dim=1)
    return torch.where(has, choice, torch.zeros_like(choice)), has
