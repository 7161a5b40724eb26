"""Shared pytest fixtures for data: tiny on-disk datasets and the ``shared_data`` marker.

What lives here (and only this; other test helpers belong in their own test modules):

* ``@pytest.mark.shared_data`` -- marks a test that reads the real datasets under
  ``jepa4rec.data.data_root()`` (``$JEPA4REC_DATA_ROOT``, default ``../shared/data``). Such tests are
  skipped, with the reason, when that folder is absent.
* ``shared_root`` -- the data root as a ``Path`` (skips the test when it is absent).
* Tiny datasets written to ``tmp_path`` in each source layout, small enough to reason about by hand:
  ``unisrec_dir``, ``lcrec_dir``, ``iisan_dir``, ``seqrecbench_dir`` (folders) and
  ``fake_recbole_wheel`` (a zip with MovieLens-style RecBole atomic files at the paths the real
  ``recbole`` wheel uses, so ``read_movielens(wheel=...)`` never needs the network).
  Each fixture documents the sequences it writes; ``write_unisrec`` builds the UniSRec split files
  from full sequences exactly as UniSRec does.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from jepa4rec.data import data_root

SHARED_DATA_REASON = "real datasets not found at jepa4rec.data.data_root() (set $JEPA4REC_DATA_ROOT)"


def pytest_configure(config):
    config.addinivalue_line("markers", f"shared_data: needs the real datasets; skipped when they are absent ({SHARED_DATA_REASON})")


def pytest_runtest_setup(item):
    if item.get_closest_marker("shared_data") is not None and not data_root().is_dir():
        pytest.skip(f"{SHARED_DATA_REASON}: {data_root()} is missing")


@pytest.fixture
def shared_root() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"{SHARED_DATA_REASON}: {root} is missing")
    return root


# --- UniSRec / RecBole atomic ------------------------------------------------------------------------

def write_unisrec(folder: Path, stem: str, texts: dict[str, str], users: dict[str, list[str]], max_hist: int = 50) -> Path:
    """Write ``<stem>.{text,item2index,user2index,train.inter,valid.inter,test.inter}`` like UniSRec.

    ``texts`` maps ASIN -> text in ``.text`` file order (item indexes follow the sorted ASINs, so the
    two orders differ); ``users`` maps reviewerID -> full item sequence. The train file holds one row
    per prefix, longest first, and histories are cut to the last ``max_hist`` items.
    """
    folder.mkdir(parents=True, exist_ok=True)
    index = {asin: i for i, asin in enumerate(sorted(texts))}
    (folder / f"{stem}.text").write_text(
        "item_id:token\ttext:token_seq\n" + "".join(f"{k}\t{v}\n" for k, v in texts.items()), encoding="utf-8"
    )
    (folder / f"{stem}.item2index").write_text("".join(f"{k}\t{i}\n" for k, i in index.items()))
    (folder / f"{stem}.user2index").write_text("".join(f"{u}\t{i}\n" for i, u in enumerate(users)))
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows = {"train": [], "valid": [], "test": []}
    for uid, seq in enumerate(users.values()):
        ids = [index[a] for a in seq]

        def row(pos):
            hist = ids[:pos][-max_hist:]
            return f"{uid}\t{' '.join(map(str, hist))}\t{ids[pos]}\n"

        rows["train"].extend(row(pos) for pos in range(len(ids) - 3, 0, -1))
        rows["valid"].append(row(len(ids) - 2))
        rows["test"].append(row(len(ids) - 1))
    for split, lines in rows.items():
        (folder / f"{stem}.{split}.inter").write_text(header + "".join(lines))
    return folder


UNISREC_TEXTS = {
    # .text order on purpose differs from the item2index order (sorted ASINs)
    "A7": "Bench Saw. Industrial & Scientific Cutting Tools. Dewalt. ",
    "A0": "Widget &amp; Gadget. Industrial & Scientific Tools. Acme. ",
    "A1": "Heater Kit 3/8 in. x 2 ft. Industrial & Scientific Heating. Mr. Heater. ",  # ". " in title and brand
    "A2": "Plain Thing 1 oz. . Brandless Co. ",  # no categories
    "A3": "Glue. Industrial & Scientific Adhesives. . ",  # no brand
    "A4": "Tape. Industrial & Scientific Tapes. 3M. ",
    "A5": "Drill. Industrial & Scientific Power Tools. Makita. ",
    "A6": "Gloves. Industrial & Scientific Safety. Ansell. ",
    "A8": "Never Bought. Industrial & Scientific Misc. Nobody. ",  # in the catalogue, in no sequence
}
UNISREC_USERS = {
    "U0": ["A0", "A1", "A2", "A3", "A4", "A5"],
    "U1": ["A6", "A7", "A0", "A1", "A4", "A5"],  # with max_hist=2, two train prefixes have length 2
    "U2": ["A3", "A2", "A6", "A7", "A5"],
}


@pytest.fixture
def unisrec_dir(tmp_path) -> Path:
    """UniSRec folder ``Tiny``: users U0..U2 with the sequences in ``UNISREC_USERS``; histories cut to 2."""
    return write_unisrec(tmp_path / "tiny_unisrec", "Tiny", UNISREC_TEXTS, UNISREC_USERS, max_hist=2)


# --- LC-Rec JSON -------------------------------------------------------------------------------------

LCREC_ITEMS = {
    "0": {"title": "Caf&eacute; Mug &amp;amp; Lid", "description": "", "brand": "Acme", "categories": "Kitchen,Mugs"},
    "1": {"title": "Tea  Pot", "description": "A   pot.", "brand": "  ", "categories": "Kitchen,Pots"},
    "2": {"title": "Spoon", "description": "Steel", "brand": "Acme", "categories": "Kitchen,Cutlery"},
    "3": {"title": "Fork", "description": "Steel", "brand": "Acme", "categories": "Kitchen,Cutlery"},
    "4": {"title": "Unused", "description": "", "brand": "", "categories": ""},
}
LCREC_USERS = {"0": [0, 1, 2, 3], "1": [1, 2, 3, 0], "2": [3, 2, 1]}


@pytest.fixture
def lcrec_dir(tmp_path) -> Path:
    """LC-Rec folder: ``Tiny.item.json`` (LCREC_ITEMS) and ``Tiny.inter.json`` (LCREC_USERS)."""
    folder = tmp_path / "tiny_lcrec"
    folder.mkdir()
    (folder / "Tiny.item.json").write_text(json.dumps(LCREC_ITEMS, indent=1))
    (folder / "Tiny.inter.json").write_text(json.dumps(LCREC_USERS, indent=1))
    return folder


# --- IISAN TSV ---------------------------------------------------------------------------------------

IISAN_ITEMS = [
    ("B01", " Guitar Strings &quot;Light&quot; "),
    ("B02", "Capo"),
    ("B03", "Tuner &amp; Metronome"),
    ("B04", "Pick\tPack"),  # a tab inside the title is kept as part of it
    ("B99", "In no sequence"),
]
IISAN_USERS = [
    ("UA", ["B01", "B02", "B02", "B03"]),  # a back-to-back repeat, kept
    ("UB", ["B03", "B01", "B04", "B02"]),
    ("UC", ["B02", "B04", "B01"]),
]


@pytest.fixture
def iisan_dir(tmp_path) -> Path:
    """IISAN folder: ``Tiny_items.tsv`` (ASIN<TAB>title) and ``Tiny_users_3.tsv`` (user<TAB>ASIN ASIN ...)."""
    folder = tmp_path / "tiny_iisan"
    folder.mkdir()
    (folder / "Tiny_items.tsv").write_text("".join(f"{a}\t{t}\n" for a, t in IISAN_ITEMS))
    (folder / "Tiny_users_3.tsv").write_text("".join(f"{u}\t{' '.join(s)}\n" for u, s in IISAN_USERS))
    return folder


# --- SeqRecBench items.jsonl + interactions.csv -----------------------------------------------------

SEQRECBENCH_ITEMS = [
    (100, "Lipstick &amp; Liner"),
    (101, "Mascara"),
    (102, "Eye &quot;Shadow&quot;"),
    (103, "Blush"),
]
# (user, item, timestamp) in file order; user 201's rows are out of time order in the file,
# and user 200's items 101 and 102 share a day (ties keep the file order).
SEQRECBENCH_INTERACTIONS = [
    (200, 100, 1000), (200, 101, 2000), (200, 102, 2000), (200, 103, 3000),
    (201, 103, 5000), (201, 100, 1000), (201, 101, 4000),
    (202, 102, 10), (202, 101, 20), (202, 100, 30), (202, 103, 40), (202, 100, 40),
]


@pytest.fixture
def seqrecbench_dir(tmp_path) -> Path:
    """SeqRecBench folder ``tiny_seqrecbench``; after processing (no k-core) the sequences are
    200: 100 101 102 103 / 201: 100 101 103 / 202: 102 101 100 103 100."""
    folder = tmp_path / "tiny_seqrecbench"
    folder.mkdir()
    (folder / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": i, "title": t}) + "\n" for i, t in SEQRECBENCH_ITEMS)
    )
    (folder / "interactions.csv").write_text(
        "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in SEQRECBENCH_INTERACTIONS)
    )
    return folder


# --- MovieLens-100k in RecBole atomic format, inside a fake recbole wheel ---------------------------

ML_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "2\tGoldenEye\t1995\tAction Adventure Thriller\n"
    "3\tCaf\u00e9 Society\t1996\tDrama\n"
    "4\tNever Rated\t1997\tDrama\n"
)
ML_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t2\t3\t881250950\n"
    "1\t1\t5\t881250949\n"
    "1\t3\t4\t881250960\n"
    "2\t3\t2\t891717742\n"
    "2\t2\t4\t891717700\n"
    "2\t1\t1\t891717800\n"
)


@pytest.fixture
def fake_recbole_wheel(tmp_path) -> Path:
    """A zip named like the recbole wheel, with ``recbole/dataset_example/ml-100k/ml-100k.{inter,item}``
    (the ``.item`` file latin-1 encoded, like the real one). Users 1: 1 2 3 and 2: 2 3 1 by time."""
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    base = "recbole/dataset_example/ml-100k/ml-100k"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{base}.inter", ML_INTER.encode("utf-8"))
        zf.writestr(f"{base}.item", ML_ITEM.encode("latin-1"))
        zf.writestr("recbole/__init__.py", "")
    return wheel


# --- a small trained model, shared by the fine-tuning, Recommender and app tests -----------------

@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """A one-domain toy dataset (SeqRecBench layout) whose next items are predictable from text."""
    from toy_corpus import write_domain

    return str(write_domain(tmp_path_factory.mktemp("toy") / "Toy", seed=3, n_users=90, n_items=30))


@pytest.fixture(scope="session")
def finetuned(toy, tmp_path_factory):
    """(FinetuneConfig, result) of a real fine-tuning run from scratch on ``toy`` (a few seconds)."""
    import torch

    from jepa4rec.config import FinetuneConfig, FinetuneLossConfig, OptimConfig
    from jepa4rec.finetuning import finetune
    from toy_corpus import TINY_MODEL

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ft")
    model = {**TINY_MODEL, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    cfg = FinetuneConfig(output_dir=str(out), dataset=toy, model=model, vocab_size=200, max_items=10,
                         max_tokens=128, batch_size=8, epochs=4, patience=4, progress=False, seed=5,
                         loss=FinetuneLossConfig(lambda_map=0.1), optim=OptimConfig(lr=3e-3, warmup_steps=5))
    return cfg, finetune(cfg)


@pytest.fixture(scope="session")
def rec(finetuned, toy):
    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import Recommender

    cfg, _ = finetuned
    return Recommender.from_pretrained(f"{cfg.output_dir}/best", load_dataset(toy))
