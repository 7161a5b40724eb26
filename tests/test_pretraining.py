"""Pre-training end to end on a tiny two-domain corpus: learning, exact resume, two processes, the CLI.

The corpus (written in SeqRecBench layout into a temporary folder) has 6 "themes" per domain; each
user buys only items of one theme, and every item title starts with its theme's words, so the next
item is predictable from the history's text. Models are 1-layer, 32-dimensional Longformers.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import csv
import json
import math
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from jepa4rec import pretraining as training
from jepa4rec.config import OptimConfig, PretrainConfig
from jepa4rec.optim import build_optimizer, build_scheduler
from jepa4rec.pretraining import LOG_FIELDS, pretrain
from commands import command_env
from toy_corpus import TINY_MODEL, write_domain

# The machine is shared and the model is tiny: intra-op threads only contend (one thread is ~10x
# faster than two here). Subprocesses get OMP_NUM_THREADS=1 for the same reason.
torch.set_num_threads(1)

PROJECT = Path(__file__).resolve().parents[1]
TOY_TOKENIZER = PROJECT / "tests" / "data" / "toy_tokenizer"
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("corpus")
    return [str(write_domain(root / "DomainA", 1)), str(write_domain(root / "DomainB", 2))]


@pytest.fixture(scope="module")
def tokenizer_dir() -> str:
    """A fixed WordPiece vocabulary of the toy corpus, for runs whose trajectories a test compares or bounds.

    ``tokenizers``' WordPiece trainer is not deterministic (hash-map order decides ties:
    huggingface/tokenizers#1794): each training on the same texts yields a slightly different
    vocabulary, and a tiny model's 80-step trajectory with it (last-10 mean L_SI from 0.67 to 1.18 over
    14 trainings, once 1.63 in CI). ``tests/data/toy_tokenizer`` is one such training, made once by
    ``build_item_tokenizer`` on the two domains of :func:`corpus` (``tiny_cfg``'s vocab_size 300) and committed;
    ``test_the_committed_vocabulary_covers_the_toy_corpus`` keeps it in step with ``toy_corpus``.
    """
    return str(TOY_TOKENIZER)


def tiny_cfg(corpus, output_dir: Path, **overrides) -> PretrainConfig:
    cfg = PretrainConfig(
        output_dir=str(output_dir), domains=list(corpus), model=dict(TINY_MODEL), vocab_size=300,
        max_items=10, max_tokens=128, batch_size=8, max_steps=50, log_every=1, save_every=1000, progress=False,
        optim=OptimConfig(lr=2e-3, warmup_steps=5), seed=7,
    )
    return replace(cfg, **overrides)


def read_log(output_dir: Path) -> list[dict[str, float]]:
    with open(Path(output_dir) / "train_log.csv", newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# ------------------------------------------------------------------------------------------ learning

def test_two_runs_in_one_process_may_use_two_precisions(corpus, tmp_path, tokenizer_dir):
    """fp32 then bf16 in one process (scripts/check_bf16_pretraining.py does): Accelerate's process-wide state
    once refused the second precision."""
    for precision in ("no", "bf16"):
        final = pretrain(tiny_cfg(corpus, tmp_path / precision, max_steps=2, tokenizer=tokenizer_dir,
                                  mixed_precision=precision))
        assert (final / "training_card.json").exists()


@pytest.mark.slow
def test_loss_falls_and_log_has_every_column(corpus, tmp_path):
    from jepa4rec.checkpoint import is_model_dir, load_model_dir

    out = tmp_path / "run"
    final = pretrain(tiny_cfg(corpus, out))
    with open(out / "train_log.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == LOG_FIELDS
    assert {"loss", "loss_si", "loss_mlm", "loss_map", "item_spread", "negatives", "lr", "momentum"} <= set(header)
    rows = read_log(out)
    assert [r["step"] for r in rows] == list(range(1, 51))
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss", "loss_si", "loss_mlm", "loss_map"))
    first, last = rows[:5], rows[-5:]
    assert mean(r["loss"] for r in last) < 0.8 * mean(r["loss"] for r in first)
    assert mean(r["loss_mlm"] for r in last) < mean(r["loss_mlm"] for r in first)
    assert mean(r["loss_map"] for r in last) < mean(r["loss_map"] for r in first)
    assert all(r["negatives"] == 8 for r in rows)
    assert rows[-1]["momentum"] > rows[0]["momentum"]
    # The run ends with a loadable model directory.
    assert final == out / "final" and is_model_dir(final)
    model, item_tok, card = load_model_dir(final)
    assert card["step"] == 50 and item_tok.vocab_size == model.config.vocab_size


@pytest.mark.slow
def test_contrastive_loss_learns_without_dropout(corpus, tokenizer_dir, tmp_path):
    """L_SI leaves log(batch) once the model reads the history: a regression test of the S-I path.

    Dropout is off here: at random initialisation h_CLS hardly depends on the input, and with
    dropout 0.1 the dropout noise dominates it and L_SI stays at log(batch) for hundreds of steps.
    """
    model = {**TINY_MODEL, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    cfg = tiny_cfg(corpus, tmp_path / "run", model=model, max_steps=80, tokenizer=tokenizer_dir,
                   optim=OptimConfig(lr=5e-3, warmup_steps=5, schedule="constant"))
    pretrain(cfg)
    rows = read_log(tmp_path / "run")
    assert mean(r["loss_si"] for r in rows[:5]) > 0.95 * math.log(8)
    assert mean(r["loss_si"] for r in rows[-10:]) < 0.75 * math.log(8)


def test_the_committed_vocabulary_covers_the_toy_corpus(corpus):
    """tests/data/toy_tokenizer was trained on this corpus: a word toy_corpus gains later would read as [UNK]
    there (retrain it with build_item_tokenizer, as the tokenizer_dir fixture says)."""
    from jepa4rec.pretraining import load_domains
    from jepa4rec.text import load_tokenizer, sentence_text

    tok = load_tokenizer(TOY_TOKENIZER)
    texts = [sentence_text(item) for ds in load_domains(tiny_cfg(corpus, Path("unused"))) for item in ds.items]
    unknown = {w for t in texts for w in t.split() if tok.unk_token_id in tok(w, add_special_tokens=False)["input_ids"]}
    assert len(texts) == 60 and not unknown, f"words the committed vocabulary does not know: {sorted(unknown)}"


def test_train_split_only_holds_out_validation_and_test_items(corpus, tmp_path):
    from jepa4rec.pretraining import load_domains, pretraining_sequences

    datasets = load_domains(tiny_cfg(corpus, tmp_path))
    whole = pretraining_sequences(datasets, tiny_cfg(corpus, tmp_path))
    held_out = pretraining_sequences(datasets, tiny_cfg(corpus, tmp_path, train_split_only=True))
    assert [[s[:-2] for s in d] for d in whole] == held_out
    assert all(len(a) == len(b) + 2 for d, e in zip(whole, held_out) for a, b in zip(d, e))


def test_too_little_data_for_one_batch_fails_instead_of_looping(corpus, tokenizer_dir, tmp_path):
    # 120 pairs per epoch cannot fill a batch of 200: without a check the epoch loop spins forever.
    with pytest.raises(ValueError, match="120 pre-training pairs per epoch do not fill one batch of 200 .* — lower batch_size"):
        pretrain(tiny_cfg(corpus, tmp_path / "run", batch_size=200, max_steps=3, tokenizer=tokenizer_dir))
    assert not (tmp_path / "run").exists()  # checked before the output folder is written


def test_single_domain_batches_keep_every_batch_in_one_domain():
    from jepa4rec.batches import iterate_batches, pretraining_pairs

    # domain 0: 37 users, domain 1: 21 users, each with a sequence long enough for one pair
    seqs = [[[u, u + 1, u + 2] for u in range(37)], [[u, u + 3] for u in range(21)]]
    mixed = pretraining_pairs(seqs, epoch=0, seed=1)
    single = pretraining_pairs(seqs, epoch=0, seed=1, group=8)
    assert len(mixed) == 58 and len(single) == 8 * (37 // 8 + 21 // 8)  # each domain's remainder dropped
    batches = [chunk for _, chunk in iterate_batches(single, 8)]
    assert len(batches) == 6 and all(len({p.domain for p in b}) == 1 for b in batches)
    assert {b[0].domain for b in batches} == {0, 1}
    # batches of both domains interleave (the order is shuffled, not domain after domain)
    assert [b[0].domain for b in batches] != sorted(b[0].domain for b in batches)
    assert any(len({p.domain for _, b in iterate_batches(mixed, 8) for p in b}) == 2 for _ in [0])
    assert pretraining_pairs(seqs, 0, 1, group=8) == single and pretraining_pairs(seqs, 1, 1, group=8) != single


def test_single_domain_batches_too_small_for_any_domain_fail_instead_of_looping(corpus, tokenizer_dir, tmp_path):
    # 60 pairs per domain, 120 in all: mixed batches of 100 fit, single-domain ones do not.
    with pytest.raises(ValueError, match="do not fill one batch"):
        pretrain(tiny_cfg(corpus, tmp_path / "run", batch_size=100, max_steps=3, tokenizer=tokenizer_dir,
                          batch_domains="single"))
    with pytest.raises(ValueError, match="batch_domains"):
        tiny_cfg(corpus, tmp_path, batch_domains="per-user")


def test_a_nan_loss_stops_the_run_naming_the_step_and_batch_and_keeps_the_last_checkpoint(corpus, tokenizer_dir, tmp_path,
                                                                                          monkeypatch):
    from jepa4rec.modeling import JEPA4RecForPreTraining

    real_forward = JEPA4RecForPreTraining.forward
    calls = {"n": 0}

    def nan_at_step_3(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(JEPA4RecForPreTraining, "forward", nan_at_step_3)
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"at step 3 \(epoch 0, batch 2\).*checkpoint-2"):
        pretrain(tiny_cfg(corpus, run, tokenizer=tokenizer_dir, save_every=2, max_steps=5))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]


# -------------------------------------------------------------------------------------------- resume

def test_a_resumed_run_keeps_its_precision_and_names_changed_options(corpus, tokenizer_dir, tmp_path, monkeypatch, caplog):
    """auto on resume keeps the precision the checkpoint was trained in, where the device computes it natively
    (an fp32 run resumed on a CPU with AMX-BF16 stays fp32); a bf16 run resumed where bf16 is only emulated is
    refused by one sentence before anything is written; an option other than the checkpoint's is named in a
    warning, a runtime one (max_minutes, save_every) is not."""
    import jepa4rec.optim as optim_module
    from jepa4rec.errors import ConfigError

    run = tmp_path / "run"
    pretrain(tiny_cfg(corpus, run, tokenizer=tokenizer_dir, max_steps=2, save_every=2))
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["precision"] == "no" and state["config"]["max_steps"] == 2  # this CPU (or the CI's) is fp32 under auto

    monkeypatch.setattr(optim_module, "native_bf16", lambda device: True)  # the machine that resumes has AMX-BF16
    with caplog.at_level("WARNING"):
        pretrain(tiny_cfg(corpus, run, tokenizer=tokenizer_dir, max_steps=3, save_every=1, max_minutes=60), resume=True)
    assert json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())["precision"] == "no"
    warned = [r.getMessage() for r in caplog.records if "resumes with options other" in r.getMessage()]
    assert len(warned) == 1 and "max_steps: 2 -> 3" in warned[0] and "max_minutes" not in warned[0]

    # a checkpoint trained in bf16, resumed where bf16 would be emulated
    saved = run / "checkpoint-3" / "trainer_state.json"
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "precision": "bf16"}))
    monkeypatch.setattr(optim_module, "native_bf16", lambda device: False)
    with pytest.raises(ConfigError, match="trained with mixed_precision=bf16, which this device computes only by "
                                          "emulation.*set mixed_precision=bf16.*or mixed_precision=no"):
        pretrain(tiny_cfg(corpus, run, tokenizer=tokenizer_dir, max_steps=4), resume=True)
    assert not (run / "checkpoint-4").exists()
    # asked for explicitly, fp32 goes on (with a warning that the run changes precision)
    caplog.clear()
    with caplog.at_level("WARNING"):
        pretrain(tiny_cfg(corpus, run, tokenizer=tokenizer_dir, max_steps=4, mixed_precision="no"), resume=True)
    assert any("trained with mixed_precision=bf16; it goes on with no as asked" in r.getMessage() for r in caplog.records)
    assert not any("mixed_precision: 'auto'" in r.getMessage() for r in caplog.records)  # said once, by precision
    assert json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["precision"] == "no"


class Interrupted(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("n, killed", [(4, "at-save"), (15, "at-save"), (4, "between-saves"), (4, "during-save")],
                         ids=["mid-epoch", "end-of-epoch", "killed-between-saves", "killed-during-save"])
def test_resume_continues_exactly(corpus, tokenizer_dir, tmp_path, monkeypatch, n, killed):
    """Run A: n+2 steps straight. Run B: the same config, killed right after saving at step n, or
    during step n+2 (after step n+1 was logged but not saved), or in the middle of writing the
    checkpoint of step n+2 (model files written, optimizer state not), then resumed. The resumed run
    starts from checkpoint-n (never from the half-written one) and steps n+1 and n+2 must be
    identical: data position, masking, dropout RNG, EMA target, optimizer moments, LR and momentum
    schedules all come back, and the log holds each step once."""
    from jepa4rec import checkpoint

    # 120 pairs / batch 8 = 15 batches per epoch: n = 15 saves exactly at the end of epoch 0.
    base = dict(max_steps=n + 2, save_every=n, optim=OptimConfig(lr=2e-3, warmup_steps=3), tokenizer=tokenizer_dir)
    pretrain(tiny_cfg(corpus, tmp_path / "A", **base))

    if killed == "at-save":
        original = training.save_training_checkpoint

        def save_then_die(path, **kw):
            original(path, **kw)
            if Path(path).name == f"checkpoint-{n}":
                raise Interrupted

        monkeypatch.setattr(training, "save_training_checkpoint", save_then_die)
    elif killed == "between-saves":
        original_momentum = training.momentum_at

        def die_in_step_n_plus_2(step, *args):
            if step == n + 1:  # called with the number of steps done so far
                raise Interrupted
            return original_momentum(step, *args)

        monkeypatch.setattr(training, "momentum_at", die_in_step_n_plus_2)
    else:
        original_flat = checkpoint._optimizer_to_flat
        saves = []

        def die_half_written(optimizer):  # called after the model files, before the optimizer's
            saves.append(1)
            if len(saves) == 2:  # the save of checkpoint-(n+2), the final one
                raise Interrupted
            return original_flat(optimizer)

        monkeypatch.setattr(checkpoint, "_optimizer_to_flat", die_half_written)
    cfg_b = tiny_cfg(corpus, tmp_path / "B", **base)
    with pytest.raises(Interrupted):
        pretrain(cfg_b)
    monkeypatch.undo()
    logged = [int(r["step"]) for r in read_log(tmp_path / "B")]
    assert logged == list(range(1, n + 1 + {"at-save": 0, "between-saves": 1, "during-save": 2}[killed]))
    assert (tmp_path / "B" / f"checkpoint-{n}").is_dir() and not (tmp_path / "B" / "final").exists()
    if killed == "during-save":
        half = tmp_path / "B" / f"checkpoint-{n + 2}.tmp"
        assert (half / "model.safetensors").exists() and not (half / "trainer_state.json").exists()
        assert not (tmp_path / "B" / f"checkpoint-{n + 2}").exists()
        assert checkpoint.latest_checkpoint(tmp_path / "B") == tmp_path / "B" / f"checkpoint-{n}"
    pretrain(cfg_b, resume=True)
    assert not list((tmp_path / "B").glob("*.tmp")), "the resumed run's saves replace the half-written folder"

    a, b = read_log(tmp_path / "A"), read_log(tmp_path / "B")
    assert [r["step"] for r in b] == list(range(1, n + 3)), "the resumed log holds every step once"
    for ra, rb in zip(a, b):
        for key in ("epoch", "lr", "loss", "loss_si", "loss_mlm", "loss_map", "item_spread", "momentum"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-5, rel=0), (int(ra["step"]), key)
    # And the final weights agree.
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "A" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "B" / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-6, rtol=0, msg=k)


def test_a_save_killed_between_its_two_renames_leaves_the_previous_folder_to_recover(tmp_path, monkeypatch):
    """Replacing a folder (fine-tuning's ``last`` and ``best``) renames the old one aside, then the new
    one in: killed in between, the previous complete folder is renamed back on resume."""
    from jepa4rec.checkpoint import _replace_dir, recover_dir

    path, new = tmp_path / "last", tmp_path / "last.tmp"
    for folder, version in ((path, "1"), (new, "2")):
        folder.mkdir()
        (folder / "trainer_state.json").write_text(version)
    real_rename = Path.rename

    def killed_before_the_second(self, target):
        if self == new:
            raise Interrupted
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_before_the_second)
    with pytest.raises(Interrupted):
        _replace_dir(new, path)
    monkeypatch.undo()
    assert not path.exists()
    assert (recover_dir(path) / "trainer_state.json").read_text() == "1"
    _replace_dir(new, path)
    assert (path / "trainer_state.json").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["last"]


# ------------------------------------------------------------------------------------- two processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = command_env(TOKENIZERS_PARALLELISM="false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


@pytest.mark.slow
def test_two_process_gloo_run_gathers_negatives(corpus, tmp_path):
    # Without dropout an untrained model gives (nearly) the same vector for every input, so the first
    # L_SI is log(number of candidates): about log 8 with gathered negatives, log 4 without.
    model = {**TINY_MODEL, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    cfg = tiny_cfg(corpus, tmp_path / "ddp", batch_size=4, max_steps=3, model=model,
                   optim=OptimConfig(lr=2e-3, warmup_steps=2))
    cfg_dict = json.loads(json.dumps(training.to_dict(cfg)))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg_dict))
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = launcher + ["--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                      "--master_port", str(_free_port()), "-m", "jepa4rec.pretrain", "--config", str(tmp_path / "cfg.yaml")]
    # Bounded by work (3 steps, ~15 s alone); the generous limit only catches a hang, and says so.
    limit = 900
    try:
        proc = subprocess.run(cmd, cwd=PROJECT, env=_env(), capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the 2-process run (3 tiny steps, ~15 s on an idle 2-core machine) did not finish in {limit} s: "
                    f"the machine is far too slow or overloaded, or a process hangs; last output: "
                    f"{(err.stderr or b'')[-2000:]!r}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = read_log(tmp_path / "ddp")
    assert [r["step"] for r in rows] == list(range(1, 4))
    assert all(r["negatives"] == 2 * 4 for r in rows)
    assert math.log(4) + 0.2 < rows[0]["loss_si"] < math.log(8) + 0.01
    assert all(math.isfinite(r["loss"]) for r in rows)
    # One scheduler step per optimizer step, whatever the number of processes.
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.max_steps)
    for r in rows:
        optimizer.step()
        scheduler.step()
        assert r["lr"] == pytest.approx(scheduler.get_last_lr()[0], rel=1e-6), int(r["step"])
    assert (tmp_path / "ddp" / "final" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------------ CLI

@pytest.mark.slow
def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "jepa4rec.pretrain", "--help"], cwd=PROJECT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout and "--set" in proc.stdout and "--resume" in proc.stdout


@pytest.mark.parametrize("override, unknown", [
    ("no_such_option=1", "no_such_option"),
    ("optim.no_such_option=1", "no_such_option"),
    ("model.use_token_type_embedding=false", "use_token_type_embedding"),  # typo of ..._embeddings
])
def test_cli_rejects_unknown_keys(override, unknown, capsys):
    from jepa4rec.pretrain import main

    with pytest.raises(SystemExit) as exc:
        main(["--set", override])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown" in err and unknown in err


@pytest.mark.parametrize("module", ["jepa4rec.pretrain", "jepa4rec.finetune"])
@pytest.mark.parametrize("override,named", [("batch_size=abc", "'batch_size'"), ("optim.lr=fast", "'optim.lr'"),
                                            ("max_minutes=true", "'max_minutes'"), ("seed=1.5", "'seed'")])
def test_cli_rejects_values_of_the_wrong_type_before_writing(module, override, named, tmp_path, capsys):
    import importlib

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main(["--set", override, f"output_dir={out}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "must be" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("module, cls, recipe, flags, overrides", [
    ("jepa4rec.pretrain", "PretrainConfig", "pretrain_minilm", ["--set", "max_steps=7", "loss.lambda_map=0"],
     ["max_steps=7", "loss.lambda_map=0"]),
    ("jepa4rec.finetune", "FinetuneConfig", "finetune_minilm", ["--set", "epochs=2", "--dataset", "OnlineRetail"],
     ["epochs=2", "dataset=OnlineRetail"]),
])
def test_print_config_reads_back_as_the_same_run_and_trains_nothing(module, cls, recipe, flags, overrides, tmp_path,
                                                                    capsys):
    import importlib

    import jepa4rec.config as config

    out = tmp_path / "run"
    main = importlib.import_module(module).main
    assert main(["--config", recipe, *flags, "--output-dir", str(out), "--print-config"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert not out.exists()
    expected = config.load_config(getattr(config, cls), recipe, [*overrides, f"output_dir={out}"])
    assert config.load_config(getattr(config, cls), printed) == expected


def test_cli_rejects_model_fields_derived_from_other_options(capsys):
    from jepa4rec.pretrain import main

    with pytest.raises(SystemExit) as exc:
        main(["--set", "model.max_position_embeddings=512"])
    assert exc.value.code == 2
    assert "max_tokens" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- length grouping

@pytest.mark.slow
@pytest.mark.parametrize("batch_domains", ["single", "mixed"])
def test_group_by_length_keeps_every_pair_and_pads_less(corpus, tokenizer_dir, tmp_path, batch_domains):
    """The same pairs each epoch (up to the remainders dropped), in batches of similar history length (so far less padding to compute);
    single-domain batches stay single-domain; the order is fixed by (seed, epoch), so a resumed run draws it
    again; an exported step is a model directory that is never pruned."""
    from itertools import islice

    from jepa4rec.batches import EncodedCorpus
    from jepa4rec.checkpoint import is_model_dir
    from jepa4rec.pretraining import batch_stream, build_item_tokenizer, load_domains, pretraining_sequences

    plain = tiny_cfg(corpus, tmp_path / "a", tokenizer=tokenizer_dir, batch_domains=batch_domains)
    grouped = replace(plain, group_by_length=True)
    datasets = load_domains(plain)
    enc = EncodedCorpus(datasets, build_item_tokenizer(plain, datasets, tmp_path, True))
    seqs = pretraining_sequences(datasets, plain)

    def epoch0(cfg):
        return [chunk for e, _, chunk in islice(batch_stream(seqs, cfg, 0, 0, corpus=enc), 10_000) if e == 0]

    a, b = epoch0(plain), epoch0(grouped)
    from collections import Counter

    # The same pairs, but for the remainders each domain (or the epoch) drops, which the grouping picks differently.
    assert len(a) == len(b)
    assert sum((Counter(p for c in a for p in c) - Counter(p for c in b for p in c)).values()) < 8 * len(corpus)
    if batch_domains == "single":
        assert all(len({p.domain for p in c}) == 1 for c in b)

    def padding(batches) -> int:  # history tokens computed but not read
        lengths = [[enc.history_length(p) for p in c] for c in batches]
        return sum(len(ls) * max(ls) - sum(ls) for ls in lengths)

    assert padding(b) < 0.5 * padding(a)
    assert epoch0(grouped) == b  # drawn again identically (what resume relies on)

    out = tmp_path / "run"
    pretrain(replace(grouped, output_dir=str(out), max_steps=4, export_steps=[2], save_every=1, keep_checkpoints=1))
    assert is_model_dir(out / "step-2") and sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]


@pytest.mark.slow
def test_pretrain_twins_script_alternates_and_resumes(corpus, tokenizer_dir, tmp_path):
    """scripts/pretrain_twins.sh: the twin behind goes next, each turn resumes the twin's checkpoint, both end
    at the same step with the same exports, and only λ2 differs between them (one-step turns here)."""
    model = " ".join(f"model.{k}={v}" for k, v in TINY_MODEL.items())
    extra = (f"domains=[{corpus[0]},{corpus[1]}] tokenizer={tokenizer_dir} batch_size=8 max_items=5 max_tokens=64 "
             f"{model} progress=false optim.warmup_steps=0")
    env = command_env(PYTHON=sys.executable, STEPS="2", EXPORTS="1", RUNS=str(tmp_path / "twins"), THREADS="1",
                      CHUNK_MINUTES="0.0001", SAVE_EVERY="1", CONFIG="pretrain_tiny", EXTRA=extra,
                      TOKENIZERS_PARALLELISM="false")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", str(root / "scripts" / "pretrain_twins.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    turns = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert turns[:4] == ["== jepa4rec: from step 0 (λ2 = 0.1) ", "== recformer: from step 0 (λ2 = 0.0) ",
                         "== jepa4rec: from step 1 (λ2 = 0.1) --resume", "== recformer: from step 1 (λ2 = 0.0) --resume"]
    assert turns[-1].startswith("== both twins reached 2 steps")
    configs = {}
    for name in ("jepa4rec", "recformer"):
        run = tmp_path / "twins" / name
        card = json.loads((run / "final" / "training_card.json").read_text())
        assert card["step"] == 2 and (run / "step-1" / "training_card.json").is_file()
        configs[name] = card["config"]
    differ = {k for k in configs["jepa4rec"] if configs["jepa4rec"][k] != configs["recformer"][k]}
    assert differ == {"output_dir", "loss"}
    assert {k for k, v in configs["jepa4rec"]["loss"].items() if v != configs["recformer"]["loss"][k]} == {"lambda_map"}


@pytest.mark.slow
def test_pretrain_twins_script_runs_the_twins_side_by_side(corpus, tokenizer_dir, tmp_path):
    """SIDE_BY_SIDE=1: both twins train at once, each resumed from its own checkpoint turn after turn, on the same
    batches (the same tokens logged at each step) to the same final step; LAMBDA_MAP=1 trains JEPA4Rec with
    λ2 = 1 into its own folder."""
    model = " ".join(f"model.{k}={v}" for k, v in TINY_MODEL.items())
    extra = (f"domains=[{corpus[0]},{corpus[1]}] tokenizer={tokenizer_dir} batch_size=8 max_items=5 max_tokens=64 "
             f"{model} progress=false optim.warmup_steps=0 log_every=1")
    env = command_env(PYTHON=sys.executable, STEPS="2", EXPORTS="1", RUNS=str(tmp_path / "twins"), THREADS="1",
                      CHUNK_MINUTES="0.0001", SAVE_EVERY="1", CONFIG="pretrain_tiny", EXTRA=extra,
                      SIDE_BY_SIDE="1", LAMBDA_MAP="1", TOKENIZERS_PARALLELISM="false")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", str(root / "scripts" / "pretrain_twins.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    turns = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert turns[0] == "== side by side, 1 thread(s) each"
    assert sorted(turns[1:3]) == ["== jepa4rec-lambda1: from step 0 (λ2 = 1) ", "== recformer: from step 0 (λ2 = 0.0) "]
    assert any(t.startswith("== jepa4rec-lambda1: from step 1") and t.endswith("--resume") for t in turns)
    assert turns[-1].startswith("== both twins reached 2 steps")
    logs = {}
    assert not (tmp_path / "twins" / "jepa4rec").exists()
    for name, lambda_map in (("jepa4rec-lambda1", 1.0), ("recformer", 0.0)):
        run = tmp_path / "twins" / name
        card = json.loads((run / "final" / "training_card.json").read_text())
        assert card["step"] == 2 and card["config"]["loss"]["lambda_map"] == lambda_map
        with open(run / "train_log.csv") as fh:
            logs[name] = [(row["step"], row["tokens"]) for row in csv.DictReader(fh)]
    assert logs["jepa4rec-lambda1"] == logs["recformer"] and [s for s, _ in logs["recformer"]] == ["1", "2"]
    status = subprocess.run(["bash", str(root / "scripts" / "pretrain_twins.sh"), "--status"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    lines = status.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "twins" / n) for n in ("jepa4rec-lambda1", "recformer")]
    assert all(": logged step 2 of 2; checkpoint 2; exports 1" in line for line in lines)
    assert subprocess.run(["bash", str(root / "scripts" / "pretrain_twins.sh"), "--status"], capture_output=True, text=True,
                          env={**env, "RUNS": str(tmp_path / "none")}, timeout=120).stdout.count("not started") == 2


@pytest.mark.slow
def test_loss_gradients_splits_the_pull_of_each_loss(corpus, tmp_path):
    """scripts/loss_gradients.py on a real checkpoint: each loss's gradient on its own parameters (L_map alone
    reaches the predictors, L_MLM alone the MLM head), L_SI's the same whatever λ2, and λ2·L_map's linear in λ2
    (the three are taken on the same masking and dropout draws)."""
    from commands import load_script

    cfg = tiny_cfg(corpus, tmp_path / "run", max_steps=2, save_every=2,
                   loss=replace(PretrainConfig().loss, lambda_map=0.1))
    pretrain(cfg)
    script = load_script("loss_gradients")
    rows = {}
    for lam in (0.1, 0.2):
        out = tmp_path / f"g{lam}.json"
        assert script.main([str(tmp_path / "run" / "checkpoint-2"), "--batches", "1", "--lambda-map", str(lam),
                            "--threads", "1", "--json", str(out)]) == 0
        rows[lam] = {r["group"]: r for r in json.loads(out.read_text())["rows"]}
    a, b = rows[0.1], rows[0.2]
    assert a["predictors"]["share λ2·L_map"] == 1.0 and a["MLM head"]["share λ1·L_MLM"] == 1.0
    lm = "language-model weights"
    assert a[lm]["norm L_SI"] > 0 and a[lm]["norm λ2·L_map"] > 0
    assert b[lm]["norm L_SI"] == pytest.approx(a[lm]["norm L_SI"], rel=1e-5)
    assert b[lm]["norm λ2·L_map"] == pytest.approx(2 * a[lm]["norm λ2·L_map"], rel=1e-2)
    assert -1 <= a[lm]["cosine L_map, L_SI"] <= 1
