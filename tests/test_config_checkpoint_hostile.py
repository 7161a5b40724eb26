"""Bad options and damaged model folders end in one named error (ConfigError / CheckpointError), never a
traceback or a silently different run or model."""
from __future__ import annotations

import json
import shutil

import pytest

from jepa4rec.checkpoint import WEIGHTS_INDEX, CheckpointError, load_model_dir
from jepa4rec.config import FinetuneConfig, PretrainConfig, load_config
from jepa4rec.errors import ConfigError


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["jepa4rec.pretrain", "jepa4rec.finetune"])
def test_repeated_set_flags_add_up(module, capsys):
    import importlib

    importlib.import_module(module).main(["--print-config", "--set", "batch_size=4", "--set", "seed=1", "optim.lr=1e-4"])
    out = capsys.readouterr().out
    assert "batch_size: 4\n" in out and "seed: 1\n" in out and "lr: 0.0001\n" in out


def test_a_float_written_with_an_exponent_is_a_float_in_set_and_in_files(tmp_path):
    assert load_config(PretrainConfig, None, ["optim.lr=1e-4", "optim.betas=[0.9, 1e-3]"]).optim.lr == 1e-4
    (tmp_path / "lr.yaml").write_text("optim:\n  lr: 1e-4\nloss:\n  temperature: 5e-2\n")
    cfg = load_config(FinetuneConfig, tmp_path / "lr.yaml")
    assert cfg.optim.lr == 1e-4 and cfg.loss.temperature == 0.05
    with pytest.raises(ConfigError, match="option 'batch_size' of PretrainConfig must be int, got '1e3'"):
        load_config(PretrainConfig, None, ["batch_size=1e3"])  # an int field stays an int


IMPOSSIBLE = [
    (PretrainConfig, "batch_size=0", "batch_size"), (FinetuneConfig, "batch_size=-1", "batch_size"),
    (PretrainConfig, "optim.lr=-1", "optim.lr"), (PretrainConfig, "optim.lr=.nan", "optim.lr"),
    (FinetuneConfig, "optim.lr=nan", "optim.lr"), (PretrainConfig, "optim.betas=[0.9]", "optim.betas"),
    (PretrainConfig, "optim.betas=[0.9, 1.0]", "optim.betas"), (PretrainConfig, "optim.betas=[a, b]", "optim.betas"),
    (PretrainConfig, "optim.grad_accum=0", "optim.grad_accum"), (PretrainConfig, "keep_checkpoints=0", "keep_checkpoints"),
    (PretrainConfig, "max_items=0", "max_items"), (FinetuneConfig, "max_items=0", "max_items"),
    (PretrainConfig, "max_steps=0", "max_steps"), (PretrainConfig, "loss.temperature=0", "loss.temperature"),
    (FinetuneConfig, "loss.temperature=-0.1", "loss.temperature"),
    (PretrainConfig, "loss.history_mask_ratio=1.5", "loss.history_mask_ratio"),
    (FinetuneConfig, "loss.next_item_mask_ratio=-0.1", "loss.next_item_mask_ratio"),
    (PretrainConfig, "domains=[]", "domains"), (FinetuneConfig, "select_metric=NDCG@7", "select_metric"),
    (PretrainConfig, "model.hidden_size=130", "model.hidden_size"),
    (FinetuneConfig, "model.num_attention_heads=3", "model.hidden_size"),
    (PretrainConfig, "model.num_attention_heads=0", "model.num_attention_heads"),
]


@pytest.mark.parametrize("cls, override, named", IMPOSSIBLE)
def test_impossible_values_are_refused_by_name(cls, override, named):
    with pytest.raises(ConfigError, match=f"option '{named}'"):
        load_config(cls, None, [override])


def test_an_impossible_value_is_one_line_and_writes_nothing(tmp_path, capsys):
    from jepa4rec.pretrain import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["--set", "max_steps=0", "--output-dir", str(out)])
    assert exit_.value.code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: option 'max_steps' must be ≥ 1, got 0 — ") and err.count("\n") == 1


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("dataset: Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml: not UTF-8"):
        load_config(FinetuneConfig, path)


@pytest.mark.parametrize("text, key", [("batch_size: 4\nbatch_size: 8\n", "batch_size"),
                                       ("optim:\n  lr: 0.1\n  lr: 0.2\n", "lr")])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, text, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"dup.yaml: option '{key}' is given twice"):
        load_config(FinetuneConfig, path)


# --- model folders --------------------------------------------------------------------------------

@pytest.fixture
def model_dir(finetuned, tmp_path):
    """A copy of the small fine-tuned model, to damage."""
    cfg, _ = finetuned
    return shutil.copytree(f"{cfg.output_dir}/best", tmp_path / "model")


@pytest.fixture
def sharded_dir(model_dir):
    """The same model in two shards with an index, as transformers writes a large one."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir / "model.safetensors"))
    (model_dir / "model.safetensors").unlink()
    keys = sorted(state)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:]), 1):
        name = f"model-0000{i}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(model_dir / name))
        weight_map.update(dict.fromkeys(part, name))
    (model_dir / WEIGHTS_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    load_model_dir(model_dir)  # loads as it is
    return model_dir


@pytest.mark.parametrize("name", ["config.json", "text_config.json", "tokenizer_config.json", "training_card.json"])
@pytest.mark.parametrize("text, said", [("{\n  \"a\": 1,\n  oops\n}", "not valid JSON \\(line 3\\)"), ("", "not valid JSON"),
                                        ("[1, 2]", "expected a JSON object")])
def test_a_damaged_json_file_is_named(model_dir, name, text, said):
    (model_dir / name).write_text(text)
    with pytest.raises(CheckpointError, match=f"{name}: {said}"):
        load_model_dir(model_dir)


@pytest.mark.parametrize("index, said", [("{oops", "not valid JSON"), ('{"metadata": {}}', "no weight_map"),
                                         ('{"weight_map": {}}', "no weight_map")])
def test_a_damaged_index_is_named(sharded_dir, index, said):
    (sharded_dir / WEIGHTS_INDEX).write_text(index)
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_INDEX}: {said}"):
        load_model_dir(sharded_dir)


def test_a_missing_shard_is_named_as_missing(sharded_dir):
    (sharded_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=f"shard model-00002-of-00002.safetensors listed in {WEIGHTS_INDEX} is missing"):
        load_model_dir(sharded_dir)


def _edit_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


def test_a_tensor_of_the_wrong_shape_is_named_with_its_file(model_dir):
    key = "encoder.embeddings.position_embeddings.weight"
    _edit_weights(model_dir, lambda s: s.__setitem__(key, s[key][:-1].clone()))
    with pytest.raises(CheckpointError, match=f"model.safetensors: tensor {key} has shape") as err:
        load_model_dir(model_dir)
    assert err.value.hint == CheckpointError.hint  # copy or rebuild, not the resume hint


# (The score priors may be absent: a directory saved before they were weights has none, which reads as 0.)
@pytest.mark.parametrize("edit, said", [(lambda s: s.pop(sorted(k for k in s if not k.startswith("score_priors"))[-1]),
                                         "missing \\['"),
                                        (lambda s: s.__setitem__("bogus.weight", s[sorted(s)[0]].clone()), "unexpected \\['bogus.weight'\\]")])
def test_a_missing_or_extra_tensor_is_named(model_dir, edit, said):
    _edit_weights(model_dir, edit)
    with pytest.raises(CheckpointError, match=said) as err:
        load_model_dir(model_dir)
    assert err.value.hint == CheckpointError.hint


def test_a_missing_tensor_names_the_shard_that_should_hold_it(sharded_dir):
    from safetensors.torch import load_file, save_file

    shard = sharded_dir / "model-00002-of-00002.safetensors"
    state = load_file(str(shard))
    state.pop(sorted(state)[0])
    save_file(state, str(shard))
    with pytest.raises(CheckpointError, match="shards: model-00002-of-00002.safetensors"):
        load_model_dir(sharded_dir)


@pytest.mark.parametrize("change, said", [
    ({"num_attention_heads": 3}, "config.json: num_attention_heads \\(3\\) does not divide hidden_size"),
    ({"hidden_size": "128"}, "config.json: hidden_size must be a whole number"),
    ({"vocab_size": 9999}, "model.safetensors: tensor encoder.embeddings.word_embeddings.weight has shape .*/config.json"),
    ({"max_position_embeddings": 4096}, "tensor encoder.embeddings.position_embeddings.weight has shape .*/config.json"),
])
def test_a_config_that_does_not_fit_the_weights_is_named(model_dir, change, said):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=said):
        load_model_dir(model_dir)


def test_a_damaged_model_folder_is_one_line_in_a_command(model_dir, tmp_path, capsys):
    from jepa4rec.recommend import main

    (model_dir / "config.json").write_text("[]")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,Toy Story\nb,GoldenEye\nc,Heat\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(model_dir), "--items", str(items), "--history", "a", "b", "--k", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {model_dir / 'config.json'}: expected a JSON object")


# --- the index against the shards, the weights' values, text_config.json -----------------------------

def test_a_tensor_the_index_places_in_another_shard_is_refused(sharded_dir):
    from safetensors.torch import load_file, save_file

    first, second = (sharded_dir / f"model-0000{i}-of-00002.safetensors" for i in (1, 2))
    extra = load_file(str(first))
    key = sorted(extra)[0]
    save_file({**load_file(str(second)), key: extra[key]}, str(second))  # the same tensor in two shards
    with pytest.raises(CheckpointError, match=f"00002.safetensors: holds tensor {key}, but {WEIGHTS_INDEX} lists it in"):
        load_model_dir(sharded_dir)


def test_a_key_given_twice_in_the_index_is_refused(sharded_dir):
    text = (sharded_dir / WEIGHTS_INDEX).read_text()
    (sharded_dir / WEIGHTS_INDEX).write_text(text.replace('"weight_map": {', '"weight_map": {"a.b": "x", "a.b": "y", ', 1))
    with pytest.raises(CheckpointError, match="key 'a.b' appears twice"):
        load_model_dir(sharded_dir)


@pytest.mark.parametrize("value, said", [(float("nan"), "holds NaN or infinite values"), (None, "holds torch.int64")])
def test_weights_that_are_nan_or_not_floats_are_refused(model_dir, value, said):
    key = "encoder.embeddings.position_embeddings.weight"

    def edit(state):
        state[key] = state[key].clone().fill_(value) if value is not None else state[key].long()

    _edit_weights(model_dir, edit)
    with pytest.raises(CheckpointError, match=f"tensor {key} {said}"):
        load_model_dir(model_dir)


@pytest.mark.parametrize("change, said", [({"max_itemz": 3}, "unknown keys \\['max_itemz'\\]"),
                                          ({"max_tokens": 0}, "max_tokens must be a whole number"),
                                          ({"max_tokens": "many"}, "max_tokens must be a whole number"),
                                          ({"max_tokens": 100000}, "max_tokens 100000 does not fit config.json's")])
def test_a_text_config_that_would_change_the_sentences_is_refused(model_dir, change, said):
    data = json.loads((model_dir / "text_config.json").read_text())
    (model_dir / "text_config.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(CheckpointError, match=f"text_config.json: {said}"):
        load_model_dir(model_dir)


def test_setting_one_option_of_a_section_keeps_the_others_of_this_config():
    cfg = load_config(FinetuneConfig, None, ["optim.warmup_steps=5"])
    assert cfg.optim.lr == FinetuneConfig().optim.lr == 5e-5  # not OptimConfig's pre-training 5e-4


def test_changed_options_names_each_option_a_resumed_run_changes():
    """What a resumed run warns of: each option that differs from its checkpoint's, sections dotted, the model's
    overrides as one dict, runtime options left out."""
    from jepa4rec.config import FinetuneConfig, OptimConfig, to_dict
    from jepa4rec.options import changed_options

    before = FinetuneConfig(batch_size=16, optim=OptimConfig(lr=5e-5), model={"pooling": "mean"}, max_minutes=30)
    after = FinetuneConfig(batch_size=8, optim=OptimConfig(lr=1e-4), model={"pooling": "mean"}, max_minutes=60)
    assert changed_options(to_dict(before), after, FinetuneConfig.RUNTIME_OPTIONS) == [
        "batch_size: 16 -> 8", "optim.lr: 5e-05 -> 0.0001"]
    assert changed_options(to_dict(before), before, FinetuneConfig.RUNTIME_OPTIONS) == []
    assert changed_options(to_dict(before), after) == ["batch_size: 16 -> 8", "max_minutes: 30 -> 60",
                                                       "optim.lr: 5e-05 -> 0.0001"]
    other_model = FinetuneConfig(batch_size=16, optim=OptimConfig(lr=5e-5), model={}, max_minutes=30)
    assert changed_options(to_dict(before), other_model) == ["model: {'pooling': 'mean'} -> {}"]
