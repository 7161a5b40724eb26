"""Shared steps of the experiment commands (jepa4rec.experiments)."""
from __future__ import annotations

import json
import os

import pytest

from jepa4rec.experiments import matched_pretraining


def _card(tmp_path, step, **config):
    (tmp_path / "training_card.json").write_text(json.dumps({"step": step, "config": {"seed": 7, **config}}))
    return tmp_path


@pytest.mark.parametrize("config, schedule", [
    # Stopped by its 27-minute budget at step 1,410 of a 1,700-step schedule: the new run must stop at
    # 1,410 with the same, unfinished, schedules.
    ({"max_steps": 1700, "schedule_steps": None, "max_minutes": 27}, 1700),
    ({"max_steps": 1410, "schedule_steps": 1700}, 1700),
    ({"max_steps": 1410}, 1410),
])
def test_matched_pretraining_keeps_the_schedule_the_checkpoint_ran(tmp_path, config, schedule):
    card, overrides = matched_pretraining(_card(tmp_path, 1410, **config))
    assert f"schedule_steps={schedule}" in overrides
    assert "max_steps=1410" in overrides and "seed=7" in overrides and "max_minutes=null" in overrides
    assert f"tokenizer={tmp_path}" in overrides


def test_a_run_is_reused_only_with_the_options_it_was_made_with(tmp_path):
    from jepa4rec.config import FinetuneConfig, to_dict
    from jepa4rec.experiments import check_reusable

    cfg = FinetuneConfig(dataset="Toy", epochs=3, output_dir=str(tmp_path / "a"))
    stored = to_dict(cfg)
    check_reusable(tmp_path, {**stored, "output_dir": "elsewhere", "progress": False}, cfg)  # irrelevant options
    # An option the run predates counts as its default; one removed since is ignored.
    del stored["token_init"]
    check_reusable(tmp_path, {**stored, "fresh_targets": False}, cfg)
    with pytest.raises(ValueError, match=r"epochs: run has 5, asked 3"):
        check_reusable(tmp_path, {**stored, "epochs": 5}, cfg)
    with pytest.raises(ValueError, match=r"optim\.lr"):
        check_reusable(tmp_path, {**stored, "optim": {**stored["optim"], "lr": 1.0}}, cfg)


def test_matched_pretraining_of_a_language_model_run_starts_from_that_model(tmp_path):
    """A checkpoint pre-trained from MiniLM is matched by starting from MiniLM (weights and tokenizer), not
    by re-using its tokenizer over random weights; the config accepts the overrides."""
    from jepa4rec.config import PretrainConfig, load_config

    card, overrides = matched_pretraining(_card(tmp_path, 300, max_steps=600, init_from="minilm", model_size="minilm"))
    assert "init_from=minilm" in overrides and not any(o.startswith("tokenizer=") for o in overrides)
    cfg = load_config(PretrainConfig, "pretrain_minilm", overrides)
    assert cfg.init_from == "minilm" and cfg.max_steps == 300 and cfg.schedule_steps == 600


def test_matched_pretraining_carries_every_option_the_checkpoint_was_trained_with(tmp_path):
    """Pooling, batches, learning rates and losses come from the checkpoint, not from the config file the
    new run starts from; what the caller adds after them wins; options removed since are dropped."""
    from jepa4rec.config import PretrainConfig, load_config

    card, overrides = matched_pretraining(_card(
        tmp_path, 365, max_steps=365, init_from="minilm", model_size="minilm", model={"pooling": "recency"},
        batch_domains="single", optim={"encoder_lr": 5e-06, "pooling_lr": 0.01}, loss={"lambda_map": 0.0},
        output_dir="runs/elsewhere", domains=["A", "B"], an_option_since_removed=3))
    cfg = load_config(PretrainConfig, "pretrain_minilm", [*overrides, "domains=[C]", "loss.lambda_mlm=0"])
    assert cfg.model == {"pooling": "recency"} and cfg.batch_domains == "single"
    assert (cfg.optim.encoder_lr, cfg.optim.pooling_lr, cfg.loss.lambda_map) == (5e-06, 0.01, 0.0)
    assert cfg.domains == ["C"] and cfg.loss.lambda_mlm == 0 and cfg.output_dir != "runs/elsewhere"
    assert cfg.optim.lr == load_config(PretrainConfig, "pretrain_minilm").optim.lr  # the card predates it


def test_finetuning_loss_options_are_spelled_loss_dot_and_the_flat_spelling_is_still_read(tmp_path):
    """Fine-tuning spells its loss options as pre-training does (loss.*); the former flat spelling still
    works, in a file or a --set, with a warning, and a run stored with it is reused by the same options."""
    import yaml

    from jepa4rec.config import FinetuneConfig, load_config, to_dict
    from jepa4rec.experiments import check_reusable

    new = load_config(FinetuneConfig, None, ["loss.lambda_map=0.1", "loss.temperature=0.07"])
    assert (new.loss.lambda_map, new.loss.temperature) == (0.1, 0.07)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"lambda_map": 0.1, "temperature": 0.05}))
    with pytest.warns(FutureWarning) as warned:
        old = load_config(FinetuneConfig, tmp_path / "old.yaml", ["temperature=0.07"])  # the --set wins
    assert old == new
    assert "option 'lambda_map' of FinetuneConfig is spelled 'loss.lambda_map' now" in {str(w.message).split(";")[0] for w in warned}
    with pytest.raises(ValueError, match="old spelling of 'loss.lambda_map'"):
        load_config(FinetuneConfig, None, ["lambda_map=0.1", "loss.lambda_map=0.2"])
    stored = to_dict(new)
    stored.update(stored.pop("loss"))  # as a run made before the move stored it
    check_reusable(tmp_path, stored, new)
    with pytest.raises(ValueError, match=r"loss\.lambda_map: run has 0\.1, asked 0\.0"):
        check_reusable(tmp_path, stored, FinetuneConfig(loss=type(new.loss)(temperature=0.07)))


def test_measured_with_names_the_encoder_family_a_result_file_records(tmp_path):
    from jepa4rec.experiments import ENCODER_FAMILIES, measured_with

    minilm = tmp_path / "a.json"
    minilm.write_text(json.dumps({"config": {"jepa": "checkpoints/jepa4rec-minilm-pretrain"}, "rows": []}))
    both = tmp_path / "b.json"
    both.write_text(json.dumps({"meta": {"runs": [{"config": "pretrain_tiny"}, {"init_from": "MiniLM"}]}}))
    ids_only = tmp_path / "c.json"
    ids_only.write_text(json.dumps({"records": [{"model": "SASRec", "config": {"hidden_size": 64}}]}))
    broken = tmp_path / "d.json"
    broken.write_text("{not json")
    assert measured_with(minilm) == [ENCODER_FAMILIES["minilm"]]
    assert measured_with(both) == [ENCODER_FAMILIES["minilm"], ENCODER_FAMILIES["tiny"]]
    assert measured_with(ids_only) == [] and measured_with(broken) == [] and measured_with(tmp_path / "none.json") == []


def test_a_checkpoints_runs_default_to_the_configs_of_its_size(tmp_path):
    """A MiniLM-sized checkpoint is fine-tuned and matched with the MiniLM configs unless told otherwise
    (the tiny model's learning rates and lengths would silently apply to it); an unknown size is tiny."""
    from jepa4rec.experiments import config_for

    assert config_for("checkpoints/jepa4rec-minilm-pretrain", "finetune") == "finetune_minilm"
    assert config_for("checkpoints/jepa4rec-minilm-pretrain", "pretrain") == "pretrain_minilm"
    assert config_for("checkpoints/jepa4rec-tiny-pretrain", "finetune") == "finetune_tiny"
    assert config_for(_card(tmp_path, 5, model_size="small"), "finetune") == "finetune_tiny"  # no finetune_small.yaml
    assert config_for(tmp_path / "missing", "pretrain") == "pretrain_tiny"


def test_a_chart_names_the_command_line_that_wrote_it(tmp_path):
    from jepa4rec.experiments import EXPERIMENTS, recorded_command, write_results

    exp = next(e for e in EXPERIMENTS if e.stem == "zeroshot")
    write_results("zeroshot", [{"dataset": "D", "model": "M", "metric": "NDCG@10", "value": 0.1}], {}, tmp_path)
    meta = json.loads((tmp_path / "zeroshot.json").read_text())
    meta["meta"]["command"] = "reproduce_pretrain_data.py --jepa checkpoints/jepa4rec-minilm-pretrain --threads 1"
    (tmp_path / "zeroshot.json").write_text(json.dumps(meta))
    assert recorded_command(tmp_path / "zeroshot.json", exp) == (
        "python scripts/reproduce_pretrain_data.py --jepa checkpoints/jepa4rec-minilm-pretrain --threads 1")
    # Written by something else (a test runner), unreadable or missing: the experiment's own command.
    meta["meta"]["command"] = "pytest -q"
    (tmp_path / "zeroshot.json").write_text(json.dumps(meta))
    assert recorded_command(tmp_path / "zeroshot.json", exp) == exp.command
    (tmp_path / "broken.json").write_text("{")
    assert recorded_command(tmp_path / "broken.json", exp) == recorded_command(tmp_path / "none.json", exp) == exp.command


@pytest.mark.slow
def test_an_evaluation_is_reused_until_the_checkpoint_or_the_question_changes(finetuned, toy, tmp_path, capsys):
    import shutil

    from jepa4rec.data import load_dataset
    from jepa4rec.experiments import evaluate_test_split

    cfg, _ = finetuned
    checkpoint = tmp_path / "model"
    shutil.copytree(f"{cfg.output_dir}/best", checkpoint)
    dataset, cache = load_dataset(toy), tmp_path / "evaluations"
    first = evaluate_test_split(checkpoint, dataset, cache_dir=cache)
    assert first["users"] == dataset.n_users and len(list(cache.glob("*.json"))) == 1
    capsys.readouterr()

    assert evaluate_test_split(checkpoint, dataset, cache_dir=cache) == first
    assert "reusing the evaluation" in capsys.readouterr().out

    # Another question (fewer users) is measured, and kept beside the first answer.
    fewer = evaluate_test_split(checkpoint, dataset, max_users=10, cache_dir=cache)
    assert fewer["users"] == 10 and len(list(cache.glob("*.json"))) == 2

    # Weights written again into the same folder are measured again, not read from the cache.
    capsys.readouterr()
    weights = next(checkpoint.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    again = evaluate_test_split(checkpoint, dataset, cache_dir=cache)
    assert "reusing" not in capsys.readouterr().out and again["NDCG@10"] == first["NDCG@10"]

    # A file cut by a killed run does not stop the next one.
    for f in cache.glob("*.json"):
        f.write_text('{"key": ')
    assert evaluate_test_split(checkpoint, dataset, cache_dir=cache)["NDCG@10"] == first["NDCG@10"]
