"""Token-embedding initialisation from WordLlama's static vectors (jepa4rec.wordinit), on the real
wordllama package (requirements-dev.txt installs it)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jepa4rec.config import FinetuneConfig, PretrainConfig
from jepa4rec.text import train_tokenizer
from jepa4rec.wordinit import init_token_embeddings, wordllama_embeddings

SENTENCES = ["title red electric guitar strings brand fender", "title acoustic guitar capo brand yamaha",
             "title digital microscope slides brand amscope", "title lab microscope lamp brand omax",
             "title guitars and guitar picks", "title microscopes for labs"] * 3


def test_related_words_start_closer_than_unrelated_ones():
    tok = train_tokenizer(SENTENCES, vocab_size=120, min_frequency=1)
    vectors, covered, report = wordllama_embeddings(tok, 32, std=0.02, generator=torch.Generator().manual_seed(0))
    vocab = tok.get_vocab()
    assert report.covered == covered.sum() and report.dims_copied == 32
    # Special tokens keep random vectors; every ordinary word gets one.
    assert not covered[vocab["[PAD]"]] and not covered[vocab["[MASK]"]]
    assert covered[vocab["guitar"]] and covered[vocab["microscope"]]
    assert abs(vectors[covered].std().item() - 0.02) < 0.002

    def cos(a, b):
        return F.cosine_similarity(vectors[vocab[a]], vectors[vocab[b]], dim=0).item()

    assert cos("guitar", "acoustic") > cos("guitar", "microscope") + 0.1
    assert cos("microscope", "lab") > cos("microscope", "fender") + 0.1


def test_scratch_finetune_model_takes_the_vectors(toy, tmp_path):
    from jepa4rec.data import load_dataset
    from jepa4rec.finetuning import build_model
    from toy_corpus import TINY_MODEL

    cfg = FinetuneConfig(output_dir=str(tmp_path), dataset=toy, model=dict(TINY_MODEL), vocab_size=200,
                         max_items=10, max_tokens=128, token_init="wordllama", progress=False)
    model, tok, _ = build_model(cfg, load_dataset(toy))
    weight = model.get_input_embeddings().weight
    vectors, covered, _ = wordllama_embeddings(tok.tokenizer, weight.shape[1], std=model.config.initializer_range)
    assert covered.sum() > 0.9 * len(tok.tokenizer) - len(tok.special_ids)
    assert torch.allclose(weight[covered], vectors[covered])
    assert weight[tok.pad_id].abs().sum() == 0
    # The MLM decoder is tied to the token embedding, so it starts from the same vectors.
    assert model.mlm_head.decoder.weight.data_ptr() == weight.data_ptr()


@pytest.mark.parametrize("as_wheel", [False, True])
def test_package_directory_and_wheel_are_sources_too(tmp_path, as_wheel):
    import zipfile

    from jepa4rec.modeling import JEPA4RecModel, JepaConfig
    from jepa4rec.wordinit import TOKENIZER, WEIGHTS

    site = Path(list(importlib.util.find_spec("wordllama").submodule_search_locations)[0]).parent
    source = site / "wordllama"
    if as_wheel:  # the two files a wordllama wheel holds, at their wheel paths
        source = tmp_path / "wordllama-0.4.0-py3-none-any.whl"
        with zipfile.ZipFile(source, "w") as whl:
            for rel in (WEIGHTS, TOKENIZER):
                whl.write(site / rel, rel)
    tok = train_tokenizer(SENTENCES, vocab_size=120, min_frequency=1)
    model = JEPA4RecModel(JepaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, attention_window=16, pad_token_id=tok.pad_token_id))
    report = init_token_embeddings(model, tok, str(source))
    reference, covered, _ = wordllama_embeddings(tok, 16)
    assert report.covered == covered.sum() > 0.5 * len(tok) and report.dims_copied == 16
    assert torch.allclose(model.get_input_embeddings().weight[covered], reference[covered])


def test_bad_source_and_conflicting_options_are_named(tmp_path):
    tok = train_tokenizer(SENTENCES, vocab_size=120, min_frequency=1)
    with pytest.raises(FileNotFoundError, match="wordllama/weights"):
        wordllama_embeddings(tok, 16, source=str(tmp_path))
    with pytest.raises(ValueError, match="token_init"):
        FinetuneConfig(init_from=str(tmp_path), token_init="wordllama")
    with pytest.raises(ValueError, match="token_init"):
        PretrainConfig(init_from=str(tmp_path), token_init="wordllama")
