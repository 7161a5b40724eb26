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
    h = F.normalize(rec.history_vector(case.history), dim=-1)
    catalogue = rec.unit_item_vectors @ h
    twin = float(catalogue[item])
    # It scores as its twin does, up to the rounding between a lone forward and a batched one. The toy
    # model gives items of one theme near-identical vectors, so several items may tie within that
    # rounding: the rank is checked against the band of items inside it, not one exact position.
    assert new.score == pytest.approx(twin, abs=1e-4)
    assert int((catalogue > twin + 1e-4).sum()) + 1 <= new.rank <= int((catalogue >= twin - 1e-4).sum()) + 1
    near = dict(new.neighbours)
    assert near.get(item) == pytest.approx(1.0, abs=1e-3)
    assert new.neighbours[0][1] == pytest.approx(near[item], abs=1e-3)
    assert len(new.neighbours) == 10 and isinstance(new.vector, torch.Tensor)
    with pytest.raises(ValueError, match="no text"):
        rank_new_item(rec, case.history, {"title": "  "})


def test_explanations_score_as_the_ranking_does_when_the_model_has_priors(rec, monkeypatch):
    case = rec.dataset.test_cases()[5]
    history = list(case.history)
    item = history[0]
    assert history.count(item) == 1
    plain = history_contributions(rec, history, item)
    new_plain = rank_new_item(rec, history, dict(rec.dataset.items[case.target]))
    monkeypatch.setattr(rec, "repeat_bias", 2.5)
    monkeypatch.setattr(rec, "popularity_bias", 1.0)
    biased = history_contributions(rec, history, item)
    # Leaving out the item's only occurrence also takes its repeat bias away; popularity cancels.
    assert biased[0].delta == pytest.approx(plain[0].delta + 2.5, abs=1e-4)
    assert [c.delta for c in biased[1:]] == pytest.approx([c.delta for c in plain[1:]], abs=1e-4)
    # The new item (no purchases, not in the history) is ranked against the catalogue's scores with the
    # priors, as the ranking shows them: its rank counts the items scoring at least its cosine there.
    new = rank_new_item(rec, history, dict(rec.dataset.items[case.target]))
    assert new.score == pytest.approx(new_plain.score, abs=1e-6)
    ranked = rec.score_all([history])[0]
    assert new.rank == int((ranked >= new.score).sum()) + 1
    assert new.rank > new_plain.rank  # popular items and the history moved above it
