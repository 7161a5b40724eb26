"""Adapting the pre-trained model to a shop's own purchases: trained within a budget, kept, reloaded, ranked."""
from __future__ import annotations

import torch

from jepa4rec.adaptation import ADAPTER_DIR, adapt, load_adapter, save_adapted
from jepa4rec.baselines import SASRecConfig
from jepa4rec.checkpoint import is_model_dir
from jepa4rec.evaluation import evaluate
from jepa4rec.recommender import Recommender

TINY = SASRecConfig(hidden_size=16, n_layers=1, max_len=10, epochs=3, patience=3, device="cpu")


def shop_files(ds, folder):
    """``ds`` as a shop would upload it: an item file and a purchase file (user, item, time)."""
    items = folder / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"{k},{a['title']}\n" for k, a in zip(ds.item_keys, ds.items)))
    inters = folder / "orders.csv"
    inters.write_text("user,item,time\n" + "".join(f"{ds.user_keys[u]},{ds.item_keys[i]},{t}\n"
                                                   for u, seq in enumerate(ds.sequences) for t, i in enumerate(seq)))
    return items, inters


def test_adapt_saves_a_model_directory_that_reloads_and_ranks_by_its_adapter(rec, tmp_path):
    seen = []
    adapter = adapt(rec, budget_s=60, config=TINY, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3] and adapter.card["best_epoch"] in (1, 2, 3)
    assert adapter.card["stopped"] == "its 3 epochs" and "item_features" not in adapter.state
    folder = save_adapted(rec, adapter, tmp_path / "adapted")
    assert is_model_dir(folder) and (folder / ADAPTER_DIR / "model.safetensors").is_file()
    again = Recommender.from_pretrained(folder, rec.dataset, use_cache=False)
    assert again.adapter is not None and load_adapter(folder).card == adapter.card
    cases = rec.dataset.test_cases()
    direct = evaluate(adapter.for_vectors(rec.unit_item_vectors), cases, progress=False)
    reloaded = evaluate(again, cases, progress=False)
    assert reloaded["NDCG@10"] == direct["NDCG@10"]  # the folder ranks as the trained adapter did
    history = list(cases[0].history)
    top = again.recommend(history, k=5)
    scores = again.score_all([history])[0]
    assert [r.item for r in top.items] == torch.topk(scores, 5).indices.tolist()
    assert rec.adapter is None  # the base model's own directory ranks by cosine: no adapter there


def test_a_budget_or_a_cancel_stops_adaptation_after_an_epoch_and_keeps_the_best(rec):
    calls = {"n": 0}

    def cancel_after_one() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    adapter = adapt(rec, budget_s=60, config=SASRecConfig(**{**TINY.__dict__, "epochs": 50}), cancelled=cancel_after_one)
    assert adapter.card["stopped"] == "cancelled" and adapter.card["epochs_run"] == 2
    spent = adapt(rec, budget_s=0.0, config=SASRecConfig(**{**TINY.__dict__, "epochs": 50}))
    assert spent.card["stopped"] == "the 0 s budget" and spent.card["epochs_run"] == 1


def test_the_scoreboard_is_what_evaluate_gives_on_the_same_split(rec, tmp_path):
    from jepa4rec.priors import evaluate_on_equal_terms
    from jepa4rec.scoreboard import scoreboard

    adapted = Recommender(rec.model, rec.tok, rec.dataset, use_cache=False)
    adapted.adapter = adapt(rec, budget_s=60, config=TINY)
    board = scoreboard(rec, adapted, batch_size=16)
    models = [r["model"] for r in board["rows"]]
    assert models == ["popularity (the shop's best-sellers)", "JEPA4Rec, zero-shot", "JEPA4Rec, zero-shot + score priors",
                      "adapted", "adapted + score priors"]
    assert board["users"] == len(rec.dataset.test_cases()) and set(board["paired"]) == {"kept", "excluded"}
    direct = evaluate_on_equal_terms(rec, rec.dataset.test_cases(), rec.dataset.valid_cases(), rec.log_popularity.cpu())
    zs = board["rows"][1]["cells"]
    assert abs(zs["kept"]["NDCG@10"] - direct["cells"]["kept"]["NDCG@10"]) < 1e-6
    assert abs(board["rows"][2]["cells"]["excluded"]["MRR"] - direct["cells"]["excluded_priors"]["MRR"]) < 1e-6
    assert abs(board["paired"]["kept"]["b_value"] - board["rows"][4]["cells"]["kept"]["NDCG@10"]) < 1e-12


def test_an_adapted_model_for_an_uploaded_catalogue_is_reproduced_by_the_evaluate_command(rec, tmp_path, capsys):
    """The scoreboard of a shop's upload, reproduced by command from the downloaded folder and the shop's files."""
    import json

    from jepa4rec.evaluate import main
    from jepa4rec.scoreboard import scoreboard

    ds = rec.dataset
    items, inters = shop_files(ds, tmp_path)
    # The command's --batch-size below: in fp32 the batch a catalogue item is encoded in moves its vector by ~5e-7
    # (another padded length), enough to swap near-tied items; at one batch size the two paths agree bit for bit.
    shop = Recommender.from_catalogue(rec, items, inters, batch_size=16)
    adapted = Recommender.from_catalogue(rec, items, inters, batch_size=16)
    adapted.adapter = adapt(shop, budget_s=60, config=TINY)
    board = scoreboard(shop, adapted, batch_size=16)
    folder = save_adapted(adapted, adapted.adapter, tmp_path / "take-home")
    out = tmp_path / "r.jsonl"
    assert main(["--checkpoint", str(folder), "--items", str(items), "--interactions", str(inters), "--priors", "fit",
                 "--out", str(out), "--batch-size", "16"]) == 0
    record = json.loads(out.read_text())
    for cell in ("kept", "excluded"):
        assert abs(record["cells"][cell]["NDCG@10"] - board["rows"][3]["cells"][cell]["NDCG@10"]) < 1e-6
        assert abs(record["cells"][f"{cell}_priors"]["MRR"] - board["rows"][4]["cells"][cell]["MRR"]) < 1e-6


def test_a_scoreboard_of_the_first_customers_is_what_evaluate_max_users_gives(rec, finetuned, tmp_path):
    """The app scores the first N customers by default; `evaluate --max-users N --priors fit` fits and tests on
    the same customers, so the two agree, and the sample is not the whole."""
    import json

    from jepa4rec.evaluate import main
    from jepa4rec.scoreboard import scoreboard

    ds = rec.dataset
    items, inters = shop_files(ds, tmp_path)
    shop = Recommender.from_catalogue(rec, items, inters, batch_size=16)  # the command's, as above
    n = len(ds.test_cases()) // 2
    board = scoreboard(shop, batch_size=16, max_users=n)
    assert board["users"] == n and board["all_users"] == ds.n_users > n
    out = tmp_path / "r.jsonl"
    assert main(["--checkpoint", f"{finetuned[0].output_dir}/best", "--items", str(items), "--interactions", str(inters),
                 "--priors", "fit", "--max-users", str(n), "--out", str(out), "--batch-size", "16"]) == 0
    record = json.loads(out.read_text())
    assert record["users"] == n
    for cell in ("kept", "excluded"):
        for metric in ("NDCG@10", "MRR"):
            assert abs(record["cells"][cell][metric] - board["rows"][1]["cells"][cell][metric]) < 1e-6
            assert abs(record["cells"][f"{cell}_priors"][metric] - board["rows"][2]["cells"][cell][metric]) < 1e-6
    full = scoreboard(shop, batch_size=16)
    assert full["users"] == ds.n_users and full["rows"][1]["cells"] != board["rows"][1]["cells"]


def test_without_a_config_two_shapes_race_and_the_better_one_goes_on(rec, monkeypatch):
    import dataclasses

    from jepa4rec import adaptation

    tiny = dataclasses.replace(TINY, epochs=6, patience=6)
    monkeypatch.setattr(adaptation, "CANDIDATES", (dataclasses.replace(tiny, text_skip=True), tiny))
    seen = []
    adapter = adapt(rec, budget_s=60, on_epoch=seen.append)
    card = adapter.card
    assert [r["shape"] for r in card["race"]] == ["text skip + sequence", "sequence"]
    assert all(r["epochs"] <= adaptation.RACE_EPOCHS for r in card["race"])
    winner = max(card["race"], key=lambda r: r["best_valid_NDCG@10"])
    assert card["shape"] == winner["shape"] and adapter.config.text_skip == (winner["shape"] != "sequence")
    assert [r["epoch"] for r in seen] == list(range(1, len(seen) + 1)) == [r["epoch"] for r in card["valid_curve"]]
    assert card["epochs_run"] == len(seen) > sum(r["epochs"] for r in card["race"])  # the winner went on
    assert card["best_valid"]["NDCG@10"] >= winner["best_valid_NDCG@10"]
    ranked = adapter.for_vectors(rec.unit_item_vectors)  # the kept weights fit the chosen shape
    assert ranked.score_all([[0, 1]]).shape == (1, rec.dataset.n_items)
