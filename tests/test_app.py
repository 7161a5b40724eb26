"""The app: handlers as plain functions, the named API through gradio_client, and a real browser.

The app is served from a temporary checkpoints folder holding the toy fine-tuned model (a real
trained checkpoint, see conftest) and the toy dataset, so nothing here needs the network.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app import handlers as H
from app import maps
from app import plots  # noqa: F401 -- as app.main does, before any service thread: plotly (and narwhals, which
# scikit-learn imports too) loaded here, not by a test while a background map thread imports scikit-learn
# (two threads importing narwhals at once raised a _DeadlockError)
from app.service import AppService
from commands import ROOT, command_env

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def toy2(tmp_path_factory):
    """A second toy catalogue, for dataset switches and the resident-dataset limit."""
    from toy_corpus import write_domain

    return str(write_domain(tmp_path_factory.mktemp("toy2") / "Toy2", seed=11, n_users=40, n_items=36))


@pytest.fixture(scope="module")
def service(finetuned, toy, toy2, tmp_path_factory):
    cfg, _ = finetuned
    ckpts = tmp_path_factory.mktemp("checkpoints")
    shutil.copytree(f"{cfg.output_dir}/best", ckpts / "toy-model")
    (ckpts / "index.json").write_text(json.dumps({"default": "toy-model", toy: "toy-model"}))
    # Models to compare with: the same toy model standing in for the RecFormer-style one, and a small
    # SASRec really trained on the toy catalogue.
    from jepa4rec.baselines import SASRecConfig, save_sasrec, train_sasrec
    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import catalogue_digest

    ds = load_dataset(toy)
    sasrec, _ = train_sasrec(ds, SASRecConfig(hidden_size=16, n_layers=1, max_len=10, epochs=2, device="cpu"),
                             progress=False)
    save_sasrec(sasrec, ckpts / "sasrec-toy", card={"dataset": ds.name, "catalogue_digest": catalogue_digest(ds.items),
                                                   "test": {"NDCG@10": 0.1234}})
    (ckpts / "compare.json").write_text(json.dumps({"RecFormer-style": {"default": "toy-model"},
                                                    "SASRec": {toy: "sasrec-toy"}}))
    results = tmp_path_factory.mktemp("results")
    (results / "reveal_curve.csv").write_text(
        "model,dataset,metric,reveal,value\n" + "\n".join(
            f"JEPA4Rec,Toy,Recall@10,{r / 10},{0.1 + r / 20}" for r in range(11)) + "\n")
    (results / "reveal_curve.json").write_text(json.dumps({"config": {"users": 10}, "seconds": 1.0}))  # metadata sidecar
    (results / "ablations.csv").write_text("not,the,expected,columns\n1,2,3,4\n")  # malformed: a message, no crash
    (results / "zeroshot.json").write_text(json.dumps({  # the zero-shot experiment's figure for toy2 (Fig. 4)
        "meta": {"checkpoints": {"JEPA4Rec": "checkpoints/toy-model"}},
        "rows": [{"dataset": toy2, "model": "JEPA4Rec", "metric": "NDCG@10", "value": 0.04}]}))
    return AppService(checkpoints_dir=ckpts, results_dir=results, datasets=[toy, toy2], device="cpu", max_resident=1)


@pytest.fixture()
def served(service, toy):
    return service.get(toy)


def test_search_add_move_remove(served):
    hits = H.search_catalogue(served, "red guitar")
    titles = served.recommender.titles
    assert hits and all("red guitar" in titles[i] for i in hits)
    assert H.search_catalogue(served, "") == [] and H.search_catalogue(served, "no such words") == []
    labels = [label for label, _ in H.item_choices(served, hits)]
    assert all("#" not in label for label in labels)  # no internal ids on screen
    a, b = hits[0], hits[1]
    hist, note = H.add_item(served, [], a)
    hist, note = H.add_item(served, hist, b)
    assert hist == [a, b] and note is None
    assert H.move_item(hist, 2, -1) == [b, a] and H.move_item(hist, 1, -5) == [a, b]
    assert H.remove_item(hist, 1) == [b]
    table = H.history_table(served, hist)
    assert list(table["#"]) == [1, 2] and table.iloc[0, 1] == titles[a]


def test_every_bad_input_has_a_sentence(service, served):
    n = served.dataset.n_items
    cases = [
        (lambda: H.add_item(served, [1], None), "Nothing is selected"),
        (lambda: H.add_item(served, [1], n + 5), f"not in .*catalogue \\(ids 0..{n - 1}\\)"),
        (lambda: H.remove_item([1, 2], 999), "Row # 999 is not in the history \\(rows 1..2\\)"),
        (lambda: H.move_item([], 1, 1), "history is empty"),
        (lambda: H.move_item([1], "x", 1), "Row # must be a whole number"),
        (lambda: H.load_user(served, 99_999), "there is no user 99999"),
        (lambda: H.load_user(served, -1), "there is no user -1"),
        (lambda: H.load_user(served, 3.7), "whole number"),
        (lambda: H.load_user(served, None), "Enter a user number"),
        (lambda: H.api_recommend(served, [1, -1]), "history item -1 is not in"),
        (lambda: H.api_recommend(served, "1,2"), "history must be a list"),
        (lambda: H.api_recommend(served, [1], target=2, k=100_000), "k must be within 1..100"),
        (lambda: H.api_recommend(served, [1], reveal=0.5), "reveal needs a target"),
        (lambda: H.api_recommend(served, [1], target=2, reveal=7), "reveal must be within 0..1"),
        (lambda: H.api_search(served, "red", 0), "limit must be within"),
        # Not truncated to 2 (or 1) without a word, no OverflowError on inf.
        (lambda: H.api_recommend(served, [1], k=float("inf")), "k must be a whole number 1..100, got inf"),
        (lambda: H.api_recommend(served, [1], k=2.7), "k must be a whole number 1..100, got 2.7"),
        (lambda: H.api_search(served, "red", 2.5), "limit must be a whole number 1..100, got 2.5"),
        (lambda: H.remove_item([1, 2, 3], float("inf")), "Row # must be a whole number 1..3, got inf"),
        (lambda: H.remove_item([1, 2, 3], 1.7), "Row # must be a whole number 1..3, got 1.7"),
        (lambda: H.move_item([1, 2, 3], 2.9, -1), "Row # must be a whole number 1..3, got 2.9"),
        # One history check for every view: None, a string (read letter by letter), an id of another catalogue.
        (lambda: H.rank_view(served, None, None, 0), "history must be a list of item ids, got NoneType"),
        (lambda: H.rank_view(served, [5000, 3], None, 0), f"history item 5000 is not in .*\\(ids 0..{n - 1}\\)"),
        (lambda: H.rank_view(served, [-1, 3], None, 0), "history item -1 is not in"),
        (lambda: H.rank_view(served, [3], n, 0), f"target {n} is not in"),
        (lambda: H.explain_item(served, "12", 3), "history must be a list of item ids, got str"),
        (lambda: H.explain_item(served, [n], 3), f"history item {n} is not in"),
        (lambda: H.new_item_view(served, "12", {"title": "x"}), "history must be a list of item ids, got str"),
        (lambda: H.new_item_view(served, [-1], {"title": "x"}), "history item -1 is not in"),
        (lambda: H.compare_view(service, served.name, [n + 5]), f"history item {n + 5} is not in"),
        (lambda: H.compare_view(service, served.name, None), "history must be a list of item ids"),
    ]
    for call, message in cases:
        with pytest.raises(H.UserInputError, match=message):
            call()
    long, note = list(range(H.MAX_HISTORY)), None
    long, note = H.add_item(served, long, 3)
    assert len(long) == H.MAX_HISTORY and long[-1] == 3 and "oldest" in note and "dropped" in note


def test_rank_view_shows_history_only_beside_revealed(served):
    history, target = H.load_user(served, 0)
    case = served.dataset.test_cases()[0]
    assert history == case.history[-20:] and target == case.target
    none = H.rank_view(served, history, None, 0)
    assert none.revealed is None and "No target chosen" in none.summary
    zero = H.rank_view(served, history, target, 0)
    # At 0% the default scoring is the history-only ranking: same list, same target rank.
    assert [r["item"] for r in zero.revealed] == [r["item"] for r in zero.history_only]
    assert zero.target_rank_revealed == zero.target_rank_history and "0% is the history-only ranking" in zero.summary
    full = H.rank_view(served, history, target, 100)
    assert full.target_rank_revealed <= zero.target_rank_history and full.revealed_words
    assert not set(history) & {r["item"] for r in full.history_only}  # repeats are off by default here
    repeats = H.rank_view(served, history, target, 100, allow_repeats=True)
    assert len(repeats.history_only) == 10
    mapped = H.rank_view(served, history, target, 0, scoring="next-item predictor (paper's FFN2)")
    assert "not the history-only ranking" in mapped.summary
    html = H.top_table_html(full.revealed, "With 100%", [r["item"] for r in full.history_only])
    assert html.count("<tr") == 11 and "class='num'" in html and "<th class='num move'>move</th>" in html
    assert H.top_table_html([{"rank": 1, "item": 0, "title": "<b>x</b>", "score": 0.5, "target": True}], "t") \
        .count("&lt;b&gt;") == 1  # titles are escaped
    curve = H.reveal_curve(served, history, target)
    assert list(curve["reveal %"]) == list(range(0, 101, 10))
    assert curve["target rank"].iloc[0] == zero.target_rank_history


def test_about_tab_states_the_model_and_its_repeat_bias(service, served):
    from app.ui import about_markdown

    priors = served.recommender.priors  # the model's score_priors, in its weights
    assert "Repeat bias" not in about_markdown(service, served.name) and "Encoder: Longformer-style" in about_markdown(service, served.name)
    saved = priors.repeat_bias, priors.popularity_bias
    priors.repeat_bias, priors.popularity_bias = -0.25, 0.03
    try:
        text = about_markdown(service, served.name)
    finally:
        priors.repeat_bias, priors.popularity_bias = saved
    assert "Repeat bias: -0.250 is added to the score of every item already in the history" in text
    assert "seldom choose the same item again" in text
    assert "Popularity bias: +0.030 × log(1 + times bought in the training split)" in text


def test_about_tab_states_a_recency_models_learned_decay():
    import math

    import torch

    from app.ui import pooling_detail
    from jepa4rec.modeling import JEPA4RecModel, JepaConfig

    kw = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    assert pooling_detail(JEPA4RecModel(JepaConfig(**kw, pooling="mean"))) == ""
    model = JEPA4RecModel(JepaConfig(**kw, pooling="recency"))
    with torch.no_grad():
        model.encoder.recency_decay.fill_(math.log(2))
    assert pooling_detail(model) == " (λ = 0.693: the item before the last weighs 0.50, the tenth last 0.00)"


def test_clean_words_and_badge(served):
    assert H.clean_words(["(Pack", "3)", "Wars,", "--", "x"]) == ["Pack", "3", "Wars", "x"]
    badge = H.badge_markdown(served)
    assert "Fine-tuned on" in badge and "popularity" in badge and "NDCG@10" in badge


def test_movement_labels():
    assert H.movement([], 3, 1) == ""
    assert H.movement([5, 3], 3, 1) == "▲1" and H.movement([3, 5], 3, 2) == "▼1"
    assert H.movement([3], 3, 1) == "=" and H.movement([4], 3, 1) == "new"


@pytest.mark.slow
def test_item_groups_skip_shared_prefix_and_fall_back_to_clusters(served):
    items = [{"categories": f"Shop, Top, Kind{i % 3}, Leaf{i}"} for i in range(30)] + [{"genres": "Drama, War"}]
    groups = maps.item_groups(items)
    assert groups[:4] == ["Kind0", "Kind1", "Kind2", "Kind0"] and groups[-1] == "Drama"
    words = [{"categories": f"Industrial & Scientific Lab Tools {'Glass' if i % 2 else 'Metal'} x{i}"} for i in range(10)]
    assert maps.item_groups(words)[:2] == ["Metal x0", "Glass x1"] or set(maps.item_groups(words)) <= {"other"} | {
        f"{'Glass' if i % 2 else 'Metal'} x{i}" for i in range(10)}
    assert maps.item_groups([{"title": "a"}, {"title": "b"}]) is None  # titles only: the map uses clusters
    vectors = served.recommender.unit_item_vectors.numpy()
    clusters = maps.cluster_groups(vectors, served.recommender.titles, n_clusters=4)
    assert len(clusters) == len(vectors) and 1 < len(set(clusters)) <= 4 and all(c.startswith("≈ ") for c in clusters)


RACE = """
import threading, traceback
from app.maps import import_library  # loads what the app has loaded when a map is first asked for
errors = []
def run(name):
    try:
        import_library(name)
    except Exception:
        errors.append(traceback.format_exc())
thread = threading.Thread(target=run, args=("umap",))  # the background map fit
thread.start()
run("sklearn.cluster")  # a visitor's map tab, clustering a catalogue with no categories
thread.join()
print(len(errors), *errors)
"""


@pytest.mark.slow
def test_two_threads_importing_umap_and_scikit_learn_at_once_both_succeed():
    """Fresh interpreters: without the import lock, 4 runs in 5 failed here with "cannot import name 'clone'
    from partially initialized module 'sklearn.base'" in one or both threads."""
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, env=command_env(), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.startswith("0"), done.stdout + done.stderr


def test_clusters_of_items_sharing_a_text_stay_quiet():
    """Items with the same text share a vector: no more clusters than distinct vectors, no k-means warning."""
    import warnings

    import numpy as np

    vectors = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 12 items, 3 distinct vectors
    titles = [f"{w} item" for w in ("red", "green", "blue") for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clusters = maps.cluster_groups(vectors, titles, n_clusters=12)
    assert sorted(set(clusters)) == ["≈ blue item", "≈ green item", "≈ red item"]


def test_only_max_resident_datasets_stay_loaded(service, toy, toy2):
    service.get(toy)
    assert service.resident() == [toy]
    served2 = service.get(toy2)
    assert service.resident() == [toy2] and served2.mode == "zero-shot"
    # Its training card has no zero-shot figure for toy2: the badge shows the Experiments tab's one.
    assert served2.model_test_metrics() == {"NDCG@10": 0.04} and "test NDCG@10 **0.0400**" in H.badge_markdown(served2)
    calls = []
    service.get(toy, progress=lambda f, what: calls.append((f, what)))
    assert service.resident() == [toy] and calls[0][0] == 0.0 and calls[-1] == (1.0, "ready")
    assert any("encoding" in what for _, what in calls) or any("loading" in what for _, what in calls)


def test_experiment_files_sidecars_and_bad_files(service):
    from app.ui import build_demo

    assert service.result_file("reveal_curve").suffix == ".csv"
    assert service.result_file("masking_ratio") is None
    build_demo(service)  # a malformed ablations.csv is reported on the page, not raised


SHOP = "id,title,colour\n" + "".join(f"s{i},{t} lamp {i},{c}\n" for i, (t, c) in enumerate(
    [("brass desk", "gold"), ("paper floor", "white"), ("glass table", "clear")] * 4))


@pytest.mark.slow
def test_a_visitors_catalogue_is_served_to_them_and_dropped_when_they_leave(service, tmp_path):
    from jepa4rec.data import DataFormatError

    f = tmp_path / "shop.csv"
    f.write_text(SHOP)
    calls = []
    served = service.add_upload("visitor-1", f, label="shop.csv", progress=lambda p, what: calls.append(what))
    assert served.uploaded and served.dataset.n_items == 12 and served.display_name == "shop.csv"
    assert any("encoding 12 items" in c for c in calls) and calls[-1] == "ready"
    assert service.get(served.name) is served and served.name not in service.dataset_names()
    assert service.add_upload("visitor-1", f) is served  # the same file again: not read twice
    view = H.rank_view(served, [0, 3], 6, 100)
    assert view.target_rank_revealed <= view.target_rank_history
    badge = H.badge_markdown(served)
    assert "Your catalogue" in badge and "no interactions" in badge
    _wait_for_background_maps()
    service.drop_session("visitor-1")
    with pytest.raises(DataFormatError, match="is not available"):
        service.get(served.name)
    bad = tmp_path / "bad.csv"
    bad.write_text("title\nx\n")
    with pytest.raises(DataFormatError, match="no id column"):
        service.add_upload("visitor-2", bad)


def test_api_recommend_json(served):
    history, target = H.load_user(served, 1)
    out = H.api_recommend(served, history, target, 0.5, 5)
    assert len(out["items"]) == 5 and {"item", "key", "title", "score"} <= set(out["items"][0])
    assert 1 <= out["target_rank"] <= served.dataset.n_items and out["history_excluded"] is True
    assert not set(history) & {r["item"] for r in out["items"]}
    json.dumps(out)


def test_a_served_model_remembers_a_history_across_calls(served, monkeypatch):
    """Moving the reveal slider re-encodes the target only: the served Recommender keeps the app's memo (an empty
    memo is falsy, and once was swapped for the library's remember-nothing default)."""
    from app.service import BoundedMemo

    rec = served.recommender
    assert isinstance(rec.memo, BoundedMemo)
    history, target = H.load_user(served, 2)
    calls = []
    original = rec.embed_history
    monkeypatch.setattr(rec, "embed_history", lambda histories: calls.append(len(histories)) or original(histories))
    for reveal in (0.2, 0.6, 1.0):
        H.api_recommend(served, history, target, reveal, 5)
    assert calls in ([], [1])  # encoded at most once (not at all when an earlier test asked for this history)


def test_a_target_in_the_history_competes_and_the_summary_says_so(served):
    """As in `python -m jepa4rec.recommend --target` and the evaluation: with repeats off the other history
    items are left out, the target still competes; its (low) rank comes with the reason."""
    history, _ = H.load_user(served, 1)
    target = history[-1]
    view = H.rank_view(served, history, target, 0)
    n, others = served.dataset.n_items, len(set(history)) - 1
    assert view.target_rank_history is not None and view.target_rank_history <= n - others
    assert "The target is already in the history: it still competes" in view.summary
    assert H.api_recommend(served, history, target)["target_rank"] == view.target_rank_history
    assert "already in the history" not in H.rank_view(served, history[:-1], target, 0).summary


def test_every_comparison_list_leaves_the_history_out_when_k_exceeds_the_items_left(service, toy):
    served = service.get(toy)
    history, _ = H.load_user(served, 4)
    n, left = served.dataset.n_items, served.dataset.n_items - len(set(history))
    view = H.compare_view(service, toy, history, k=n)
    for m in view["models"]:  # none pads its list with history items at -inf
        assert len(m["items"]) == left and not set(m["items"]) & set(history), m["model"]


def test_ui_callbacks_refuse_a_history_of_another_catalogue(service, toy, monkeypatch):
    import gradio as gr

    from app.ui import Callbacks

    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    cb = Callbacks(service, [toy])
    n = service.get(toy).dataset.n_items
    stale = [n + 5, 3]
    cb.refresh(toy, stale, None, 0, "sequential", H.DEFAULT_SCORING, False, False, None)
    cb.refresh(toy, [3], n, 0, "sequential", H.DEFAULT_SCORING, False, False, None)
    cb.explain(toy, stale, 3)
    cb.new_item(toy, stale, "red guitar", "", False)
    cb.compare(toy, stale, False, progress=lambda *a, **k: None)
    cb.open_map(toy, stale, None, [], None, progress=lambda *a, **k: None)
    assert len(warned) == 6 and all("is not in" in w for w in warned), warned


def test_api_endpoints_check_the_history_alike(service, toy):
    import gradio as gr

    from app.api import endpoints

    named = {fn.__name__: fn for fn in endpoints(service)}
    recommend, search, explain, new_item, compare, recommend_catalogue = (
        named[n] for n in ("recommend", "search", "explain", "new_item", "compare", "recommend_catalogue"))
    for call in (lambda h: recommend(toy, h), lambda h: explain(toy, h, 3), lambda h: new_item(toy, h, {"title": "x"}),
                 lambda h: compare(toy, h), lambda h: recommend_catalogue(SHOP, h)):
        for history, kind in ((None, "NoneType"), ("12", "str"), ("s0", "str")):
            with pytest.raises(gr.Error, match=f"history must be a list of item ids, got {kind}"):
                call(history)
    with pytest.raises(gr.Error, match="k must be a whole number 1..100, got inf"):
        recommend_catalogue(SHOP, ["s0"], None, None, float("inf"))
    with pytest.raises(gr.Error, match="limit must be a whole number 1..100, got 2.5"):
        search(toy, "red", 2.5)


def test_a_map_of_one_two_or_three_items_is_drawn(service, tmp_path, caplog):
    import logging

    import numpy as np

    from app.maps import fit_map
    from app.ui import Callbacks

    for n in (0, 1, 2, 3):  # UMAP raises for these: they go on a circle
        coords = fit_map(np.random.default_rng(n).random((n, 8), dtype=np.float32))
        assert coords.shape == (n, 2) and np.isfinite(coords).all()
        assert len({tuple(c) for c in coords.round(6).tolist()}) == n
        assert (fit_map(np.zeros((n, 8), dtype=np.float32)) == coords).all()  # the same layout every time
    f = tmp_path / "two.csv"
    f.write_text("item_id,title\na,Red guitar\nb,Blue drum\n")
    with caplog.at_level(logging.ERROR, logger="app.service"):
        served = service.add_upload("visitor-small", f, label="two.csv")
        _wait_for_background_maps()
        assert service.embedding_map(served.name).shape == (2, 2)
        shown, fig = Callbacks(service, []).open_map(served.name, [0], None, [1], None, progress=lambda *a, **k: None)
        assert shown is True and len(fig.data) >= 2
    assert not [r for r in caplog.records if "embedding map" in r.getMessage()]
    service.drop_session("visitor-small")


def _wait_for_background_maps():
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("map-"):
            thread.join(timeout=120)


def test_a_loaded_dataset_gets_its_map_in_the_background(service, toy2):
    service.get(toy2)
    _wait_for_background_maps()
    assert toy2 in service._maps and toy2 in service._groups


def test_embedding_map_is_cached_and_can_ship(service, toy, tmp_path, monkeypatch):
    service.get(toy)
    _wait_for_background_maps()
    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path))
    service._maps.clear()
    assert not service.has_map(toy)
    coords = service.embedding_map(toy)
    assert coords.shape == (service.get(toy).dataset.n_items, 2) and service.has_map(toy)
    assert len(list((tmp_path / "umap").glob("embedding_map_*.safetensors"))) == 1
    service._maps.clear()
    assert (service.embedding_map(toy) == coords).all()  # read back from disk, not fitted again
    shipped = service.ship_map(toy)
    assert shipped.parent == service.get(toy).checkpoint
    for f in (tmp_path / "umap").glob("*"):
        f.unlink()
    service._maps.clear()
    assert (service.embedding_map(toy) == coords).all()  # from the file beside the checkpoint
    shipped.unlink()


def launch_chromium(pw):
    """Headless Chromium as the browser tests and scripts/screenshot_app.py run it."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(service):
    from app.ui import build_demo

    demo = build_demo(service)
    demo.queue(default_concurrency_limit=4)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.mark.slow
def test_gradio_client_endpoints_are_typed_and_validated(launched, served, toy):
    from gradio_client import Client

    client = Client(launched, verbose=False)
    history, target = H.load_user(served, 2)
    out = client.predict(toy, history, target, 1.0, 3, api_name="/recommend")
    assert len(out["items"]) == 3 and out["target_rank"] >= 1
    hits = client.predict(toy, "blue drum", 5, api_name="/search")
    assert hits and all("blue drum" in h["title"] for h in hits)
    # A bad argument is answered with what is wrong, not "the upstream app raised an exception".
    for args, message in (((toy, [0, -1], None, None, 10), "history item -1"),
                          ((toy, [0], 1, None, 100_000), "k must be within 1..100"),
                          (("Nope", [0], None, None, 10), "unknown dataset 'Nope'")):
        with pytest.raises(Exception, match=message):
            client.predict(*args, api_name="/recommend")
    why = client.predict(toy, history, target, api_name="/explain")
    assert [h["item"] for h in why["history"]] == history and why["words"]
    new = client.predict(toy, history, {"title": "red guitar strap deluxe"}, None, api_name="/new_item")
    assert 1 <= new["rank"] <= new["of"] and len(new["neighbours"]) == 10
    with pytest.raises(Exception, match="no text"):
        client.predict(toy, history, {"title": " "}, None, api_name="/new_item")
    shop = client.predict(SHOP, ["s0", "s3"], "s6", 1.0, 4, "csv", api_name="/recommend_catalogue")
    assert len(shop["items"]) == 4 and shop["catalogue"] == 12 and 1 <= shop["target_rank"] <= 12
    assert not {"s0", "s3"} & {r["id"] for r in shop["items"]}
    with pytest.raises(Exception, match="no id column"):
        client.predict("title\nx\n", ["x"], None, None, 4, "csv", api_name="/recommend_catalogue")
    with pytest.raises(Exception, match="no item with id 'zz'"):
        client.predict(SHOP, ["zz"], None, None, 4, "csv", api_name="/recommend_catalogue")
    # No history, or a string one, is refused alike by every endpoint (no TypeError, no letter-by-letter ids).
    for args, endpoint in (((toy, None, 3), "/explain"), ((toy, "12", {"title": "x"}, None), "/new_item"),
                           ((toy, None, None), "/compare"), ((SHOP, "s0", None, None, 4, "csv"), "/recommend_catalogue")):
        with pytest.raises(Exception, match="history must be a list of item ids"):
            client.predict(*args, api_name=endpoint)
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = {p["parameter_name"]: p for p in info["/recommend"]["parameters"]}
    assert params["history"]["python_type"]["type"] != "Any" and params["k"]["python_type"]["type"] == "int"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_history_reveal_bad_input_map_and_dataset_switch(launched, service, toy, toy2, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    # The second dataset loads slowly enough for its progress to be seen.
    original = service._load

    def slow_load(name, progress):
        if name == toy2:
            import time
            progress(0.0, "reading it slowly")
            time.sleep(3)
        return original(name, progress)

    monkeypatch.setattr(service, "_load", slow_load)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(launched)
        try:
            expect(page.get_by_text("No target chosen")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Fine-tuned on").first).to_be_visible()
            # Build a history: search, pick a match, add it.
            page.get_by_label("Search the catalogue").press_sequentially("green piano", delay=20)
            matches = page.get_by_label("Matches")
            expect(matches).to_be_enabled()
            matches.click()
            page.get_by_test_id("dropdown-option").first.click(timeout=20_000)
            page.get_by_role("button", name="Add to history").click()
            # Other components hold hidden cells with the same text; wait (generously: CI may be loaded) for a visible one.
            expect(page.locator("text=green piano >> visible=true").first).to_be_visible(timeout=20_000)

            # A search with no match says so in the list's label, once (no toast per keystroke).
            page.get_by_label("Search the catalogue").fill("")
            page.get_by_label("Search the catalogue").press_sequentially("qwxz blarg", delay=20)
            expect(page.get_by_text("no title in").first).to_be_visible(timeout=20_000)
            expect(page.locator(".toast-body")).to_have_count(0)
            page.get_by_label("Search the catalogue").fill("")
            # A row 0 is clamped with the app's sentence; 99 is said not to be in the history.
            page.get_by_label("Row #").fill("0")
            page.get_by_label("Row #").blur()
            expect(page.get_by_text("Row # 0 is outside 1..1: set to 1.").first).to_be_visible(timeout=20_000)
            # A bad input: a row that does not exist. The visitor reads why.
            page.get_by_label("Row #").fill("99")
            page.get_by_role("button", name="Remove").click()
            expect(page.get_by_text("Row # 99 is not in the history").first).to_be_visible(timeout=20_000)

            # A real user, then reveal: history-only and revealed rankings side by side.
            page.get_by_role("button", name="Load this user").click()
            expect(page.get_by_text("History alone:").first).to_be_visible(timeout=20_000)
            expect(page.get_by_text("0% is the history-only ranking").first).to_be_visible()
            # Beyond 100: the app's own sentence (not Gradio's error box), and the box clamped to 100.
            page.get_by_label("Reveal % of the target's words").first.fill("150")
            page.keyboard.press("Enter")
            expect(page.get_by_text("Reveal % 150 is outside 0..100: set to 100.").first).to_be_visible(timeout=20_000)
            expect(page.get_by_label("Reveal % of the target's words").first).to_have_value("100", timeout=20_000)
            expect(page.get_by_text("With 100% revealed").first).to_be_visible(timeout=20_000)
            expect(page.get_by_text("From the history alone").first).to_be_visible()
            expect(page.get_by_text("With 100% of the target's words revealed").first).to_be_visible()
            page.wait_for_selector(".js-plotly-plot", state="attached", timeout=30_000)  # the rank-vs-reveal chart
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "recommend_reveal.png"), full_page=True)

            # Why this item: pick the target, read the bars' titles.
            page.get_by_text("Why this item?").click()
            page.get_by_label("An item of the lists above, or the target").click()
            page.get_by_test_id("dropdown-option").first.click(timeout=20_000)
            page.get_by_role("button", name="Explain").click()
            expect(page.get_by_text("each history item left out").first).to_be_visible(timeout=30_000)
            # A brand-new item: its rank and nearest items.
            page.get_by_text("A brand-new item").click()
            page.get_by_label("Title", exact=True).fill("red guitar strap deluxe")
            page.get_by_role("button", name="Rank it").click()
            expect(page.get_by_text("would rank").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Its nearest catalogue items").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "why_and_new_item.png"), full_page=True)

            # Models side by side on the same history.
            page.get_by_role("tab", name="Compare models").click()
            page.get_by_role("button", name="Compare for the current history").click()
            expect(page.get_by_text("Items shared").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("SASRec (fine-tuned").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "compare_models.png"), full_page=True)
            page.get_by_role("tab", name="Recommend & reveal").click()
            # Added to the catalogue for this visitor: the history and target stay, the badge says so.
            page.get_by_role("button", name="Add it to the catalogue (for you only)").click()
            expect(page.get_by_text("+ your items").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("History alone:").first).to_be_visible(timeout=60_000)

            # The map draws when its tab opens, with the history marked.
            page.get_by_role("tab", name="Embedding map").click()
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=60_000)
            expect(page.locator(".legendtext", has_text="history").first).to_be_attached(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "embedding_map.png"), full_page=True)
            page.get_by_role("tab", name="Recommend & reveal").click()

            # Switch dataset: progress shows, the previous dataset's history, target and lists are gone.
            page.get_by_label("Dataset").click()
            page.get_by_test_id("dropdown-option").filter(has_text="Toy2").first.click()
            expect(page.get_by_text("Loading").first).to_be_visible(timeout=10_000)
            expect(page.locator("text=green piano >> visible=true")).to_have_count(0, timeout=10_000)
            expect(page.get_by_text("History alone:")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "dataset_switch_loading.png"), full_page=True)
            expect(page.get_by_text("Zero-shot:").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("No target chosen")).to_be_visible(timeout=30_000)

            # A catalogue of one's own: a bad file is refused with its reason, a good one is served.
            page.get_by_role("tab", name="Your catalogue").click()
            items_file = page.locator("#items-file")
            bad = ARTIFACTS / "no_id.csv"
            bad.write_text("title\nlamp\n")
            with page.expect_file_chooser() as chooser:
                items_file.get_by_text("Click to Upload").click()
            chooser.value.set_files(str(bad))
            # Uploaded: the component lists the file with a download link to it. (Its name is drawn as
            # "no_id .csv", stem and extension apart, so matching the name's text only caught the transient
            # upload view, and failed when the upload outran the check.)
            expect(items_file.locator('a[href$="/no_id.csv"]')).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Use this catalogue").click()
            expect(page.get_by_text("no id column").first).to_be_visible(timeout=30_000)
            shop = ARTIFACTS / "shop.csv"
            shop.write_text(SHOP)
            items_file.get_by_label("Clear").click()  # the File component's own clear button
            # Wait for the emptied component: a slow re-render must not send the file to the interactions box.
            expect(items_file.get_by_text("Click to Upload")).to_be_visible(timeout=30_000)
            with page.expect_file_chooser() as chooser:
                items_file.get_by_text("Click to Upload").click()
            chooser.value.set_files(str(shop))
            expect(items_file.locator('a[href$="/shop.csv"]')).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Use this catalogue").click()
            expect(page.get_by_text("Loaded shop.csv").first).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="Recommend & reveal").click()
            expect(page.get_by_text("Your catalogue").first).to_be_visible(timeout=60_000)
            page.get_by_label("Search the catalogue").press_sequentially("brass desk", delay=20)
            page.get_by_label("Matches").click()
            page.get_by_test_id("dropdown-option").first.click(timeout=20_000)
            page.get_by_role("button", name="Add to history").click()
            expect(page.locator("text=brass desk lamp >> visible=true").first).to_be_visible(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "your_catalogue.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        browser.close()


def test_why_this_item_and_a_new_item(served):
    history, target = H.load_user(served, 3)
    why = H.explain_item(served, history, target)
    assert [h["item"] for h in why["history"]] == history and why["words"]
    with pytest.raises(H.UserInputError, match="history is empty"):
        H.explain_item(served, [], target)
    attrs = H.parse_attributes("red guitar strap deluxe", "colour: red; brand: Acme")
    assert attrs == {"title": "red guitar strap deluxe", "colour": "red", "brand": "Acme"}
    for title, extra, said in (("", "", "Give the new item a title"), ("x", "brand Acme", "is not 'name: value'"),
                               ("x", ": y", "no attribute name")):
        with pytest.raises(H.UserInputError, match=said):
            H.parse_attributes(title, extra)
    view = H.new_item_view(served, history, attrs)
    assert 1 <= view["rank"] <= view["of"] == served.dataset.n_items + 1 and len(view["neighbours"]) == 10
    assert view["popularity_prior"] == bool(served.recommender.popularity_bias) and view["rank_by_text_alone"] is None
    # With a popularity prior on the catalogue, the view also says where the new item ranks by text alone.
    priors = served.recommender.priors
    priors.popularity_bias = 5.0
    try:
        with_prior = H.new_item_view(served, history, attrs)
    finally:
        priors.popularity_bias = 0.0
    assert with_prior["popularity_prior"] and with_prior["rank_by_text_alone"] == view["rank"]
    assert with_prior["rank"] >= view["rank"]  # every popular item pulled past the new one
    cosines = [n["cosine"] for n in view["neighbours"]]
    assert cosines == sorted(cosines, reverse=True) and len({n["item"] for n in view["neighbours"]}) == 10
    # (Whether the nearest shares its words is a matter for a real model: the toy's vectors are nearly parallel.)
    from app.plots import explanation_figure

    fig = explanation_figure(why)
    assert len(fig.data) == 2 and len(fig.data[0].y) == len(history)


def test_models_side_by_side(service, toy, toy2):
    served = service.get(toy)
    history, _ = H.load_user(served, 4)
    assert service.comparison_models(toy) == ["RecFormer-style", "SASRec"]
    view = H.compare_view(service, toy, history)
    names = [m["model"] for m in view["models"]]
    assert names == ["JEPA4Rec", "RecFormer-style", "SASRec"]
    assert all(len(m["items"]) == 10 and not set(m["items"]) & set(history) for m in view["models"])
    sasrec = view["models"][2]
    assert sasrec["ndcg"] == 0.1234 and sasrec["mode"].startswith("fine-tuned")
    # The stand-in RecFormer-style model is the JEPA4Rec checkpoint itself: the same ten items, but for
    # the tenth of a near tie that bf16 encoding in other batches may swap (seen once in CI: 9 of 10).
    assert view["overlaps"]["JEPA4Rec & RecFormer-style"] >= 9
    html = H.compare_html(view)
    assert html.count("<table") == 3 and "Items shared" in html and "<style>" in html
    # Each model's own figure names its protocol, and the page points at the equal-terms table for comparisons.
    assert sasrec["protocol"] == "history kept, no score priors" and "0.1234, history kept, no score priors" in html
    assert "equal terms" in html
    assert service.comparison_models(toy2) == ["RecFormer-style"]  # SASRec only where it was trained


@pytest.mark.slow
def test_a_typed_item_joins_the_catalogue_for_that_visitor_only(service, toy):
    import torch

    served = service.get(toy)
    history, target = H.load_user(served, 2)
    attrs = {"title": "red guitar strap deluxe"}
    added = service.add_visitor_item("visitor-9", toy, attrs)
    n = served.dataset.n_items
    assert added.dataset.n_items == n + 1 and added.extends == toy and added.dataset.items[-1] == attrs
    assert added.dataset.item_keys[:n] == served.dataset.item_keys and added.dataset.test_cases() == served.dataset.test_cases()
    assert torch.equal(added.recommender.item_vectors[:n], served.recommender.item_vectors)
    assert added.recommender.item_vectors[n].shape == served.recommender.item_vectors[0].shape
    full = added.recommender.recommend(history, k=n + 1, exclude_history=False)
    assert n in {r.item for r in full.items}  # the new item is ranked like any other
    assert served.dataset.n_items == n and "Your" not in H.badge_markdown(served)  # others see the catalogue as it was
    assert "+ your items" in H.badge_markdown(added)
    # Messages name the catalogue as the visitor knows it, never by its internal key.
    with pytest.raises(H.UserInputError) as err:
        H.load_user(added, 10**6)
    assert "upload:" not in str(err.value) and "+ your items" in str(err.value)
    again = service.add_visitor_item("visitor-9", added.name, {"title": "blue drum kit pro"})
    assert again.dataset.n_items == n + 2 and again.extends == toy
    service.drop_session("visitor-9")
    _wait_for_background_maps()


def test_embedding_map_gives_every_group_its_own_colour():
    import numpy as np

    from app.plots import embedding_figure

    groups = [f"group {g}" for g in range(20) for _ in range(20 - g)] + ["other"] * 5
    coords = np.random.default_rng(0).normal(size=(len(groups), 2))
    fig = embedding_figure(coords, [f"item {i}" for i in range(len(groups))], groups, history=[0, 1], target=2,
                           top=[3, 4], title="map")
    colours = {t.name: t.marker.color for t in fig.data}
    group_colours = [colours[f"group {g}"] for g in range(20)]
    assert len(set(group_colours)) == 20 and colours["other"] not in group_colours


# ---------------------------------------------------------------- datasets a fresh clone does not have

def test_a_fresh_clone_offers_every_app_dataset_and_says_on_the_page_what_a_missing_one_needs(finetuned, tmp_path,
                                                                                             monkeypatch):
    """With nothing beside the project, the menu still lists every app dataset by a readable name; one that is
    not here is fetched on first use, and without network the badge says why and the one command that fetches
    it (no error box, no traceback)."""
    from app.service import APP_DATASETS, DATASET_INFO, dataset_label
    from app.ui import Callbacks
    from jepa4rec.data.sources import BASE_URL_ENV
    from jepa4rec.paths import CACHE_ENV, DATA_ROOT_ENV

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # downloads land in <cache>/data
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:9")  # no network
    cfg, _ = finetuned
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(f"{cfg.output_dir}/best", ckpts / "toy-model")
    (ckpts / "index.json").write_text(json.dumps({"default": "toy-model"}))
    fresh = AppService(data_root=tmp_path / "no-data", checkpoints_dir=ckpts, device="cpu")
    assert fresh.dataset_names() == list(APP_DATASETS)
    assert fresh.is_present("ml-100k") and not fresh.is_present("Scientific_UniSRec")
    assert len({dataset_label(n) for n in APP_DATASETS}) == len(APP_DATASETS) == len(DATASET_INFO)
    badge, about, fig, repeats = Callbacks(fresh, fresh.dataset_names()).load("Scientific_UniSRec")
    assert badge.startswith("**Amazon Scientific is not available here**") and "could not download" in badge
    assert "`python -m jepa4rec.data download Scientific_UniSRec`" in badge and (about, fig) == ("", None)
    assert not (tmp_path / "cache" / "data" / "Scientific_UniSRec").exists()


def test_items_that_look_alike_on_screen_get_labels_that_tell_them_apart():
    """Online Retail lists "LUNCH BAG SUKI DESIGN" twice (the keys differ by a double space, which a browser
    collapses): each gets a label of its own."""
    from types import SimpleNamespace

    titles = ["LUNCH BAG SUKI DESIGN", "LUNCH BAG SUKI  DESIGN", "Guitar", "Guitar", "Amp"]
    keys = ["LUNCH BAG SUKI DESIGN", "LUNCH BAG SUKI  DESIGN", "B001", "B002", "B003"]
    served = SimpleNamespace(recommender=SimpleNamespace(titles=titles), dataset=SimpleNamespace(item_keys=keys),
                             display_name="Shop")
    labels = dict(H.item_choices(served, [1, 0, 2, 3, 4]))
    assert len(set(labels)) == 5  # no two alike
    assert {k for k in labels if k.startswith("LUNCH")} == {"LUNCH BAG SUKI DESIGN (variant 1 of 2)",
                                                                     "LUNCH BAG SUKI DESIGN (variant 2 of 2)"}
    assert "Guitar (B001)" in labels and "Amp" in labels
    # No match is said in the list's label, not in a toast per keystroke.
    assert H.matches_label(served, "qwxz blarg", []) == "Matches: no title in Shop contains every word of “qwxz blarg”"
    assert H.matches_label(served, "", []) == "Matches" and H.matches_label(served, "gui", [2, 3]) == "Matches (2)"


def test_rank_axes_label_every_tick_and_a_rank_that_stays_first_gets_a_sane_axis():
    import pandas as pd

    from app.plots import reveal_curve_figure

    fig = reveal_curve_figure(pd.DataFrame({"reveal %": [0, 50, 100], "target rank": [60, 20, 1]}), 60)
    assert list(fig.layout.yaxis.ticktext) == ["1", "2", "5", "10", "20", "50"]  # not "2" and "5" for 20 and 50
    low, high = sorted(fig.layout.yaxis.range)
    assert 10 ** low < 1 and 10 ** high >= 60
    first = reveal_curve_figure(pd.DataFrame({"reveal %": [0, 100], "target rank": [1, 1]}), 1)
    assert list(first.layout.yaxis.tickvals) == [1, 2] and 10 ** max(first.layout.yaxis.range) == pytest.approx(2)


def test_chart_titles_are_wrapped_to_fit_a_phone():
    import pandas as pd

    from app.plots import TITLE_LINE, reveal_curve_figure, wrapped

    title = reveal_curve_figure(pd.DataFrame({"reveal %": [0, 100], "target rank": [9, 1]}), 9).layout.title.text
    assert "<br>" in title and all(len(line) <= TITLE_LINE for line in title.split("<br>"))
    assert wrapped("short") == "short" and wrapped("") == ""


def test_revealed_words_joined_by_a_comma_are_shown_apart():
    assert H.clean_words(["Industrial", "Scientific,Abrasive", "(red),"]) == ["Industrial", "Scientific", "Abrasive", "red"]


def test_a_dataset_switch_puts_the_history_aside_and_switching_back_restores_it(service, toy, toy2):
    from app.ui import Callbacks

    cb = Callbacks(service, [toy, toy2])
    out = cb.reset(toy2, [1, 2], 3, {}, toy)
    history, target, shelf, shown = out[0], out[1], out[-2], out[-1]
    assert (history, target, shown) == ([], None, toy2) and shelf == {toy: ([1, 2], 3)}
    back = cb.reset(toy, [], None, shelf, toy2)
    assert (back[0], back[1], back[-2], back[-1]) == ([1, 2], 3, {}, toy)
    assert out[3]["label"] == "Matches"  # not "no title in <the previous dataset> contains ..." any more


def test_an_upload_refused_names_the_file_not_gradios_temporary_folder(service, toy, monkeypatch, tmp_path):
    """Gradio keeps each uploaded file in its own temporary folder: a refusal names the file and line only."""
    from types import SimpleNamespace

    import gradio as gr

    from app.ui import Callbacks

    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    items, purchases = tmp_path / "a" / "lamps.csv", tmp_path / "b" / "orders.csv"
    for f, text in ((items, SHOP), (purchases, "user,item,timestamp\nc1,s1,2026-01-01\nc1,s2,next tuesday\n")):
        f.parent.mkdir()
        f.write_text(text)
    Callbacks(service, [toy]).upload(str(items), str(purchases), SimpleNamespace(session_hash="t"),
                                     progress=lambda *a, **k: None)
    assert len(warned) == 1 and warned[0].startswith("orders.csv:3: field 'timestamp' is neither"), warned
    assert str(tmp_path) not in warned[0]


# ---------------------------------------------------------------- a shop owner's scoreboard

# Twelve lamps and 30 customers who buy along the list (two at a time, a little noise), with dates as they come.
PURCHASES = "user,item,time\n" + "".join(
    f"c{u},s{(u + k) % 12},2026-01-{k + 1:02d}\n" for u in range(30) for k in range(5))


def test_a_scoreboard_scores_the_first_customers_asked_for_and_refuses_all_of_too_many(service, monkeypatch):
    import app.service as S
    from jepa4rec.data import DataFormatError

    served = service.add_upload("sample", "lamps.csv", "purchases.csv", items_text=SHOP, interactions_text=PURCHASES)
    board = service.scoreboard(served, 10)
    assert (board["users"], board["all_users"]) == (10, 30)
    assert "The first 10 of 30 customers'" in H.scoreboard_html(board)
    assert service.scoreboard(served, 0)["users"] == service.scoreboard(served, 500)["users"] == 30
    with pytest.raises(DataFormatError, match="must be 0 \\(all\\) or more, got -1"):
        service.scoreboard(served, -1)
    monkeypatch.setattr(S, "MAX_SCORED_USERS", 20)
    with pytest.raises(DataFormatError, match="30 customers with a held-out purchase is over the 20"):
        service.scoreboard(served, 0)
    assert service.scoreboard(served, 10)["users"] == 10  # a sample of a shop too large to score whole
    service.drop_session("sample")


@pytest.mark.slow
def test_a_shop_scores_adapts_and_takes_its_model_home(service, launched, tmp_path):
    """Score the models on the shop's own held-out purchases, adapt one within a budget, download it, and get
    the same figures back by command from the downloaded folder; by the API as by the page."""
    import zipfile

    from gradio_client import Client

    from jepa4rec.evaluate import main

    client = Client(launched, verbose=False)
    board = client.predict(SHOP, PURCHASES, "csv", api_name="/evaluate_upload")
    assert [r["model"] for r in board["rows"]][:3] == ["popularity (the shop's best-sellers)", "JEPA4Rec, zero-shot",
                                                      "JEPA4Rec, zero-shot + score priors"]
    assert board["users"] == 30 and board["items"] == 12 and board["paired"] == {}
    adapted = client.predict(SHOP, PURCHASES, 0.25, "csv", api_name="/adapt_upload")
    assert adapted["rows"][3]["model"] == "adapted" and set(adapted["paired"]) == {"kept", "excluded"}
    assert adapted["adapter"]["epochs_run"] >= 1 and adapted["adapter"]["stopped"]
    archive = client.predict(SHOP, PURCHASES, "csv", api_name="/download_model")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path)
        folder = tmp_path / zf.namelist()[0].split("/")[0]
    (tmp_path / "items.csv").write_text(SHOP)
    (tmp_path / "purchases.csv").write_text(PURCHASES)
    out = tmp_path / "r.jsonl"
    assert main(["--checkpoint", str(folder), "--items", str(tmp_path / "items.csv"), "--interactions",
                 str(tmp_path / "purchases.csv"), "--priors", "fit", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    for cell in ("kept", "excluded"):
        # Failed once in 40 runs under CPU contention (one user's rank moved); the message carries what the
        # next session needs to trace it: both figures in every cell and the adapter's card.
        assert abs(record["cells"][cell]["NDCG@10"] - adapted["rows"][3]["cells"][cell]["NDCG@10"]) < 1e-6, (
            cell, record["cells"], adapted["rows"][3]["cells"], adapted["adapter"])
    # Bad input is refused with its reason, or dropped and counted.
    with pytest.raises(Exception, match="minutes 99 is outside 0.25..10"):
        client.predict(SHOP, PURCHASES, 99, "csv", api_name="/adapt_upload")
    odd = PURCHASES + "c0,nope,2026-02-01\nc0,s1,2026-02-02\nc0,s1,2026-02-02\nlone,s3,2026-01-01\n"
    report = " ".join(client.predict(SHOP, odd, "csv", api_name="/evaluate_upload")["report"])
    assert "1 interaction(s) with items not in the catalogue" in report and "duplicate" in report
    assert "fewer than 2" in report


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_a_shop_scores_its_purchases_adapts_and_downloads(launched):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "lamps.csv").write_text(SHOP)
    (ARTIFACTS / "purchases.csv").write_text(PURCHASES + "c0,nope,2026-02-01\nc0,s1,2026-01-02\nlone,s3,2026-01-01\n")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(launched)
        try:
            expect(page.get_by_text("No target chosen")).to_be_visible(timeout=30_000)
            page.get_by_role("tab", name="Your catalogue").click()
            # Before an upload: the scoreboard says what it needs.
            page.get_by_role("button", name="Score the models on your purchases").click()
            expect(page.get_by_text("Choose your catalogue first").first).to_be_visible(timeout=20_000)
            for box, name in (("#items-file", "lamps.csv"), ("#interactions-file", "purchases.csv")):
                with page.expect_file_chooser() as chooser:
                    page.locator(box).get_by_text("Click to Upload").click()
                chooser.value.set_files(str(ARTIFACTS / name))
                expect(page.locator(box).locator(f'a[href$="/{name}"]')).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Use this catalogue").click()
            expect(page.get_by_text("customers with a held-out purchase").first).to_be_visible(timeout=60_000)
            page.get_by_role("button", name="Score the models on your purchases").click()
            expect(page.get_by_text("JEPA4Rec, zero-shot + score priors").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "shop_scoreboard.png"), full_page=True)
            page.get_by_label("Adaptation time (minutes)").fill("99")
            page.get_by_role("button", name="Adapt a model to your shop").click()
            expect(page.get_by_text("Adaptation time (minutes) 99 is outside 0.25..10: set to 10.").first).to_be_visible(
                timeout=20_000)
            expect(page.get_by_text("Adapted in").first).to_be_visible(timeout=120_000)
            expect(page.get_by_text("Adapted + priors / zero-shot + priors").first).to_be_visible()
            expect(page.get_by_role("button", name="Download the adapted model")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "shop_adapted.png"), full_page=True)
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="Download the adapted model").click()
            import zipfile
            with zipfile.ZipFile(download.value.path()) as archive:
                names = archive.namelist()
            assert any(n.endswith("config.json") for n in names), names
            assert any(n.endswith(".safetensors") for n in names), names
            # What the upload dropped is said on the page, counted.
            page.get_by_role("tab", name="Recommend & reveal").click()
            expect(page.get_by_text("interaction(s) with items not in the catalogue").first).to_be_visible(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "shop_dropped_rows.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        browser.close()


def test_models_loaded_by_the_app_share_their_identical_large_tensors_only(service, tmp_path, monkeypatch):
    """Four text models keep MiniLM's word embeddings unchanged: the app holds one copy of them."""
    import torch

    monkeypatch.setattr(AppService, "SHARE_MIN_ELEMENTS", 1000)  # the toy model's tensors are small

    from jepa4rec.checkpoint import load_model_dir, save_model_dir

    first, same, other = tmp_path / "first", tmp_path / "same", tmp_path / "other"  # none loaded before
    shutil.copytree(service.checkpoints_dir / "toy-model", first)
    shutil.copytree(first, same)
    source = first
    model, tok, card = load_model_dir(source)
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight[0] += 1.0
    save_model_dir(other, model, tok, card)
    words = "encoder.embeddings.word_embeddings.weight"
    ptr = {f: dict(service._model(f)[0].named_parameters())[words].data_ptr() for f in (source, same, other)}
    assert ptr[source] == ptr[same] and ptr[source] != ptr[other]
    assert not any(p.requires_grad for p in service._model(same)[0].parameters())


def test_popularitys_badge_figure_is_measured_once_per_dataset_content(toy, tmp_path, monkeypatch):
    from jepa4rec.data import load_dataset

    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path / "cache"))
    ds = load_dataset(toy)
    first = AppService._popularity(ds, lambda f, what: None, with_priors=True, keep=True)

    def again(*args):
        raise AssertionError("measured twice")

    monkeypatch.setattr(AppService, "_measure_popularity", staticmethod(again))
    assert AppService._popularity(ds, lambda f, what: None, with_priors=True, keep=True) == first
    with pytest.raises(AssertionError, match="measured twice"):  # another protocol is another figure
        AppService._popularity(ds, lambda f, what: None, with_priors=False, keep=True)
