"""Item sentences, tokenizers and the collator (jepa4rec.text).

Small hand-made catalogues; one WordPiece tokenizer is trained per module (a fraction of a second).
The invariants every collated batch must satisfy live in ``check_batch`` and are reused on the real
Scientific_UniSRec catalogue when the shared data are present.
"""
from __future__ import annotations

import itertools
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from jepa4rec.text import (
    SPECIAL_TOKENS,
    TYPE_ATTR,
    TYPE_CLS,
    TYPE_PAD,
    TYPE_VALUE,
    EncodedItem,
    ItemTokenizer,
    TextConfig,
    item_sentence,
    load_tokenizer,
    sentence_text,
    train_tokenizer,
)

# --- a small catalogue --------------------------------------------------------------------------------

BRANDS = ["Fender", "Gibson", "Yamaha", "Ibanez", "Roland", "Boss", "Marshall", "Korg"]
THINGS = ["Mustang amp", "Les Paul guitar", "digital piano", "bass guitar", "drum machine",
          "overdrive pedal", "tube amp", "synthesizer keyboard", "guitar strings", "tuner"]
CATEGORIES = ["Musical Instruments Amplifiers", "Musical Instruments Guitars", "Musical Instruments Keyboards",
              "Musical Instruments Effects", "Musical Instruments Accessories"]
COLOURS = ["red", "black", "sunburst", "white", "blue"]


def make_catalogue() -> list[dict[str, str]]:
    """200 items, attributes deliberately in a non-canonical order (brand before title)."""
    items = []
    for i, (b, t) in enumerate(itertools.islice(itertools.cycle(itertools.product(BRANDS, THINGS)), 200)):
        items.append({
            "brand": b,
            "title": f"{b} {t} {COLOURS[i % len(COLOURS)]} model {i % 17}",
            "categories": CATEGORIES[i % len(CATEGORIES)],
        })
    return items


CATALOGUE = make_catalogue()
SENTENCES = [sentence_text(it) for it in CATALOGUE]
WORDPIECE_VOCAB = 300


@pytest.fixture(scope="module")
def wp_tok():
    return train_tokenizer(SENTENCES, vocab_size=WORDPIECE_VOCAB, min_frequency=1)


@pytest.fixture(scope="module")
def it(wp_tok) -> ItemTokenizer:
    return ItemTokenizer(wp_tok)


@pytest.fixture(scope="module")
def encoded(it) -> list[EncodedItem]:
    return it.encode_items(CATALOGUE)


# --- helpers ------------------------------------------------------------------------------------------

def attribute_spans(types: np.ndarray) -> list[slice]:
    """Split an item's token types into (attribute name + value) spans: a span starts at each name
    token that follows a value token (or the start)."""
    starts = [i for i, t in enumerate(types) if t == TYPE_ATTR and (i == 0 or types[i - 1] != TYPE_ATTR)]
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [len(types)])]


def check_batch(batch: dict[str, torch.Tensor], histories: list[list[EncodedItem]], itok: ItemTokenizer) -> None:
    """Every invariant of ItemTokenizer.collate, for histories given oldest first."""
    cfg = itok.config
    keys = {"input_ids", "attention_mask", "global_attention_mask", "token_type_ids", "position_ids", "item_position_ids"}
    assert set(batch) == keys
    shape = batch["input_ids"].shape
    assert shape[0] == len(histories)
    for k in keys:
        assert batch[k].shape == shape and batch[k].dtype == torch.int64, k
    ids, att, glob = batch["input_ids"], batch["attention_mask"], batch["global_attention_mask"]
    types, pos, ipos = batch["token_type_ids"], batch["position_ids"], batch["item_position_ids"]
    lengths = att.sum(1)
    assert int(lengths.max()) <= shape[1]
    for b, history in enumerate(histories):
        n = int(lengths[b])
        assert torch.all(att[b, :n] == 1) and torch.all(att[b, n:] == 0)  # real tokens first, then padding
        assert 1 <= n <= cfg.max_tokens
        # [CLS]: type 0, item position 0, the only token with global attention
        assert ids[b, 0] == itok.cls_id and types[b, 0] == TYPE_CLS and ipos[b, 0] == 0 and pos[b, 0] == 0
        assert glob[b, 0] == 1 and int(glob[b].sum()) == 1
        # real tokens: names and values only; token positions 0..n-1
        assert set(types[b, 1:n].tolist()) <= {TYPE_ATTR, TYPE_VALUE}
        assert torch.equal(pos[b, :n], torch.arange(n))
        # padding: pad id, type 3, item position 0
        assert torch.all(ids[b, n:] == itok.pad_id) and torch.all(types[b, n:] == TYPE_PAD) and torch.all(ipos[b, n:] == 0)
        # items: most recent first, item position k = k-th most recent, each exactly its encoded tokens;
        # the kept items are the most recent ones that fit both caps (the oldest go first)
        exp_ids, exp_types, exp_ipos = [itok.cls_id], [TYPE_CLS], [0]
        for k, item in enumerate(reversed(history), start=1):
            if (cfg.max_items and k > cfg.max_items) or len(exp_ids) + len(item) > cfg.max_tokens:
                break
            exp_ids += item.ids.tolist()
            exp_types += item.types.tolist()
            exp_ipos += [k] * len(item)
        assert n == len(exp_ids)
        assert ids[b, :n].tolist() == exp_ids
        assert types[b, :n].tolist() == exp_types
        assert ipos[b, :n].tolist() == exp_ipos
        assert ipos[b].tolist()[1:n] == sorted(ipos[b].tolist()[1:n])
        if cfg.max_items:
            assert int(ipos[b].max()) <= cfg.max_items


# --- item sentences -----------------------------------------------------------------------------------

def test_item_sentence_follows_attribute_order_then_unlisted():
    attrs = {"colour": "red", "brand": "Fender", "size": "XL", "title": "Mustang amp", "categories": ""}
    assert item_sentence(attrs) == [("title", "Mustang amp"), ("brand", "Fender"), ("colour", "red"), ("size", "XL")]
    cfg = TextConfig(attribute_order=("brand", "title"), include_unlisted=False)
    assert item_sentence(attrs, cfg) == [("brand", "Fender"), ("title", "Mustang amp")]
    cfg = TextConfig(attribute_order=("size",))
    assert item_sentence(attrs, cfg) == [("size", "XL"), ("colour", "red"), ("brand", "Fender"), ("title", "Mustang amp")]


def test_item_sentence_drops_empty_values():
    attrs = {"title": "Mustang", "brand": "", "categories": "   ", "extra": "", "colour": " \t"}
    assert item_sentence(attrs) == [("title", "Mustang")]
    assert item_sentence({}) == []
    assert sentence_text({"brand": ""}) == ""


def test_sentence_text_format():
    assert sentence_text({"brand": "Y", "title": "X"}) == "title X brand Y"
    assert sentence_text({"title": "Fender Mustang amp", "brand": "Fender", "categories": "Amplifiers"}) == (
        "title Fender Mustang amp brand Fender categories Amplifiers"
    )


# --- encoding -----------------------------------------------------------------------------------------

def test_special_tokens_and_vocab_size(wp_tok, it):
    assert len(wp_tok) <= WORDPIECE_VOCAB
    assert it.vocab_size == len(wp_tok)
    for attr, token in SPECIAL_TOKENS.items():
        assert getattr(wp_tok, attr) == token
    assert (it.cls_id, it.pad_id, it.mask_id) == tuple(wp_tok.convert_tokens_to_ids(["[CLS]", "[PAD]", "[MASK]"]))
    assert len({it.cls_id, it.pad_id, it.mask_id}) == 3
    assert {it.cls_id, it.pad_id, it.mask_id} <= set(it.special_ids)
    # a smaller budget gives a smaller vocabulary, never above the budget
    small = train_tokenizer(SENTENCES, vocab_size=120, min_frequency=1)
    assert len(small) <= 120 < len(wp_tok)


def test_encoded_items_are_the_sentence_tokens(wp_tok, encoded):
    assert len(encoded) == len(CATALOGUE)
    for item, enc in zip(CATALOGUE[:40], encoded[:40]):
        assert enc.ids.dtype == np.int64 and enc.types.dtype == np.int64 and enc.words.dtype == np.int64
        assert len(enc.ids) == len(enc.types) == len(enc.words) == len(enc)
        # untruncated, the item's tokens are exactly the tokens of its sentence
        assert enc.ids.tolist() == wp_tok(sentence_text(item), add_special_tokens=False)["input_ids"]
        # names then values, per attribute, in sentence order
        spans = attribute_spans(enc.types)
        assert len(spans) == len(item_sentence(item))
        for span, (name, value) in zip(spans, item_sentence(item)):
            t = enc.types[span]
            n_name = int((t == TYPE_ATTR).sum())
            assert t.tolist() == [TYPE_ATTR] * n_name + [TYPE_VALUE] * (len(t) - n_name)
            assert enc.ids[span][:n_name].tolist() == wp_tok(name, add_special_tokens=False)["input_ids"]
            assert enc.ids[span][n_name:].tolist() == wp_tok(value, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("cap", [32, 8, 3])
def test_attribute_cap_name_and_value_together(wp_tok, cap):
    itok = ItemTokenizer(wp_tok, TextConfig(max_attr_tokens=cap))
    long_value = " ".join(f"Fender Mustang amp model {i}" for i in range(40))  # far above any cap
    item = {"title": long_value, "brand": "Fender", "description": long_value}
    (enc,) = itok.encode_items([item])
    spans = attribute_spans(enc.types)
    assert len(spans) == 3
    for span, (name, value) in zip(spans, item_sentence(item)):
        full = len(wp_tok(f"{name} {value}", add_special_tokens=False)["input_ids"])
        assert enc.types[span.start] == TYPE_ATTR
        assert len(enc.ids[span]) == min(cap, full)  # cut to the cap, name included
        # the cut keeps the start of the value
        assert enc.ids[span].tolist() == wp_tok(f"{name} {value}", add_special_tokens=False)["input_ids"][:cap]


def test_words_map_value_tokens_to_whitespace_words(wp_tok, it):
    item = {"title": "Fender Mustang amp", "brand": "Fender", "categories": "Zqxjv-Amplifiers, tubes"}
    (enc,) = it.encode_items([item])
    expected: list[int] = []
    word = 0
    for name, value in item_sentence(item):
        expected += [-1] * len(wp_tok(name, add_special_tokens=False)["input_ids"])
        for w in value.split():
            expected += [word] * len(wp_tok(w, add_special_tokens=False)["input_ids"])
            word += 1
    assert enc.words.tolist() == expected
    # attribute names are -1 and only there; value words count up across attributes
    assert np.array_equal(enc.words == -1, enc.types == TYPE_ATTR)
    values = enc.words[enc.types == TYPE_VALUE]
    assert values.tolist() == sorted(values.tolist()) and set(values.tolist()) == set(range(6))
    span = attribute_spans(enc.types)[0]
    title_words = enc.words[span][enc.types[span] == TYPE_VALUE].tolist()
    assert sorted(set(title_words)) == [0, 1, 2]
    # "Zqxjv-Amplifiers," is one whitespace word even though it becomes several pieces
    assert (enc.words == 4).sum() > 1


def test_encode_items_empty_and_attribute_less_items(it):
    assert it.encode_items([]) == []
    encs = it.encode_items([{}, {"title": ""}, {"title": "Fender"}])
    assert [len(e) for e in encs[:2]] == [0, 0]
    assert len(encs[2]) > 0
    batch = it.collate([[encs[0]], [encs[2]]])
    check_batch(batch, [[encs[0]], [encs[2]]], it)
    assert batch["attention_mask"][0].tolist()[:2] == [1, 0]  # only [CLS]


# --- collation ----------------------------------------------------------------------------------------

def test_collate_item_positions_reverse_the_history(it, encoded):
    history = encoded[:5]  # oldest first
    batch = it.collate([history])
    check_batch(batch, [history], it)
    ipos, ids = batch["item_position_ids"][0], batch["input_ids"][0]
    n = int(batch["attention_mask"][0].sum())
    assert n == 1 + sum(len(x) for x in history)
    # the most recent item comes right after [CLS], with item position 1
    first = history[-1]
    assert ids[1 : 1 + len(first)].tolist() == first.ids.tolist()
    assert torch.all(ipos[1 : 1 + len(first)] == 1)
    # the oldest item is last, with item position 5
    last = history[0]
    assert ids[n - len(last) : n].tolist() == last.ids.tolist()
    assert torch.all(ipos[n - len(last) : n] == 5)
    assert batch["token_type_ids"][0, 1 : 1 + len(first)].tolist() == first.types.tolist()


def test_collate_max_items_keeps_the_most_recent(wp_tok, encoded):
    itok = ItemTokenizer(wp_tok, TextConfig(max_items=4))
    history = encoded[:9]
    batch = itok.collate([history, encoded[10:12]])
    check_batch(batch, [history, encoded[10:12]], itok)
    assert int(batch["item_position_ids"][0].max()) == 4
    kept = batch["input_ids"][0][batch["item_position_ids"][0] > 0].tolist()
    assert kept == [t for x in reversed(history[-4:]) for t in x.ids.tolist()]
    assert int(batch["item_position_ids"][1].max()) == 2


@pytest.mark.parametrize("max_items,max_tokens", [(50, 1024), (4, 1024), (50, 40), (3, 25)])
def test_history_length_is_what_collate_gives(wp_tok, encoded, max_items, max_tokens):
    itok = ItemTokenizer(wp_tok, TextConfig(max_items=max_items, max_tokens=max_tokens))
    for history in (encoded[:1], encoded[:9], encoded[3:20]):
        assert itok.history_length(history) == int(itok.collate([history])["attention_mask"].sum())


def test_group_by_length_batches_similar_lengths_and_keeps_every_pair():
    import numpy as np

    from jepa4rec.batches import Pair, group_by_length

    pairs = [Pair(0, (i,), i) for i in range(1000)]
    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 500, 1000)]
    grouped = group_by_length(pairs, lengths, batch_size=16, rng=np.random.default_rng(1), window=8)
    assert sorted(p.target for p in grouped) == list(range(1000))
    batches = [grouped[b:b + 16] for b in range(0, 992, 16)]
    spread = np.mean([max(lengths[p.target] for p in b) - min(lengths[p.target] for p in b) for b in batches])
    assert spread < 100  # 8 batches share a window of 128 lengths in 5..500; random batches of 16 spread ~430
    # batches are shuffled across windows, not left in window order
    assert [min(p.target for p in b) // 128 for b in batches] != sorted(min(p.target for p in b) // 128 for b in batches)
    with pytest.raises(ValueError, match="lengths"):
        group_by_length(pairs, lengths[:5], 16, np.random.default_rng(0))


def test_collate_max_tokens_keeps_the_most_recent(wp_tok, encoded):
    lengths = [len(e) for e in encoded[:8]]
    budget = 1 + lengths[-1] + lengths[-2] + lengths[-3] + 1  # three most recent fit, the fourth does not
    assert lengths[-4] > 1
    itok = ItemTokenizer(wp_tok, TextConfig(max_tokens=budget))
    history = encoded[:8]
    batch = itok.collate([history])
    check_batch(batch, [history], itok)
    assert int(batch["item_position_ids"][0].max()) == 3
    assert int(batch["attention_mask"][0].sum()) == budget - 1 <= budget
    # exactly at the budget, all of it is used
    itok = ItemTokenizer(wp_tok, TextConfig(max_tokens=budget - 1))
    batch = itok.collate([history])
    check_batch(batch, [history], itok)
    assert int(batch["attention_mask"][0].sum()) == budget - 1 and int(batch["item_position_ids"][0].max()) == 3


def test_collate_max_tokens_never_skips_to_an_older_item(wp_tok, it):
    short, long_, recent = it.encode_items([{"title": "amp"}, CATALOGUE[5], {"title": "tuner", "brand": "Korg"}])
    assert len(short) < len(long_)
    itok = ItemTokenizer(wp_tok, TextConfig(max_tokens=1 + len(recent) + len(short)))
    history = [short, long_, recent]  # the long item does not fit; the older short one would, but it is older
    batch = itok.collate([history])
    check_batch(batch, [history], itok)
    assert batch["input_ids"][0].tolist()[: 1 + len(recent)] == [itok.cls_id] + recent.ids.tolist()
    assert int(batch["item_position_ids"][0].max()) == 1


def test_collate_default_caps_on_a_long_history(it, encoded):
    history = [encoded[i % len(encoded)] for i in range(120)]  # 120 items > max_items = 50
    batch = it.collate([history, history[:3]])
    check_batch(batch, [history, history[:3]], it)
    n_kept = int(batch["item_position_ids"][0].max())
    n = int(batch["attention_mask"][0].sum())
    assert n <= 1024 and n_kept <= 50
    assert n_kept == 50 or n + len(history[-(n_kept + 1)]) > 1024


def test_collate_pads_rows_of_different_lengths(it, encoded):
    histories = [encoded[:1], encoded[3:7], encoded[20:22]]
    batch = it.collate(histories)
    check_batch(batch, histories, it)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths == [1 + sum(len(x) for x in h) for h in histories]
    assert batch["input_ids"].shape[1] == max(lengths)
    longest = max(lengths)
    for mult in (8, 64, longest):
        padded = it.collate(histories, pad_to_multiple_of=mult)
        check_batch(padded, histories, it)
        L = padded["input_ids"].shape[1]
        assert L % mult == 0 and L - mult < longest <= L
        for k in batch:  # the real part does not move
            assert torch.equal(padded[k][:, : batch[k].shape[1]], batch[k])


def test_collate_items_is_cls_plus_item(it, encoded):
    items = encoded[:6]
    batch = it.collate_items(items, pad_to_multiple_of=4)
    check_batch(batch, [[x] for x in items], it)
    assert batch["input_ids"].shape[1] % 4 == 0
    for b, item in enumerate(items):
        n = 1 + len(item)
        assert batch["input_ids"][b, :n].tolist() == [it.cls_id] + item.ids.tolist()
        assert batch["item_position_ids"][b, :n].tolist() == [0] + [1] * len(item)
        assert batch["token_type_ids"][b, :n].tolist() == [TYPE_CLS] + item.types.tolist()


# --- saving and loading -------------------------------------------------------------------------------

def test_save_and_reload_gives_identical_encodings(wp_tok, tmp_path):
    cfg = TextConfig(attribute_order=("brand", "title"), include_unlisted=False, max_attr_tokens=6, max_items=3, max_tokens=40)
    itok = ItemTokenizer(wp_tok, cfg)
    itok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "text_config.json").exists()
    again = ItemTokenizer.from_pretrained(tmp_path / "tok")
    assert again.config == cfg and isinstance(again.config.attribute_order, tuple)
    assert (again.cls_id, again.pad_id, again.mask_id, again.vocab_size) == (itok.cls_id, itok.pad_id, itok.mask_id, itok.vocab_size)
    a, b = itok.encode_items(CATALOGUE[:30]), again.encode_items(CATALOGUE[:30])
    for x, y in zip(a, b):
        assert np.array_equal(x.ids, y.ids) and np.array_equal(x.types, y.types) and np.array_equal(x.words, y.words)
    assert all((x.types == TYPE_ATTR).any() for x in a)
    histories = [a[:7], a[10:12]]
    ba, bb = itok.collate(histories, pad_to_multiple_of=8), again.collate([b[:7], b[10:12]], pad_to_multiple_of=8)
    check_batch(ba, histories, itok)
    for k in ba:
        assert torch.equal(ba[k], bb[k])


def test_text_config_round_trip_and_default_when_missing(wp_tok, tmp_path):
    cfg = TextConfig(attribute_order=("title",), max_tokens=100)
    assert TextConfig.from_dict(cfg.to_dict()) == cfg
    assert TextConfig.from_dict({**cfg.to_dict(), "unknown_key": 1}) == cfg
    wp_tok.save_pretrained(tmp_path / "plain")  # no text_config.json
    assert ItemTokenizer.from_pretrained(tmp_path / "plain").config == TextConfig()


def _byte_level_tokenizer(with_mask: bool = True):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>"] + (["<mask>"] if with_mask else [])
    bpe.train_from_iterator(SENTENCES, vocab_size=400, min_frequency=1, special_tokens=specials)
    kwargs = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>")
    if with_mask:
        kwargs["mask_token"] = "<mask>"
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, **kwargs)


def test_pretrained_byte_level_tokenizer_from_a_local_dir(tmp_path):
    _byte_level_tokenizer().save_pretrained(tmp_path / "roberta_like")
    tok = load_tokenizer(tmp_path / "roberta_like")
    itok = ItemTokenizer(tok)
    assert (itok.cls_id, itok.pad_id, itok.mask_id) == tuple(tok.convert_tokens_to_ids(["<s>", "<pad>", "<mask>"]))
    assert itok.cls_id != itok.pad_id != itok.mask_id
    encs = itok.encode_items(CATALOGUE[:20])
    for item, enc in zip(CATALOGUE[:20], encs):
        # each word is encoded as it stands inside a sentence (with its leading space, "Ġword")
        assert enc.ids.tolist() == tok(" " + sentence_text(item), add_special_tokens=False)["input_ids"]
        assert enc.words.max() == len(" ".join(v for _, v in item_sentence(item)).split()) - 1
    assert "Ġbrand" in tok.convert_ids_to_tokens(encs[0].ids.tolist())
    histories = [encs[:5], encs[7:8]]
    batch = itok.collate(histories, pad_to_multiple_of=16)
    check_batch(batch, histories, itok)
    assert batch["input_ids"][0, 0] == tok.convert_tokens_to_ids("<s>")
    # and through ItemTokenizer's own save / load
    itok.save_pretrained(tmp_path / "again")
    again = ItemTokenizer.from_pretrained(tmp_path / "again")
    assert [e.ids.tolist() for e in again.encode_items(CATALOGUE[:20])] == [e.ids.tolist() for e in encs]


def test_load_tokenizer_without_mask_token_fails_clearly(tmp_path):
    _byte_level_tokenizer(with_mask=False).save_pretrained(tmp_path / "no_mask")
    with pytest.raises(ValueError, match="mask_token"):
        load_tokenizer(tmp_path / "no_mask")


def test_load_tokenizer_missing_dir_does_not_reach_a_hub(tmp_path):
    with pytest.raises(Exception):
        load_tokenizer(tmp_path / "does_not_exist")


# --- real data ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.shared_data
def test_scientific_unisrec_items_and_histories(shared_root):
    from jepa4rec.data import load_dataset

    ds = load_dataset("Scientific_UniSRec")
    tok = train_tokenizer((sentence_text(x) for x in ds.items), vocab_size=4000)
    assert len(tok) <= 4000
    itok = ItemTokenizer(tok)
    encs = itok.encode_items(ds.items)
    assert len(encs) == ds.n_items
    for enc in encs:
        assert len(enc) > 0
        for span in attribute_spans(enc.types):
            assert span.stop - span.start <= 32
        assert np.array_equal(enc.words == -1, enc.types == TYPE_ATTR)
    histories = [[encs[i] for i in seq] for seq in ds.sequences[:16]]
    check_batch(itok.collate(histories, pad_to_multiple_of=8), histories, itok)
    # with tight caps, on the same users
    tight = ItemTokenizer(tok, TextConfig(max_items=3, max_tokens=120))
    batch = tight.collate(histories)
    check_batch(batch, histories, tight)
    assert int(batch["attention_mask"].sum(1).max()) <= 120 and int(batch["item_position_ids"].max()) <= 3
