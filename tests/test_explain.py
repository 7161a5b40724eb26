"""Why an item ranks where it does (leave-one-out history, masked words) and a brand-new item's rank,
on the toy fine-tuned model (conftest's ``rec``)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepa4rec.explain import history_contributions, rank_new_item, word_importance


def test_history_contributions_are_leave_one_out_score_changes(rec):
    case = rec.dataset.test_cases()[5]
    history, item = list(case.history), case.target
    out = history_contributions(rec, history, item)
    assert [c.item for c in out] == history
    full = float(F.normalize(rec.embed_history([history])[0], dim=-1) @ rec.unit_item_vectors[item])
    without_first = float(F.normalize(rec.embed_history([history[1:]])[0], dim=-1) @ rec.unit_item_vectors[item])
    assert out[0].delta == pytest.approx(full - without_first, abs=1e-4)
    assert history_contributions(rec, [], item) == []
    one = history_contributions(rec, history[:1], item)
    assert len(one) == 1 and one[0].delta == pytest.approx(
        float(F.normalize(rec.embed_history([history[:1]])[0], dim=-1) @ rec.unit_item_vectors[item]), abs=1e-4)


def test_word_importance_masks_each_word_once(rec):
    case = rec.dataset.test_cases()[2]
    out = word_importance(rec, case.history, case.target)
    words = rec.dataset.items[case.target]["title"].split()
    assert [c.label for c in out] == words
    assert any(abs(c.delta) > 0 for c in out)


def test_a_new_item_identical_to_a_catalogue_item_ties_with_it(rec):
    case = rec.dataset.test_cases()[0]
    item = case.target
    new = rank_new_item(rec, case.history, dict(rec.dataset.items[item]))
    plain = rec.recommend(case.history, k=1, target=item)
    # It ties with its twin (ties count against it), or nearly: a lone forward may round apart from a batch.
    assert new.rank in (plain.target_rank, plain.target_rank + 1)
    assert new.neighbours[0][0] == item and new.neighbours[0][1] == pytest.approx(1.0, abs=1e-3)
    assert len(new.neighbours) == 10 and isinstance(new.vector, torch.Tensor)
    with pytest.raises(ValueError, match="no text"):
        rank_new_item(rec, case.history, {"title": "  "})
