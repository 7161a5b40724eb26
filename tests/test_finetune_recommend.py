"""Fine-tuning end to end on the toy corpus, then the Recommender (the one inference API) on its result."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from jepa4rec.checkpoint import is_model_dir
from jepa4rec.config import FinetuneConfig, OptimConfig, load_config
from jepa4rec.data import load_dataset
from jepa4rec.evaluation import metrics_from_ranks, rank_of_targets
from jepa4rec.batches import finetuning_pairs as training_pairs
from jepa4rec.finetuning import finetune
from jepa4rec.recommender import Recommender
from jepa4rec.significance import read_ranks
from jepa4rec.text import TYPE_VALUE

torch.set_num_threads(1)


def test_training_pairs_use_only_the_training_part(toy):
    ds = load_dataset(toy)
    train = ds.train_sequences()
    prefixes = {tuple(s[:t + 1]) for s in train for t in range(1, len(s))}
    pairs = training_pairs(ds, "all", 10, np.random.default_rng(0))
    assert len(pairs) == sum(len(s) - 1 for s in train)
    # Every pair is (a prefix of a training sequence, its next training item): no held-out target.
    assert all(p.history + (p.target,) in prefixes for p in pairs)
    sampled = training_pairs(ds, "sample", 10, np.random.default_rng(0))
    assert len(sampled) == sum(1 for s in train if len(s) >= 2)
    assert all(p.history + (p.target,) in prefixes for p in sampled)
    with pytest.raises(ValueError, match="pairs must be"):
        training_pairs(ds, "every", 10, np.random.default_rng(0))


def test_finetuning_raises_validation_ndcg(finetuned):
    cfg, result = finetuned
    assert cfg.loss.lambda_map > 0  # the predictor was trained too (the Recommender's reveal uses it)
    before = result["valid_before"]["NDCG@10"]
    best = max(h["valid"]["NDCG@10"] for h in result["history"][1:])
    assert best > before + 0.1, (before, best)
    assert result["test"]["NDCG@10"] > before
    out = cfg.output_dir
    assert is_model_dir(f"{out}/best")
    card = json.load(open(f"{out}/best/training_card.json"))
    assert card["kind"] == "finetune" and "test" in card
    saved = json.load(open(f"{out}/results.json"))
    assert saved["best_epoch"] == result["best_epoch"] and saved["seed"] == 5
    # The run's per-user test ranks reproduce its reported test metric (what the paired comparison reads).
    ranks = read_ranks(f"{out}/test_ranks.csv")
    assert len(ranks.users) == result["test"]["users"]
    assert metrics_from_ranks(torch.as_tensor(ranks.ranks))["NDCG@10"] == pytest.approx(result["test"]["NDCG@10"], abs=1e-6)


def test_finetune_config_rejects_architecture_changes_of_a_pretrained_model():
    with pytest.raises(ValueError, match="may only set"):
        FinetuneConfig(init_from="x", model={"hidden_size": 64})
    cfg = FinetuneConfig(init_from="x", model={"hidden_dropout_prob": 0.1})
    assert cfg.model["hidden_dropout_prob"] == 0.1
    assert load_config(FinetuneConfig, "finetune_tiny").batch_size == 16


def test_recommend_ranks_and_target_rank_agree_with_score_all(rec):
    ds = rec.dataset
    case = ds.test_cases()[0]
    out = rec.recommend(case.history, k=5, target=case.target)
    assert len(out.items) == 5
    scores = [r.score for r in out.items]
    assert scores == sorted(scores, reverse=True)
    full = rec.score_all([case.history])
    assert out.target_rank == int(rank_of_targets(full, [case.target])[0])
    assert out.items[0].title == ds.items[out.items[0].item]["title"]


def test_top_k_without_a_target_comes_from_the_index_and_equals_full_scoring(rec):
    case = rec.dataset.test_cases()[3]
    out = rec.recommend(case.history, k=7)
    full = rec.score_all([case.history])[0]
    assert [r.item for r in out.items] == torch.topk(full, 7).indices.tolist()
    assert rec.item_index.method == "exact" and out.target_rank is None


def test_int8_serving_ranks_close_to_fp32(finetuned, toy):
    from jepa4rec.evaluation import evaluate

    cfg, _ = finetuned
    ds = load_dataset(toy)
    fp32 = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False)
    int8 = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False).quantize_int8()
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())
    # The toy model's item vectors are nearly parallel (their ranking hangs on tiny differences), so the
    # ranking fidelity is measured on real data by scripts/benchmark_encoder.py; here: small relative error.
    error = (int8.item_vectors - fp32.item_vectors).norm(dim=-1) / fp32.item_vectors.norm(dim=-1)
    assert error.max() < 0.05
    assert 0 < evaluate(int8, ds.test_cases(), progress=False)["MRR"] <= 1


def test_bf16_encoding_is_close_to_fp32_and_cached_apart(finetuned, toy):
    cfg, _ = finetuned
    ds = load_dataset(toy)
    fp32 = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False, precision="fp32")
    bf16 = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False, precision="bf16")
    error = (bf16.item_vectors - fp32.item_vectors).norm(dim=-1) / fp32.item_vectors.norm(dim=-1)
    assert bf16.item_vectors.dtype == torch.float32 and error.max() < 0.05
    assert bf16.cache_key() != fp32.cache_key()  # a cached fp32 matrix is never served as bf16's
    with pytest.raises(ValueError, match="precision"):
        Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, precision="fp16")


def test_reveal_curve_is_memoised_per_history_and_target_by_the_memo_a_caller_plugs_in(rec):
    """The library remembers nothing by default; the app plugs in its bounded memo (app.service.BoundedMemo)."""
    from app.service import BoundedMemo
    from jepa4rec.recommender import NoMemo

    case = rec.dataset.test_cases()[4]
    steps = [0.0, 0.5, 1.0]
    calls = []
    original = rec.embed_encoded_items
    rec.embed_encoded_items = lambda items: calls.append(len(items)) or original(items)
    try:
        first = rec.reveal_curve(case.history, case.target, steps)
        assert rec.reveal_curve(case.history, case.target, steps) == first and calls == [3, 3]  # NoMemo: computed twice
        rec.memo, calls[:] = BoundedMemo(limit=4), []
        assert rec.reveal_curve(case.history, case.target, steps) == first and calls == [3]
        assert rec.reveal_curve(case.history, case.target, steps) == first and calls == [3]  # remembered
        rec.reveal_curve(case.history, case.target, [0.0, 1.0])  # other fractions: computed
        assert calls == [3, 2] and len(rec.memo) == 3  # the history vector and the two curves
    finally:
        del rec.embed_encoded_items
        rec.memo = NoMemo()


def test_exclude_history_never_removes_the_target(rec):
    case = rec.dataset.test_cases()[1]
    history = list(case.history) + [case.target]
    k = rec.dataset.n_items - len(set(case.history))  # exactly the items that still compete
    out = rec.recommend(history, k=k, target=case.target, exclude_history=True)
    shown = {r.item for r in out.items}
    assert not (set(case.history) & shown) and all(r.score > float("-inf") for r in out.items)
    assert case.target in shown and out.target_rank is not None


def test_reveal_masks_all_but_the_revealed_words(rec):
    item = 0
    enc = rec.encoded[item]
    value = enc.types == TYPE_VALUE
    n_words = int(enc.words.max()) + 1
    none, words0 = rec.masked_item(item, 0.0)
    assert (none.ids[value] == rec.tok.mask_id).all() and words0 == []
    assert (none.ids[~value] == enc.ids[~value]).all()  # attribute names stay visible
    full, words1 = rec.masked_item(item, 1.0)
    assert (full.ids == enc.ids).all() and len(words1) == n_words
    half, words_half = rec.masked_item(item, 0.5)
    k = int(np.floor(0.5 * n_words + 0.5))
    assert words_half == rec.dataset.items[item]["title"].split()[:k]  # sequential: the first words
    shown = np.isin(enc.words, np.arange(k)) & value
    assert (half.ids[shown] == enc.ids[shown]).all() and (half.ids[value & ~shown] == rec.tok.mask_id).all()
    r1, w1 = rec.masked_item(item, 0.5, order="random", seed=3)
    r2, w2 = rec.masked_item(item, 0.5, order="random", seed=3)
    assert w1 == w2 and (r1.ids == r2.ids).all() and len(w1) == k


def test_recommend_with_reveal_returns_a_rank(rec):
    case = rec.dataset.test_cases()[2]
    ranks = [rec.recommend(case.history, target=case.target, reveal=r).target_rank for r in (0.0, 0.5, 1.0)]
    assert all(1 <= r <= rec.dataset.n_items for r in ranks)
    mapped = rec.recommend(case.history, target=case.target, reveal=1.0, reveal_mode="predictor")
    assert 1 <= mapped.target_rank <= rec.dataset.n_items
    with pytest.raises(ValueError, match="reveal_mode"):
        rec.recommend(case.history, target=case.target, reveal=0.5, reveal_mode="sum")


def test_evidence_reveal_at_zero_is_the_history_only_ranking(rec):
    """0% revealed adds nothing: the same scores, top list and target rank as no target at all."""
    for case in rec.dataset.test_cases()[:6]:
        plain = rec.recommend(case.history, k=5, target=case.target)
        zero = rec.recommend(case.history, k=5, target=case.target, reveal=0.0)
        assert zero.target_rank == plain.target_rank and zero.revealed_words == []
        assert [r.item for r in zero.items] == [r.item for r in plain.items]
        assert [r.score for r in zero.items] == [r.score for r in plain.items]  # bit for bit
        # (How far 100% lifts the target is measured on real data by scripts/measure_reveal_demo.py: the
        # toy model's item vectors are nearly parallel, so a bf16 rounding can swap it with a neighbour.)
        curve = rec.reveal_curve(case.history, case.target, [0.0, 1.0])
        assert curve[0] == plain.target_rank
        assert rec.revealed_share(case.target, 0.0) == 0.0 and rec.revealed_share(case.target, 1.0) == 1.0


def test_exclude_history_applies_to_every_path(rec):
    case = rec.dataset.test_cases()[3]
    history = list(case.history)
    for kwargs in ({}, {"target": case.target}, {"target": case.target, "reveal": 0.5}):
        out = rec.recommend(history, k=8, exclude_history=True, **kwargs)
        assert len(out.items) == 8 and not {r.item for r in out.items} & (set(history) - {case.target}), kwargs
    with_repeats = rec.reveal_curve(history, case.target, [0.0, 1.0])
    without = rec.reveal_curve(history, case.target, [0.0, 1.0], exclude_history=True)
    assert all(b <= a for a, b in zip(with_repeats, without))  # fewer competitors, never a worse rank
    with pytest.raises(ValueError, match="needs a target"):
        rec.recommend(case.history, reveal=0.5)
    with pytest.raises(ValueError, match="within"):
        rec.recommend(case.history, target=case.target, reveal=1.5)
    with pytest.raises(ValueError, match="reveal_order"):
        rec.recommend(case.history, target=case.target, reveal=0.5, reveal_order="backwards")


def test_item_vector_cache_is_keyed_by_checkpoint_and_catalogue(finetuned, toy, tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path / "cache"))
    cfg, _ = finetuned
    ds = load_dataset(toy)
    a = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds)
    va = a.item_vectors
    path = a.catalogue.cache_path
    assert path.exists()
    b = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds)
    assert b.catalogue.cache_path == path and torch.equal(b.item_vectors, va)
    # Same dataset name, one title changed: a different key, never the stale vectors.
    changed = replace(ds, items=[dict(it) for it in ds.items])
    changed.items[0]["title"] = "a completely different product"
    c = Recommender.from_pretrained(f"{cfg.output_dir}/best", changed)
    assert c.catalogue.cache_path != path
    assert not torch.allclose(c.item_vectors[0], va[0])
    # Same catalogue, different weights: a different key.
    from jepa4rec.checkpoint import load_model_dir, save_model_dir

    model, tok, card = load_model_dir(f"{cfg.output_dir}/best")
    with torch.no_grad():
        model.encoder.embeddings.LayerNorm.bias.add_(0.5)
    save_model_dir(tmp_path / "other", model, tok, card)
    d = Recommender.from_pretrained(tmp_path / "other", ds)
    assert d.catalogue.cache_path != path


def test_shipped_item_vectors_are_read_instead_of_encoding_for_the_same_weights_and_catalogue_only(
        finetuned, toy, tmp_path, monkeypatch):
    from jepa4rec.encoding import ItemEncoder, load_shipped_vectors, save_shipped_vectors

    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path / "cache"))
    cfg, _ = finetuned
    ds = load_dataset(toy)
    shipped = tmp_path / "vectors"
    fresh = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False)
    files = fresh.save_item_vectors(shipped)
    assert files and all(f.stat().st_size < 10_000_000 for f in files)

    def no_encoding(self, items):
        raise AssertionError("encoded although vectors were shipped")

    monkeypatch.setattr(ItemEncoder, "items", no_encoding)
    read = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False, vectors_dir=shipped)
    half_step = fresh.item_vectors.abs().amax(dim=1, keepdim=True) / 254  # stored as int8 rows, one scale each
    assert ((read.item_vectors - fresh.item_vectors).abs() <= half_step + 1e-6).all()
    # int8 storage may swap items whose fp32 scores differ by less than its rounding: the top item read back
    # must be one of the fresh model's items within that rounding of the best score.
    best_fresh = fresh.recommend([0, 1, 2], k=5).items
    near_best = {r.item for r in best_fresh if r.score >= best_fresh[0].score - 1e-3}
    assert read.recommend([0, 1, 2], k=5).items[0].item in near_best
    assert len(read.catalogue.encoded._done) == ds.n_items and sum(e is not None for e in read.catalogue.encoded._done) <= 3
    # Another catalogue (one title changed) does not match: it is encoded.
    changed = replace(ds, items=[dict(it) for it in ds.items])
    changed.items[0]["title"] = "a completely different product"
    other = Recommender.from_pretrained(f"{cfg.output_dir}/best", changed, use_cache=False, vectors_dir=shipped)
    with pytest.raises(AssertionError, match="encoded although"):
        _ = other.item_vectors
    # Cut into files under a size, read back whole.
    vectors = torch.randn(50, 8)
    parts = save_shipped_vectors(vectors, tmp_path / "cut", "k", {"dataset": "x"}, max_bytes=4096 + (8 + 4) * 20)
    half_step = vectors.abs().amax(dim=1, keepdim=True) / 254  # 8 int8 values and a 4-byte scale per row
    assert len(parts) == 3 and ((load_shipped_vectors(tmp_path / "cut", "k", 50) - vectors).abs() <= half_step + 1e-6).all()
    assert load_shipped_vectors(tmp_path / "cut", "k", 51) is None  # not this catalogue's size


@pytest.mark.slow
@pytest.mark.parametrize("repeat_bias,killed", [("none", "after epoch 1"), ("learn", "after epoch 1"),
                                                ("learn", "inside epoch 2")])
def test_finetuning_resumes_exactly(toy, tmp_path, monkeypatch, caplog, repeat_bias, killed):
    """A run killed after epoch 1's checkpoint, or at a save inside epoch 2 (its pairs half done, the item matrix
    refreshed since the epoch began), and resumed gives the uninterrupted run's history and model (with a learned
    repeat bias: its value and its optimizer state too)."""
    import jepa4rec.finetuning as ft
    from jepa4rec.checkpoint import load_model_dir
    from toy_corpus import TINY_MODEL

    from jepa4rec.text import ItemTokenizer, sentence_text, train_tokenizer

    # One vocabulary for both runs: tokenizers' WordPiece trainer may order a vocabulary differently per call.
    items = load_dataset(toy).items
    ItemTokenizer(train_tokenizer((sentence_text(it) for it in items), 200)).save_pretrained(tmp_path / "tok")

    def config(name):
        return FinetuneConfig(output_dir=str(tmp_path / name), dataset=toy, tokenizer=str(tmp_path / "tok"), max_items=10,
                              max_tokens=128, batch_size=8, epochs=3, patience=5, progress=False, seed=3,
                              group_by_length=True,  # its shuffles draw from the resumed generator too
                              save_every=3, refresh_every=4,
                              repeat_bias=repeat_bias, model={**TINY_MODEL, "hidden_dropout_prob": 0.1},
                              optim=OptimConfig(lr=3e-3, warmup_steps=5))

    straight = finetune(config("straight"))

    # Inside epoch 2: the last save (every 3 steps) before its end that follows a refresh (every 4) of the epoch.
    first, steps_2 = straight["history"][1]["steps"], straight["history"][2]["steps"]
    kill_step = max(s for s in range(first + 1, first + steps_2) if s % 3 == 0)
    assert kill_step >= (first // 4 + 1) * 4, "epoch 2 too short to save after a refresh"
    real_save = ft.save_training_checkpoint

    def save_then_die(path, **kwargs):
        real_save(path, **kwargs)
        state = kwargs["trainer_state"]
        if (state["epoch"] == 1 and state["in_epoch"] is None if killed == "after epoch 1"
                else state["in_epoch"] is not None and state["step"] == kill_step):
            raise KeyboardInterrupt(f"killed {killed}")

    monkeypatch.setattr(ft, "save_training_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(config("resumed"))
    if killed == "inside epoch 2":
        last = json.loads((tmp_path / "resumed" / "last" / "trainer_state.json").read_text())
        assert last["in_epoch"]["epoch"] == 2 and last["in_epoch"]["batch"] == kill_step - first
        assert (tmp_path / "resumed" / "last" / "trainer_tensors.safetensors").exists()
    monkeypatch.setattr(ft, "save_training_checkpoint", real_save)
    saved = json.loads((tmp_path / "resumed" / "last" / "trainer_state.json").read_text())
    assert saved["precision"] == "no" and saved["config"]["save_every"] == 3
    with caplog.at_level("WARNING"):
        resumed = finetune(config("resumed"), resume=True)
    assert not [r for r in caplog.records if "resumes with options other" in r.getMessage()]  # the same options

    assert [h["valid"]["NDCG@10"] for h in resumed["history"]] == [h["valid"]["NDCG@10"] for h in straight["history"]]
    assert [h.get("loss") for h in resumed["history"]] == [h.get("loss") for h in straight["history"]]
    assert resumed["test"]["NDCG@10"] == straight["test"]["NDCG@10"]
    assert resumed["repeat_bias"] == straight["repeat_bias"] and (resumed["repeat_bias"] != 0) == (repeat_bias == "learn")
    a, _, _ = load_model_dir(tmp_path / "straight" / "best")
    b, _, _ = load_model_dir(tmp_path / "resumed" / "best")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert not (tmp_path / "resumed" / "last").exists()  # a finished run keeps no resume state
    assert finetune(config("resumed"), resume=True)["test"] == resumed["test"]  # finished: returned as it is


@pytest.mark.parametrize("module,argv", [
    ("jepa4rec.evaluate", ["--checkpoint", "no/such/dir", "--dataset", "{toy}"]),
    ("jepa4rec.finetune", ["--init-from", "no/such/dir", "--dataset", "{toy}", "--output-dir", "{out}"]),
])
def test_a_missing_checkpoint_is_one_clear_line_and_nothing_is_written(module, argv, toy, tmp_path, capsys):
    import importlib

    out = tmp_path / "run"
    argv = [a.format(toy=toy, out=out) for a in argv]
    with pytest.raises(SystemExit) as err:
        importlib.import_module(module).main(argv)
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "no/such/dir" in message and "neither a JEPA4Rec model directory" in message and "Traceback" not in message
    assert not out.exists()


def test_a_truncated_weight_file_names_the_file(finetuned, toy, tmp_path, capsys):
    import shutil

    from jepa4rec.checkpoint import CheckpointError, load_model_dir, weight_files
    from jepa4rec.evaluate import main

    cfg, _ = finetuned
    cut = tmp_path / "cut"
    shutil.copytree(f"{cfg.output_dir}/best", cut)
    weights = weight_files(cut)[0]
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(weights)):
        load_model_dir(cut)
    with pytest.raises(SystemExit) as err:
        main(["--checkpoint", str(cut), "--dataset", toy])
    message = capsys.readouterr().err
    assert err.value.code == 2 and weights.name in message and "truncated or corrupt" in message
    from jepa4rec.finetune import main as finetune_main

    with pytest.raises(SystemExit) as err:
        finetune_main(["--init-from", str(cut), "--dataset", toy, "--output-dir", str(tmp_path / "run")])
    assert err.value.code == 2 and weights.name in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_catalogue_without_text_is_refused_by_name(finetuned, toy, tmp_path, capsys):
    import shutil

    from jepa4rec.data.__main__ import main as stats_main
    from jepa4rec.evaluate import main

    cfg, _ = finetuned
    empty = tmp_path / "EmptyText"
    shutil.copytree(toy, empty)
    (empty / "items.jsonl").write_text("")
    with pytest.raises(SystemExit) as err:
        main(["--checkpoint", f"{cfg.output_dir}/best", "--dataset", str(empty)])
    message = capsys.readouterr().err
    assert err.value.code == 2 and "none of its" in message and "has any text" in message
    assert stats_main(["stats", str(empty)]) == 0
    assert "have no text" in capsys.readouterr().err


# --- the repeat bias (jepa4rec.calibrate) -----------------------------------------------------------

# Beyond the cosine range's width (2), so history items certainly rise above or fall below every other
# item whatever the toy model learned (its items of one theme score alike).
@pytest.mark.parametrize("bias", [-2.5, 2.5])
def test_repeat_bias_moves_only_history_items_on_every_path(finetuned, toy, bias):
    cfg, _ = finetuned
    ds = load_dataset(toy)
    plain = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False)
    biased = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False)
    biased.repeat_bias = bias
    case = ds.test_cases()[3]
    history = list(case.history)
    seen = torch.zeros(ds.n_items, dtype=torch.bool)
    seen[history] = True
    full = biased.score_all([history])[0]
    moved = full - plain.score_all([history])[0]
    assert torch.allclose(moved[seen], torch.full((int(seen.sum()),), bias), atol=1e-5)
    assert moved[~seen].abs().max() < 1e-6
    # The index path (no target) merges the history's rescored items: the same top list as full scoring.
    k = 7
    out = biased.recommend(history, k=k)
    assert [r.score for r in out.items] == pytest.approx(full[[r.item for r in out.items]].tolist(), abs=1e-5)
    assert min(r.score for r in out.items) >= float(torch.topk(full, k + 1).values[-1]) - 1e-5
    top_history = {r.item for r in out.items[:int(seen.sum())]}
    assert (top_history == set(history)) == (bias > 0)  # raised to the top, or pushed out of it
    if bias < 0:
        assert not top_history & set(history)
    # With a target, and with 0% of it revealed, the rank is the one full scoring gives.
    rank = int(rank_of_targets(full[None], [case.target])[0])
    assert biased.recommend(history, k=k, target=case.target).target_rank == rank
    assert biased.reveal_curve(history, case.target, [0.0])[0] == rank
    assert biased.recommend(history, k=k, target=case.target, reveal=0.0).target_rank == rank


def _kept_fit(*args, **kwargs) -> dict:
    """The history-kept fit of jepa4rec.priors, its priors spelled out."""
    from jepa4rec.priors import fit_score_priors, fit_summary

    return fit_summary(fit_score_priors(*args, **kwargs)["kept"])


@pytest.mark.slow
def test_fit_repeat_bias_learns_from_held_out_purchases_whether_people_rebuy(rec):
    from jepa4rec.data.dataset import EvalCase

    fit_repeat_bias = _kept_fit

    cases = rec.dataset.valid_cases()
    never = [c for c in cases if c.target not in c.history]
    always = [EvalCase(c.user, list(c.history), c.history[-1]) for c in cases]  # the next purchase repeats the last
    low, high = fit_repeat_bias(rec, never), fit_repeat_bias(rec, always)
    assert low["popularity_bias"] == high["popularity_bias"] == 0.0 and low["fitted"] == ["repeat_bias"]
    assert low["repeat_bias"] < 0 < high["repeat_bias"]
    assert low["repeat_share"] == 0.0 and high["repeat_share"] == 1.0
    for fit in (low, high):
        assert fit["loss_after"] < fit["loss_before"] and fit["users"] == len(never if fit is low else always)
    assert high["after"]["Recall@10"] >= high["before"]["Recall@10"]
    assert rec.repeat_bias == 0.0  # fitting leaves the model's own bias alone


def test_item_log_popularity_counts_the_given_sequences_only():
    from jepa4rec.evaluation import item_log_popularity

    got = item_log_popularity([[0, 2, 2], [2, 3], []], 5)
    assert torch.allclose(got, torch.log1p(torch.tensor([1.0, 0.0, 3.0, 1.0, 0.0])))


def test_popularity_bias_adds_weighted_log_counts_on_every_path(finetuned, toy):
    cfg, _ = finetuned
    ds = load_dataset(toy)
    plain = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False)
    biased = Recommender.from_pretrained(f"{cfg.output_dir}/best", ds, use_cache=False)
    biased.popularity_bias = 0.2
    counts = torch.zeros(ds.n_items)
    for seq in ds.train_sequences():  # the training split only: no validation or test target is counted
        for i in seq:
            counts[i] += 1
    assert counts.max() > counts.min()
    case = ds.test_cases()[3]
    history = list(case.history)
    full = biased.score_all([history])[0]
    assert torch.allclose(full - plain.score_all([history])[0], 0.2 * torch.log1p(counts), atol=1e-5)
    # With no target the top list is full scoring's (the cosine index alone would miss the prior).
    k = 7
    out = biased.recommend(history, k=k)
    assert [r.item for r in out.items] == torch.topk(full, k).indices.tolist()
    rank = int(rank_of_targets(full[None], [case.target])[0])
    assert biased.recommend(history, k=k, target=case.target).target_rank == rank
    assert biased.reveal_curve(history, case.target, [0.0])[0] == rank
    # Revealing the target's words fades the priors by (1 - share): all words shown, the text alone ranks.
    for reveal in (0.5, 1.0):
        share = biased.revealed_share(case.target, reveal)
        moved = biased.reveal_scores([history], [case.target], reveal)[0] - plain.reveal_scores([history], [case.target], reveal)[0]
        assert torch.allclose(moved, (1 - share) * 0.2 * torch.log1p(counts), atol=1e-5)
    assert biased.reveal_curve(history, case.target, [1.0]) == plain.reveal_curve(history, case.target, [1.0])


@pytest.mark.slow
def test_fit_score_priors_weighs_popularity_as_held_out_purchases_do(rec):
    from jepa4rec.data.dataset import EvalCase

    fit_score_priors = _kept_fit

    cases = rec.dataset.valid_cases()
    pop = rec.log_popularity.cpu()
    most, least = int(pop.argmax()), int(pop.argmin())
    best_sellers = [EvalCase(c.user, list(c.history), most) for c in cases]
    long_tail = [EvalCase(c.user, list(c.history), least) for c in cases]
    high, low = (fit_score_priors(rec, cs, log_popularity=pop) for cs in (best_sellers, long_tail))
    assert low["popularity_bias"] < 0 < high["popularity_bias"]
    assert high["fitted"] == ["repeat_bias", "popularity_bias"] and high["loss_after"] < high["loss_before"]
    # A repeat bias given is held (a learned one), and only the popularity bias is fitted.
    held = fit_score_priors(rec, best_sellers, log_popularity=pop, repeat_bias=0.3)
    assert held["repeat_bias"] == pytest.approx(0.3) and held["fitted"] == ["popularity_bias"] and held["popularity_bias"] > 0
    assert rec.repeat_bias == rec.popularity_bias == 0.0  # fitting leaves the model's own priors alone


def _stored_priors(folder) -> dict:
    """The score priors a model directory stores (in its weights, the model's score_priors)."""
    from jepa4rec.checkpoint import load_model_dir

    return load_model_dir(folder)[0].score_priors.to_dict()


@pytest.mark.slow
def test_calibrate_popularity_writes_both_priors(finetuned, toy, tmp_path, capsys, monkeypatch):
    from jepa4rec.calibrate import main
    from jepa4rec.evaluation import evaluate
    from jepa4rec.paths import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # encode afresh: see the test below
    cfg, _ = finetuned
    out = tmp_path / "priors"
    assert main(["--checkpoint", f"{cfg.output_dir}/best", "--dataset", toy, "--output", str(out), "--popularity"]) == 0
    assert "popularity bias" in capsys.readouterr().out
    fit = json.loads((out / "training_card.json").read_text())["repeat_bias_fit"]
    stored = _stored_priors(out)  # in the weights: the config holds the architecture only
    assert stored["popularity_bias"] == fit["popularity_bias"] != 0 and stored["repeat_bias"] == fit["repeat_bias"]
    assert "repeat_bias" not in json.loads((out / "config.json").read_text())
    ds = load_dataset(toy)
    calibrated = Recommender.from_pretrained(out, ds, use_cache=False)
    assert calibrated.popularity_bias == fit["popularity_bias"]
    valid = evaluate(calibrated, ds.valid_cases(), progress=False)
    assert valid["NDCG@10"] == pytest.approx(fit["after"]["NDCG@10"], abs=1e-6)


def test_calibrate_writes_a_model_directory_that_scores_with_its_bias(finetuned, toy, tmp_path, capsys, monkeypatch):
    from jepa4rec.calibrate import main
    from jepa4rec.evaluation import evaluate
    from jepa4rec.paths import CACHE_ENV

    # The toy model gives items of one theme the same vector, so its targets tie exactly with other items.
    # Item vectors that an earlier test cached (with another thread count or batch) can differ from fresh
    # ones in the last bit, which breaks those ties apart: here the fit and the reload both encode afresh.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    cfg, _ = finetuned
    out = tmp_path / "calibrated"
    assert main(["--checkpoint", f"{cfg.output_dir}/best", "--dataset", toy, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "repeat bias" in printed and f"wrote {out}" in printed
    card = json.loads((out / "training_card.json").read_text())
    fit = card["repeat_bias_fit"]
    assert fit["split"] == "valid" and fit["users"] == len(load_dataset(toy).valid_cases())
    assert _stored_priors(out)["repeat_bias"] == fit["repeat_bias"] != 0
    assert is_model_dir(f"{cfg.output_dir}/best")  # the source is left as it was
    assert _stored_priors(f"{cfg.output_dir}/best")["repeat_bias"] == 0.0
    ds = load_dataset(toy)
    calibrated = Recommender.from_pretrained(out, ds, use_cache=False)
    assert calibrated.repeat_bias == fit["repeat_bias"]
    # Its validation metrics are the ones the fit reported after the bias.
    valid = evaluate(calibrated, ds.valid_cases(), progress=False)
    assert valid["NDCG@10"] == pytest.approx(fit["after"]["NDCG@10"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mode,popularity", [("learn", "none"), ("fit", "none"), ("learn", "fit")])
def test_finetuning_learns_or_fits_the_repeat_bias_and_tests_with_it(finetuned, toy, tmp_path, mode, popularity):
    from jepa4rec.evaluation import evaluate

    cfg = replace(finetuned[0], output_dir=str(tmp_path / mode), epochs=2, repeat_bias=mode, popularity_bias=popularity)
    result = finetune(cfg)
    priors = _stored_priors(tmp_path / mode / "best")
    stored = priors["repeat_bias"]
    assert result["repeat_bias"] == stored != 0.0
    assert result["popularity_bias"] == priors["popularity_bias"]
    assert (result["popularity_bias"] != 0.0) == (popularity == "fit")
    if mode == "fit":
        assert result["repeat_bias_fit"]["repeat_bias"] == stored and result["repeat_bias_fit"]["split"] == "valid"
    else:
        assert ("repeat_bias_fit" in result) == (popularity == "fit")
        assert abs(stored) < 1.0  # moved by the optimizer, lr-sized steps; a popularity fit keeps it
        assert result["history"][result["best_epoch"]]["repeat_bias"] == stored  # the best epoch's value is kept
    ds = load_dataset(toy)
    best = Recommender.from_pretrained(tmp_path / mode / "best", ds, use_cache=False)
    assert best.repeat_bias == stored
    assert evaluate(best, ds.test_cases(), progress=False)["NDCG@10"] == pytest.approx(result["test"]["NDCG@10"], abs=1e-6)
    with pytest.raises(Exception, match="repeat_bias"):
        replace(cfg, repeat_bias="always")
    with pytest.raises(Exception, match="popularity_bias"):
        replace(cfg, popularity_bias="learn")  # the training targets are in the counts: fitted only


def test_fit_predictor_changes_only_ffn2_and_ranks_revealed_targets_better(finetuned, toy, tmp_path, capsys):
    """``python -m jepa4rec.fit_predictor`` on the toy model: FFN2 alone is trained (every other tensor is copied
    bit for bit, so history-only rankings stay), the epoch kept is the best on validation, and the predictor
    then ranks partly revealed targets better than the one fine-tuning left."""
    from safetensors.torch import load_file

    from jepa4rec.checkpoint import weight_files
    from jepa4rec.fit_predictor import main

    cfg, _ = finetuned
    src, out = f"{cfg.output_dir}/best", tmp_path / "fitted"
    assert main(["--checkpoint", src, "--dataset", toy, "--output", str(out), "--epochs", "8", "--patience", "8",
                 "--cuts-per-user", "4", "--valid-users", "0"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    def weights(path):
        return {k: v for f in weight_files(path) for k, v in load_file(str(f)).items()}

    before, after = weights(src), weights(out)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("next_item_predictor.") for k in changed), sorted(changed)

    fit = json.loads((out / "training_card.json").read_text())["predictor_fit"]
    assert fit["valid_users"] == len(load_dataset(toy).valid_cases()) and 1 <= fit["best_epoch"] <= 8, fit
    best = fit["epochs"][fit["best_epoch"] - 1]["valid_mean"]
    assert best == max(e["valid_mean"] for e in fit["epochs"])
    # Some epoch beat the predictor fine-tuning left (best_epoch 0 would mean none did). The toy cannot show
    # "above the history alone": its history already names the theme, and a theme's items read alike.
    mean = lambda curve: sum(curve.values()) / len(curve)  # noqa: E731
    assert mean(fit["valid_mrr_after"]) == pytest.approx(best) and best > mean(fit["valid_mrr_before"]), fit

    ds = load_dataset(toy)
    old, new = (Recommender.from_pretrained(p, ds, use_cache=False) for p in (src, out))
    histories = [c.history for c in ds.test_cases()[:10]]
    assert torch.equal(old.score_all(histories), new.score_all(histories))

    # Shipped, its model card says what the fit did.
    from commands import load_script

    assert load_script("build_demo_checkpoint").main([str(out), str(tmp_path / "shipped"), "--command", "x"]) == 0
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "next-item predictor (FFN2) refitted, encoder fixed" in card
    assert f"best epoch {fit['best_epoch']}" in card and f"{fit['valid_mrr_after']['1.00']:.4f}" in card


def test_finetune_with_fit_predictor_writes_the_fitted_predictor_into_best_and_its_results(finetuned, tmp_path):
    """``fit_predictor: true``: after training, FFN2 is fitted on the fixed encoder and written into best/; the
    test (history only) is the one of the encoder fine-tuning left, and results.json carries the fit."""
    cfg, _ = finetuned
    # The fixture run's vocabulary: two trainings of one would differ (huggingface/tokenizers#1794).
    run = replace(cfg, output_dir=str(tmp_path / "run"), epochs=1, patience=1, fit_predictor=True,
                  tokenizer=f"{cfg.output_dir}/best")
    result = finetune(run)
    fit = result["predictor_fit"]
    card = json.loads((tmp_path / "run" / "best" / "training_card.json").read_text())
    assert card["predictor_fit"]["best_epoch"] == fit["best_epoch"] and card["test"] == result["test"]
    assert sum(fit["valid_mrr_after"].values()) >= sum(fit["valid_mrr_before"].values())
    plain = finetune(replace(run, output_dir=str(tmp_path / "plain"), fit_predictor=False))
    assert "predictor_fit" not in plain and plain["test"] == result["test"]
