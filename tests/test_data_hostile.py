"""Hostile inputs to the dataset readers: each is refused in one line naming the file and line, or read
with a report line saying what was done (docs/hostile_inputs.md). Every input is built in ``tmp_path``."""
from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jepa4rec.data import DataFormatError, load_dataset  # noqa: E402
from jepa4rec.data import __main__ as cli  # noqa: E402
from jepa4rec.data.readers import read_iisan, read_lcrec, read_online_retail, read_seqrecbench, read_unisrec  # noqa: E402
from commands import one_line_error  # noqa: E402

ASINS = [f"B{i:03d}" for i in range(6)]
SRB_ITEMS = "".join(json.dumps({"item_id": i, "title": f"Item {i}"}) + "\n" for i in range(1, 7))
SRB_INTER = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{u * 100 + i}\n" for u in range(1, 6) for i in range(1, 7))
LATIN1_LINE = '{"item_id": 7, "title": "Caf\xe9"}\n'.encode("latin-1")
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
MUGS = ["WHITE MUG", "RED MUG", "BLUE MUG", "GREEN MUG", "PINK MUG", "CAF\u00c9 MUG"]


def write(folder, files: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def unisrec(folder, **replace):
    """Five users who each bought B000..B005 in order, as UniSRec's split files."""
    hdr = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    files = {
        "X.text": "item_id:token\ttext:token_seq\n" + "".join(f"{a}\tTitle {a}. Cat. Brand\n" for a in ASINS),
        "X.item2index": "".join(f"{a}\t{i}\n" for i, a in enumerate(ASINS)),
        "X.user2index": "".join(f"A{u}\t{u}\n" for u in range(5)),
        "X.train.inter": hdr + "".join(f"{u}\t0 1 2\t3\n{u}\t0 1\t2\n{u}\t0\t1\n" for u in range(5)),
        "X.valid.inter": hdr + "".join(f"{u}\t0 1 2 3\t4\n" for u in range(5)),
        "X.test.inter": hdr + "".join(f"{u}\t0 1 2 3 4\t5\n" for u in range(5)),
    }
    return write(folder, {**files, **replace})


def retail_rows(date=lambda j: f"12/{j + 1}/2010 8:26") -> str:
    return "".join(f"5{c}{j},8{j},{d},2,{date(j)},1.0,{17850 + c},United Kingdom\n"
                   for c in range(5) for j, d in enumerate(MUGS))


# --- 1. text that is not UTF-8; a BOM ---------------------------------------------------------------

def test_text_that_is_not_utf8_names_file_line_and_byte(tmp_path):
    srb = write(tmp_path / "srb", {"items.jsonl": SRB_ITEMS.encode() + LATIN1_LINE, "interactions.csv": SRB_INTER})
    byte = len(SRB_ITEMS.encode()) + LATIN1_LINE.index(b"\xe9")
    with pytest.raises(DataFormatError, match=rf"items\.jsonl:7: not UTF-8 text \(byte {byte}\) — save the file as UTF-8"):
        read_seqrecbench(srb)
    items = "".join(f"{a}\tTitle {a}\n" for a in ASINS)
    iisan = write(tmp_path / "iisan", {"x_items.tsv": items.encode() + "B006\tCaf\xe9\n".encode("latin-1"),
                                       "x_users.tsv": "U0\tB000 B001 B002\n"})
    with pytest.raises(DataFormatError, match=r"x_items\.tsv:7: not UTF-8 text \(byte \d+\)"):
        read_iisan(iisan)
    meta = json.dumps({"0": {"title": "Caf\xe9"}}, ensure_ascii=False).encode("latin-1")
    lcrec = write(tmp_path / "lcrec", {"X.item.json": meta, "X.inter.json": '{"0": [0]}'})
    with pytest.raises(DataFormatError, match=rf"X\.item\.json:1: not UTF-8 text \(byte {meta.index(0xE9)}\)"):
        read_lcrec(lcrec)
    uni = unisrec(tmp_path / "uni", **{"X.text": "item_id:token\ttext:token_seq\n" + "B000\tCaf\xe9. Cat. B\n"})
    (uni / "X.text").write_bytes((uni / "X.text").read_text().encode("latin-1"))
    byte = (uni / "X.text").read_bytes().index(0xE9)
    with pytest.raises(DataFormatError, match=rf"X\.text:2: not UTF-8 text \(byte {byte}\)"):
        read_unisrec(uni)
    write(srb, {"items.jsonl": SRB_ITEMS, "interactions.csv": SRB_INTER.encode() + b"1,2,\xe9\n"})
    with pytest.raises(DataFormatError, match=r"interactions\.csv:32: not UTF-8 text"):
        read_seqrecbench(srb)


def test_a_bom_is_accepted_in_every_text_reader(tmp_path):
    srb = write(tmp_path / "srb", {"items.jsonl": "\ufeff" + SRB_ITEMS, "interactions.csv": SRB_INTER})
    assert len(read_seqrecbench(srb).items) == 6
    meta = json.dumps({str(i): {"title": f"Item {i}"} for i in range(3)})
    lcrec = write(tmp_path / "lcrec", {"X.item.json": "\ufeff" + meta, "X.inter.json": "\ufeff" + '{"0": [0, 1, 2]}'})
    assert list(read_lcrec(lcrec).items) == ["0", "1", "2"]
    iisan = write(tmp_path / "iisan", {"x_items.tsv": "\ufeffB000\tMug\n", "x_users.tsv": "\ufeffU0\tB000\n"})
    raw = read_iisan(iisan)
    assert list(raw.items) == ["B000"] and list(raw.interactions["user"]) == ["U0"]


# --- 2. empty and corrupt files -----------------------------------------------------------------------

def test_empty_and_corrupt_files_are_named(tmp_path):
    srb = write(tmp_path / "srb", {"items.jsonl": SRB_ITEMS, "interactions.csv": ""})
    with pytest.raises(DataFormatError, match=r"interactions\.csv: empty file \(no header line\)"):
        read_seqrecbench(srb)
    retail = write(tmp_path / "empty", {"retail.csv": ""})
    with pytest.raises(DataFormatError, match=r"retail\.csv: empty file \(no header line\)"):
        read_online_retail(retail)
    ragged = write(tmp_path / "ragged", {"retail.csv": RETAIL_HEADER + retail_rows()
                                         + "999,1,X,Y,2,12/1/2010 8:26,1,17850,UK,extra,more\n"})
    with pytest.raises(DataFormatError, match=r"retail\.csv:32: expected 8 comma-separated fields, saw 11"):
        read_online_retail(ragged)
    parquet = write(tmp_path / "pq", {"retail.parquet": b"PAR1garbage"})
    with pytest.raises(DataFormatError, match=r"retail\.parquet: not a readable parquet file"):
        read_online_retail(parquet)
    xlsx = write(tmp_path / "xl", {"retail.xlsx": b"PK\x03\x04garbage"})
    with pytest.raises(DataFormatError, match=r"retail\.xlsx: not a readable Excel file \(BadZipFile"):
        read_online_retail(xlsx)


# --- 3. LC-Rec files that are not objects ---------------------------------------------------------------

@pytest.mark.parametrize("which, key", [("item", "item"), ("inter", "user")])
def test_lcrec_top_level_must_be_an_object(tmp_path, which, key):
    files = {"X.item.json": json.dumps({"0": {"title": "Mug"}}), "X.inter.json": json.dumps({"0": ["0"]})}
    files[f"X.{which}.json"] = json.dumps(list(json.loads(files[f"X.{which}.json"]).values()))
    with pytest.raises(DataFormatError, match=rf"X\.{which}\.json: expected a JSON object keyed by {key} id, got a list"):
        read_lcrec(write(tmp_path, files))


# --- 8. repeated item ids -------------------------------------------------------------------------------

def test_repeated_item_ids_are_refused_naming_both_lines(tmp_path):
    items = "".join(f"{a}\tTitle {a}\n" for a in ASINS) + "B001\tA different product\n"
    with pytest.raises(DataFormatError, match=r"x_items\.tsv:7: item B001 repeats line 2"):
        read_iisan(write(tmp_path / "iisan", {"x_items.tsv": items, "x_users.tsv": "U0\tB001\n"}))
    uni = unisrec(tmp_path / "uni")
    with open(uni / "X.text", "a") as fh:
        fh.write("B001\tSomething else. Cat. Brand\n")
    with pytest.raises(DataFormatError, match=r"X\.text:8: item_id B001 repeats line 3"):
        read_unisrec(uni)


# --- 9. UniSRec indexes -----------------------------------------------------------------------------------

def test_unisrec_negative_item_index_is_refused(tmp_path):
    hdr = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    uni = unisrec(tmp_path, **{"X.test.inter": hdr + "".join(f"{u}\t0 1 2 3 4\t{-3 if u == 1 else 5}\n" for u in range(5))})
    with pytest.raises(DataFormatError, match=r"X\.test\.inter:3: item index not in X\.item2index \('-3'; it holds 0\.\.5\)"):
        read_unisrec(uni)


@pytest.mark.parametrize("user2index, message", [
    ("".join(f"A{u}\t{4 - u}\n" for u in range(5)), r"X\.user2index:1: indexes must run 0, 1, 2, \.\.\. \(got 4, expected 0\)"),
    ("A0\t0\nA1\t1\nA2 x\n", r"X\.user2index:3: expected '<user> <index>', got 'A2 x'"),
    ("A0\n", r"X\.user2index:1: expected '<user> <index>', got 'A0'"),
], ids=["shuffled", "no-index", "one-field"])
def test_unisrec_user2index_is_read_by_its_index_column(tmp_path, user2index, message):
    with pytest.raises(DataFormatError, match=message):
        read_unisrec(unisrec(tmp_path, **{"X.user2index": user2index}))


def test_unisrec_blank_line_in_user2index_shifts_no_label(tmp_path):
    raw = read_unisrec(unisrec(tmp_path, **{"X.user2index": "A0\t0\n\nA1\t1\n\t\nA2\t2\nA3\t3\nA4\t4\n"}))
    assert list(pd.unique(raw.interactions["user"])) == ["A0", "A1", "A2", "A3", "A4"]


# --- 10. Online Retail CSV: encoding, dates, several files ---------------------------------------------

def test_online_retail_cp1252_is_decoded_and_reported(tmp_path):
    folder = write(tmp_path, {"retail.csv": (RETAIL_HEADER + retail_rows()).encode("cp1252")})
    raw = read_online_retail(folder)
    assert "CAF\u00c9 MUG" in raw.items
    assert "retail.csv: not UTF-8 (first at line 7); read as cp1252" in raw.report


def test_online_retail_bad_date_names_the_file_line(tmp_path):
    folder = write(tmp_path, {"retail.csv": RETAIL_HEADER + retail_rows() + "999,81,RED MUG,2,yesterday,1.0,17850,UK\n"})
    with pytest.raises(DataFormatError, match=r"retail\.csv:32: field 'InvoiceDate' is not a date \('yesterday'\)"):
        read_online_retail(folder)


def test_online_retail_day_first_dates_are_detected(tmp_path):
    rows = "1,1,A,1,02/01/2011 10:00,1,1,UK\n2,2,B,1,01/02/2011 10:00,1,1,UK\n3,3,C,1,13/02/2011 10:00,1,1,UK\n"
    raw = read_online_retail(write(tmp_path / "eu", {"retail.csv": RETAIL_HEADER + rows}))
    days = pd.to_datetime(raw.interactions["time"], unit="s").dt.strftime("%Y-%m-%d").tolist()
    assert days == ["2011-01-02", "2011-02-01", "2011-02-13"]
    assert "retail.csv: InvoiceDate read day-first (dd/mm/yyyy: a first field is over 12)" in raw.report
    us = read_online_retail(write(tmp_path / "us", {"retail.csv": RETAIL_HEADER + rows.replace("13/02", "02/13")}))
    assert pd.to_datetime(us.interactions["time"], unit="s").dt.month.tolist() == [2, 1, 2]
    assert not any("InvoiceDate" in line for line in us.report)


def test_online_retail_ambiguous_dates_are_warned_about(tmp_path):
    raw = read_online_retail(write(tmp_path, {"retail.csv": RETAIL_HEADER + retail_rows()}))
    assert any(re.fullmatch(r"warning: retail\.csv: InvoiceDate is ambiguous .*read month-first .*", line)
               for line in raw.report), raw.report
    assert pd.to_datetime(raw.interactions["time"], unit="s").dt.month.unique().tolist() == [12]


def test_online_retail_folder_with_several_files_is_refused(tmp_path):
    folder = write(tmp_path, {"a.csv": RETAIL_HEADER + retail_rows()})
    pd.read_csv(folder / "a.csv").head(6).to_parquet(folder / "b.parquet")
    with pytest.raises(DataFormatError, match=r"several data files \(a\.csv, b\.parquet\)"):
        read_online_retail(folder)


# --- 11. half a SeqRecBench folder ------------------------------------------------------------------------

def test_seqrecbench_without_items_is_named(tmp_path, capsys):
    folder = write(tmp_path / "srb", {"interactions.csv": SRB_INTER})
    with pytest.raises(DataFormatError, match=r"srb: no items\.jsonl beside interactions\.csv \(SeqRecBench layout\)"):
        load_dataset(str(folder))
    line = one_line_error(capsys, cli.main, ["stats", str(folder)])
    assert line.startswith(f"error: {folder}: no items.jsonl beside interactions.csv (SeqRecBench layout) — ")
