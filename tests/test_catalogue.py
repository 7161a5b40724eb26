"""A catalogue someone brings (jepa4rec.data.catalogue, Recommender.from_catalogue): what it reads,
every refusal with its message, and that nothing of it is written to disk."""
from __future__ import annotations

import json
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from jepa4rec.data import DataFormatError  # noqa: E402
from jepa4rec.data.catalogue import read_catalogue, read_items  # noqa: E402
from jepa4rec.text import item_sentence  # noqa: E402


def write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_keeps_header_order_cleans_text_and_drops_empty_rows(tmp_path):
    f = write(tmp_path / "shop.csv", "description,ID,brand\nRed &amp; green mug,a1,Acme\n,a2,\nBlue bowl,a3,\n")
    keys, items, columns, report = read_items(f)
    assert keys == ["a1", "a3"] and columns == ["description", "brand"]
    assert items[0] == {"description": "Red & green mug", "brand": "Acme"} and items[1] == {"description": "Blue bowl"}
    assert report == ["shop.csv: dropped 1 item(s) with no text in ['description', 'brand']"]


def test_jsonl_and_interactions_make_users_in_time_order(tmp_path):
    items = write(tmp_path / "items.jsonl", "\n".join(json.dumps(r) for r in [
        {"item_id": 1, "title": "one", "category": "x"}, {"item_id": 2, "title": "two"}, {"item_id": 3, "title": "three"}]))
    inter = write(tmp_path / "inter.csv", "user,item,timestamp\nu,2,20\nu,1,10\nu,9,5\nv,3,1\nu,3,30\n")
    ds, columns = read_catalogue(items, inter, name="shop")
    assert columns == ["title", "category"] and ds.name == "shop" and ds.item_keys == ["1", "2", "3"]
    assert ds.user_keys == ["u"] and ds.sequences == [[0, 1, 2]]  # v has one item: no test case
    assert any("1 interaction(s) with items not in the catalogue" in r for r in ds.report)
    assert any("1 user(s) with fewer than 2" in r for r in ds.report)


@pytest.mark.parametrize("name, text, said", [
    ("a.csv", "title,brand\nx,y\n", "no id column (one named item_id or id); columns: ['title', 'brand']"),
    ("a.csv", "id\n1\n", "no text column beside 'id'"),
    ("a.csv", "id,title\n1,x\n2,y\n1,z\n", "a.csv:4: id '1' repeats line 2"),
    ("a.csv", "id,title\n1,\n2,\n", "none of its 2 items has any text"),
    ("a.csv", "id,title\n,x\n", "a.csv:2: empty 'id'"),
    ("a.csv", "", "empty file, or no header line"),
    ("a.jsonl", '{"id": 1, "title": "x"}\n[1, 2]\n', "a.jsonl:2: a line must be one JSON object"),
    ("a.jsonl", '{"id": 1, "title": "x"}\n{"id": 2,\n', "a.jsonl:2: not valid JSON"),
    # Each of these lost text without a word: a field past the header's, rows swallowed by an open quote,
    # one of two same-named columns (or JSON keys), an id that is no id.
    ("a.csv", "id,title,brand\np1,Mug,Acme\np6,Mug, large,Acme\n",
     "a.csv:3: 4 fields, but the header has 3 ['id', 'title', 'brand'] — put a value holding a comma in double quotes"),
    ("a.csv", 'id,title,brand\np1,Red mug,Acme\np2,"Blue mug,Acme\np3,Tea,Leaf\np4,Pot,Acme\n',
     "a.csv:3: a quote opened in this row is never closed (the value runs to the end of the file, line 5)"),
    ("a.csv", 'id,title,brand,colour\np2,"Blue mug,Acme\np3,Tea",Leaf\np4,Pot,Acme,red\n',
     "a.csv:2: a quoted value runs over lines 2-3 and the row still has 3 of 4 fields (a quote that is not closed?)"),
    ("a.csv", "id,title,title\np1,Red mug,Acme mug\n", "a.csv:1: column 'title' repeats in the header"),
    ("a.jsonl", '{"id": 1, "title": "x"}\n{"id": 2, "title": "y", "title": "z"}\n', "a.jsonl:2: key 'title' repeats"),
    ("a.jsonl", '{"id": 1, "title": "x"}\n{"id": [3], "title": "y"}\n', "a.jsonl:2: field 'id' is not an id ([3])"),
    ("a.jsonl", '{"id": true, "title": "y"}\n', "a.jsonl:1: field 'id' is not an id (True)"),
    ("a.jsonl", '{"id": 1.5, "title": "y"}\n', "a.jsonl:1: field 'id' is not an id (1.5)"),
])
def test_bad_item_files_are_refused_by_name(tmp_path, name, text, said):
    with pytest.raises(DataFormatError, match=None) as err:
        read_items(write(tmp_path / name, text))
    assert said in str(err.value)


def test_a_field_over_the_csv_modules_limit_is_read(tmp_path):
    """Long descriptions are real: a field over csv's default 131,072 characters is read (the tokenizer cuts
    it), not a csv.Error traceback."""
    import csv

    old = csv.field_size_limit(131072)  # the default, whatever an earlier read raised it to
    try:
        f = write(tmp_path / "long.csv", "id,title,description\np1,Red mug," + "x " * 100_000 + "\np2,Blue mug,\n")
        keys, items, _, report = read_items(f)
    finally:
        csv.field_size_limit(max(old, csv.field_size_limit()))
    assert keys == ["p1", "p2"] and len(items[0]["description"]) == 199_999 and report == []


def test_jsonl_lists_are_text_and_objects_are_counted(tmp_path):
    """A list of strings is text, joined with ", " (as the SeqRecBench reader does); objects and true/false
    are dropped and counted; an integral 1.0 id reads as "1"."""
    f = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in [
        {"id": 1.0, "title": "Red mug", "categories": ["Kitchen", "Mugs"]}, {"id": "p3", "categories": ["Tea", "Green"]},
        {"id": "p4", "title": {"en": "Black tea"}}, {"id": 5, "title": "Pot", "gift": True}]))
    no_text = {}
    keys, items, columns, report = read_items(f, no_text=no_text)
    assert keys == ["1", "p3", "5"] and columns == ["title", "categories", "gift"]
    assert items[0] == {"title": "Red mug", "categories": "Kitchen, Mugs"} and items[1] == {"categories": "Tea, Green"}
    assert report == ["a.jsonl: dropped fields that are not text (objects, true/false): title (1 items), gift (1 items)",
                      "a.jsonl: dropped 1 item(s) with no text in ['title', 'categories', 'gift']"]
    assert no_text == {"p4": 3}


def test_limits_and_encoding_are_enforced(tmp_path):
    f = write(tmp_path / "big.csv", "id,title\n" + "".join(f"{i},item {i}\n" for i in range(30)))
    with pytest.raises(DataFormatError, match="30 items is over the 20-item limit"):
        read_items(f, max_items=20)
    with pytest.raises(DataFormatError, match="MB is over the"):
        read_items(f, max_bytes=100)
    latin = write(tmp_path / "latin.csv", "id,title\n1,caf\u00e9\n", encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"latin.csv:2: not UTF-8 text"):
        read_items(latin)
    bom = write(tmp_path / "bom.csv", "\ufeffid,title\n1,caf\u00e9\n")
    assert read_items(bom)[1] == [{"title": "caf\u00e9"}]  # Excel's "CSV UTF-8" starts with a BOM
    inter = write(tmp_path / "i.csv", "user,item,timestamp\nu,1,soon\n")
    with pytest.raises(DataFormatError, match="i.csv:2: field 'timestamp' is neither a number nor a date"):
        read_catalogue(bom, inter)
    with pytest.raises(DataFormatError, match="no item column"):
        read_catalogue(bom, write(tmp_path / "j.csv", "user,thing\nu,1\n"))


def test_recommender_from_catalogue_ranks_zero_shot_and_writes_nothing(finetuned, tmp_path, monkeypatch):
    from jepa4rec.recommender import Recommender

    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path / "cache"))
    cfg, _ = finetuned
    rows = ["id,title,colour"] + [f"k{i},{t} guitar {i},{c}" for i, (t, c) in enumerate(
        [("red", "crimson"), ("blue", "navy"), ("green", "olive")] * 5)]
    items = write(tmp_path / "mine.csv", "\n".join(rows) + "\n")
    rec = Recommender.from_catalogue(f"{cfg.output_dir}/best", items)
    assert rec.dataset.n_items == 15 and rec.tok.config.attribute_order == ("title", "colour")
    assert [k for k, _ in item_sentence(rec.dataset.items[0], rec.tok.config)] == ["title", "colour"]
    out = rec.recommend([0, 3], k=5, target=6, reveal=1.0, exclude_history=True)
    assert len(out.items) == 5 and 1 <= out.target_rank <= 15
    shared = Recommender.from_catalogue(rec, items)  # a loaded model is shared, not loaded again
    assert shared.model is rec.model
    assert not (tmp_path / "cache").exists()  # the vectors stayed in memory


def test_recommend_command_ranks_a_catalogue_file(finetuned, tmp_path, capsys):
    from jepa4rec.recommend import main

    cfg, _ = finetuned
    rows = ["item_id,title"] + [f"k{i},{t} guitar {i}" for i, t in enumerate(["red", "blue", "green"] * 4)]
    items = write(tmp_path / "mine.csv", "\n".join(rows) + "\n")
    assert main(["--items", str(items), "--history", "k0", "k3", "--model", f"{cfg.output_dir}/best", "--k", "4",
                 "--target", "k6", "--reveal", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 4 and out["catalogue"] == 12 and 1 <= out["target_rank"] <= 12
    assert not {"k0", "k3"} & {r["id"] for r in out["items"]}  # history excluded by default
    with pytest.raises(SystemExit) as exc:
        main(["--items", str(items), "--history", "nope", "--model", f"{cfg.output_dir}/best"])
    assert exc.value.code == 2 and "no item with id 'nope'" in capsys.readouterr().err


def test_recommend_command_names_a_dropped_id_and_a_history_of_every_item(finetuned, tmp_path, capsys):
    from jepa4rec.recommend import main

    cfg, _ = finetuned
    model = ["--model", f"{cfg.output_dir}/best"]
    items = write(tmp_path / "mine.csv", "id,title,brand\np1,Red mug,Acme\np2,Blue mug,Acme\np3,Tea,Leaf\np6,,\n")
    with pytest.raises(SystemExit) as exc:
        main(["--items", str(items), "--history", "p1", "p6", "zz", *model])
    assert exc.value.code == 2
    assert (f"error: {items}: no item with id 'zz'; item 'p6' (line 5) is in the file but was dropped because its row "
            "has no text — give ids from the catalogue's id column") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--items", str(items), "--history", "p1", "p6", *model])
    assert "item 'p6' (line 5) is in the file but was dropped because its row has no text — give the row a title" \
        in capsys.readouterr().err
    # Every item in the history: say so (the list would be empty), and name the option that allows repeats.
    with pytest.raises(SystemExit) as exc:
        main(["--items", str(items), "--history", "p1", "p2", "p3", *model])
    assert exc.value.code == 2 and (f"error: {items}: all 3 items of the catalogue are in the history, so none is left "
                                    "to recommend — add --allow-repeats") in capsys.readouterr().err
    assert main(["--items", str(items), "--history", "p1", "p2", "p3", "--allow-repeats", "--k", "2", "--json",
                 *model]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 2
    # With a target the list is never empty: the target stays in it.
    assert main(["--items", str(items), "--history", "p1", "p2", "--target", "p3", "--json", *model]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["items"]] == ["p3"]


def test_recommend_command_defaults_to_the_shipped_zero_shot_model(tmp_path, capsys):
    """Without --model the command loads the checkpoint index.json names as the default (one source of
    truth with the app), a real shipped model that knows no catalogue but this file."""
    from jepa4rec.checkpoint import checkpoint_index, default_checkpoint, is_model_dir
    from jepa4rec.recommend import main

    assert default_checkpoint().name == checkpoint_index()["default"] and is_model_dir(default_checkpoint())
    rows = ["item_id,title"] + [f"g{i},{t} electric guitar" for i, t in enumerate(["red", "blue", "green"])] + \
        [f"s{i},{t} cotton socks" for i, t in enumerate(["red", "blue", "green"])]
    items = write(tmp_path / "shop.csv", "\n".join(rows) + "\n")
    assert main(["--items", str(items), "--history", "g0", "g1", "--k", "1", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["items"][0]["id"] == "g2"  # the one guitar left outranks the socks


def test_every_shipped_checkpoint_the_app_names_is_there_and_fits_a_space():
    """index.json and compare.json name folders under checkpoints/: each must exist, hold a model (a
    JEPA4Rec model directory, or SASRec's own format), keep every file under 10 MB (Spaces without LFS)
    and stay within 50 MB."""
    from jepa4rec.checkpoint import checkpoint_index, compare_index, is_model_dir
    from jepa4rec.paths import CHECKPOINTS_DIR

    named = set(checkpoint_index().values()) | {f for by_dataset in compare_index().values() for f in by_dataset.values()}
    for name in sorted(named):
        folder = CHECKPOINTS_DIR / name
        assert folder.is_dir(), f"{name} is named but not shipped"
        assert is_model_dir(folder) or (folder / "sasrec_config.json").is_file(), name
        sizes = [f.stat().st_size for f in folder.rglob("*") if f.is_file()]
        assert max(sizes) < 10 * 1024 ** 2 and sum(sizes) <= 50 * 1024 ** 2, name


def test_every_fine_tuned_model_the_app_serves_has_a_predictor_fitted_to_its_item_space():
    """The reveal demo's "next-item predictor" scoring reads FFN2; fine-tuning leaves it missing even a fully
    shown target (docs/evaluation.md). A fine-tuned JEPA4Rec the app serves must have been through
    ``python -m jepa4rec.fit_predictor``, whose validation MRR rose with the share shown and ended above the
    history alone."""
    from jepa4rec.checkpoint import checkpoint_index, read_json_object
    from jepa4rec.paths import CHECKPOINTS_DIR

    served = {name for name in checkpoint_index().values()}
    fine_tuned = [n for n in sorted(served)
                  if read_json_object(CHECKPOINTS_DIR / n / "training_card.json").get("kind") == "finetune"]
    assert fine_tuned, "the app serves no fine-tuned model (index.json)"
    for name in fine_tuned:
        fit = read_json_object(CHECKPOINTS_DIR / name / "training_card.json").get("predictor_fit")
        assert fit, f"{name}: no predictor_fit in its training card"
        curve = [fit["valid_mrr_after"][s] for s in sorted(fit["valid_mrr_after"])]
        assert curve == sorted(curve) and curve[-1] > fit["history_only_mrr"], (name, curve, fit["history_only_mrr"])


def test_a_semicolon_or_tab_separated_file_is_read_and_the_separator_said(tmp_path):
    """Spreadsheets in many locales write CSV with semicolons: the separator is read from the header line."""
    from jepa4rec.data.catalogue import read_catalogue

    items = tmp_path / "shop.csv"
    items.write_text("item_id;name;colour\np1;lamp;red\np2;mug, large;blue\np3;chair;green\n")
    inters = tmp_path / "orders.csv"
    inters.write_text("user\titem\ttime\nu1\tp1\t1\nu1\tp2\t2\nu1\tp3\t3\nu2\tp2\t1\nu2\tp3\t2\nu2\tp1\t3\n")
    ds, columns = read_catalogue(items, inters)
    assert columns == ["name", "colour"] and ds.items[1] == {"name": "mug, large", "colour": "blue"}
    assert ds.n_users == 2 and any("separated by ';'" in r for r in ds.report) and any("a tab" in r for r in ds.report)
