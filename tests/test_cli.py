"""Every command's one error path (jepa4rec.cli): an expected mistake is one line on stderr and exit
code 2, with nothing written to the output folder; a bug keeps its traceback; ``--debug`` shows it.

Each command is fed bad input made in a temporary folder and run in-process (``main(argv)``), plus one
real ``python -m`` run to check what a shell sees.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from commands import ROOT, load_script, one_line_error

BAD_ID = "interactions.csv:3: field 'item_id' is not an integer ('abc')"


@pytest.fixture
def bad(tmp_path) -> str:
    """A SeqRecBench folder whose interactions.csv has a non-numeric item_id on line 3."""
    folder = tmp_path / "Bad"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"item_id": 1, "title": "a"}\n{"item_id": 2, "title": "b"}\n')
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n7,1,10\n7,abc,20\n7,2,30\n")
    return str(folder)


# (command, argv, what the line says); {bad} is the folder above, {out} a folder that must stay absent,
# {missing} a path that does not exist.
CASES = [
    ("jepa4rec.pretrain", ["--set", "domains=[{bad}]", "--output-dir", "{out}"], BAD_ID),
    ("jepa4rec.finetune", ["--dataset", "{bad}", "--output-dir", "{out}"], BAD_ID),
    ("jepa4rec.evaluate", ["--checkpoint", "minilm", "--dataset", "{bad}", "--out", "{out}/r.jsonl"], BAD_ID),
    ("jepa4rec.data.__main__", ["stats", "{bad}"], BAD_ID),
    ("jepa4rec.pretrain", ["--set", "batch_size=abc", "--output-dir", "{out}"],
     "option 'batch_size' of PretrainConfig must be int, got 'abc' — correct it with --set"),
    ("jepa4rec.finetune", ["--set", "pairs=every", "--output-dir", "{out}"],
     "option 'pairs' must be one of ['all', 'sample'], got 'every'"),
    ("jepa4rec.finetune", ["--config", "{missing}", "--output-dir", "{out}"], "not found (also looked in"),
    ("jepa4rec.evaluate", ["--checkpoint", "{missing}", "--dataset", "{bad}", "--out", "{out}/r.jsonl"],
     "is neither a JEPA4Rec model directory"),
    ("jepa4rec.calibrate", ["--checkpoint", "{missing}", "--dataset", "{bad}", "--output", "{out}"],
     "is not a JEPA4Rec model directory"),
    ("jepa4rec.evaluate", ["--checkpoint", "minilm", "--dataset", "{bad}", "--batch-size", "many"],
     "argument --batch-size: invalid int value: 'many' — see python -m jepa4rec.evaluate --help"),
    ("train_sasrec", ["--dataset", "{bad}", "--out", "{out}/r.json"], BAD_ID),
    ("results_table", ["--dataset", "{bad}", "--runs-dir", "{out}/runs", "--out-dir", "{out}/tables"], BAD_ID),
    ("reproduce_low_resource", ["--datasets", "{bad}", "--runs-dir", "{out}/runs", "--out-dir", "{out}/tables"], BAD_ID),
    ("reproduce_low_resource", ["--fractions", "0", "--runs-dir", "{out}/runs"], "--fractions must lie in (0, 1]"),
    ("reproduce_masking", ["--datasets", "{bad}", "--runs-dir", "{out}/runs", "--out-dir", "{out}/tables"], BAD_ID),
    ("reproduce_ablations", ["--jepa", "{missing}", "--datasets", "{bad}", "--runs-dir", "{out}/runs",
                             "--out-dir", "{out}/tables"], "{missing}: no training_card.json, so not a pre-trained"),
    ("reproduce_pretrain_data", ["--jepa", "{missing}", "--runs-dir", "{out}/runs", "--out-dir", "{out}/tables"],
     "{missing}: no training_card.json, so not a pre-trained"),
    ("build_demo_checkpoint", ["{missing}", "{out}", "--command", "x"], "is not a JEPA4Rec model directory"),
    ("benchmark_app", ["--dataset", "{bad}", "--skip-app"], BAD_ID),
    ("benchmark_encoder", ["--parts", "catalogue", "--data-root", "{missing}", "--out", "{out}/b.json"],
     "dataset 'Scientific_UniSRec' expects {missing}/Scientific_UniSRec: not found — run python -m jepa4rec.data "
     "download Scientific_UniSRec, or set JEPA4REC_DATA_ROOT"),
    ("benchmark_pretrain", ["--phase", "step", "--domains", "{bad}"], BAD_ID),
    ("screenshot_app", ["--chromium", "{missing}", "--out", "{out}"], "no Chromium at --chromium {missing}"),
    ("reproduce_reveal", ["--datasets", "{bad}", "--jepa", "{missing}", "--recformer", "{missing}"], BAD_ID),
    ("measure_reveal_demo", ["--dataset", "nope", "--out", "{out}/r.json"], "dataset 'nope' is not available"),
    ("build_embedding_map", ["--dataset", "nope"], "dataset 'nope' is not available"),
    ("load_test_app", ["--users", "0", "--out", "{out}/r.json"], "--users must be at least 1"),
    ("benchmark_catalogue", ["--synthetic", "0"], "--synthetic must be at least 1"),
    ("benchmark_explain", ["--tries", "0"], "--tries and --history must be at least 1"),
    ("compare_models", ["--dataset", "nope"], "dataset 'nope' is not available"),
    ("jepa4rec.recommend", ["--items", "{missing}", "--history", "1"], "No such file or directory ({missing})"),
    ("jepa4rec.evaluate", ["--checkpoint", "minilm", "--dataset", "{bad}", "--device", "gpu"],
     "argument --device: device 'gpu' is not a torch device — use --device cpu, cuda or cuda:N"),
    ("jepa4rec.finetune", ["--threads", "0", "--output-dir", "{out}"], "argument --threads: 0 — give 1 or more"),
    ("jepa4rec.pretrain", ["--threads", "two", "--output-dir", "{out}"], "argument --threads: 'two' is not a whole number"),
    # New cases go last, so the ids above (docs/hostile_inputs.md cites some) stay as they are.
    ("check_python_support", ["--python-versions", "three"], "'three' is not a version like 3.10"),
    ("gpu_scale_run", ["run", "--prepared", "{missing}", "--work-dir", "{out}"], "{missing}/prepared.json not found"),
    ("gpu_scale_run", ["prepare", "--prepared", "{out}", "--data-root", "{missing}"], "not found in {missing}"),
    ("check_python_support", ["--requirements", "{missing}"], "No such file ({missing})"),
    ("benchmark_finetune", ["--init-from", "{missing}", "--out", "{out}/b.jsonl"], "is neither a JEPA4Rec model directory"),
    ("check_bf16_pretraining", ["--datasets", "{bad}", "--runs-dir", "{out}/runs", "--out", "{out}/c.json"], BAD_ID),
    ("code_shape", ["--root", "{missing}", "--json", "{out}/s.json"], "--root {missing} has no jepa4rec, app folder"),
    ("jepa4rec.evaluate", ["--checkpoint", "minilm", "--items", "{missing}", "--out", "{out}/r.jsonl"],
     "--items needs --interactions"),
    ("measure_shop_upload", ["--dataset", "{bad}", "--work-dir", "{out}"], BAD_ID),
    ("screenshot_shop", ["--items", "{missing}", "--interactions", "{missing}", "--out", "{out}"],
     "no file at --items {missing}"),
    ("ship_item_vectors", ["--dataset", "nope"], "not an app dataset: nope"),
    ("screenshot_fresh_clone", ["--rate", "0", "--out", "{out}"], "--rate must be above 0 MB/s, got 0.0"),
    ("screenshot_visitor_fixes", ["--chromium", "{missing}", "--out", "{out}"], "no Chromium at --chromium {missing}"),
    ("zeroshot_curve", ["--twins", "JEPA4Rec={missing}", "twin={missing}", "--runs-dir", "{out}/runs",
                        "--out-dir", "{out}/tables"], "{missing}: no such folder — the pre-training run or model directory"),
    ("zeroshot_curve", ["--twins", "JEPA4Rec", "twin=x", "--runs-dir", "{out}/runs"], "'JEPA4Rec' is not LABEL=PATH"),
    ("readme_results", ["--readme", "{missing}"], "no README at --readme {missing}"),
    ("loss_gradients", ["{missing}"], "{missing}: no such folder — a checkpoint-<step>/ of a pre-training run"),
    ("readme_results", ["--results-dir", "{missing}", "--check"], "results_table.json: not found"),
    ("jepa4rec.fit_predictor", ["--checkpoint", "{missing}", "--dataset", "{bad}", "--output", "{out}"],
     "is not a JEPA4Rec model directory"),
    ("jepa4rec.fit_predictor", ["--checkpoint", "{bad}", "--dataset", "{bad}", "--output", "{out}", "--epochs", "0"],
     "epochs must be at least 1, got 0"),
    ("top10_overlap", ["--dataset", "{bad}", "--pair", "twins", "{missing}", "{bad}", "--out", "{out}/o.json"],
     "pair 'twins': {missing} is not a model directory"),
    ("top10_overlap", ["--dataset", "{bad}", "--pair", "twins", "{bad}", "{bad}", "--users", "0", "--out", "{out}/o.json"],
     "--users must be at least 1"),
]


def command_main(name: str):
    return importlib.import_module(name).main if name.startswith("jepa4rec.") else load_script(name).main


@pytest.mark.parametrize("name, argv, said", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_every_command_reports_a_mistake_in_one_line_and_writes_nothing(name, argv, said, bad, tmp_path, capsys):
    paths = {"bad": bad, "out": str(tmp_path / "out"), "missing": str(tmp_path / "missing")}
    line = one_line_error(capsys, command_main(name), [a.format(**paths) for a in argv])
    assert said.format(**paths) in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "missing").exists()


def test_every_command_with_a_main_is_covered():
    """A new script must go through jepa4rec.cli and get a case above."""
    scripts = {p.stem for p in (ROOT / "scripts").glob("*.py") if "\ndef main(" in p.read_text()}
    assert scripts <= {c[0] for c in CASES}


def test_debug_shows_the_traceback_and_keeps_the_exit_code(bad, capsys):
    from jepa4rec.data.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["stats", bad, "--debug"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" in err and "DataFormatError" in err
    assert err.rstrip("\n").splitlines()[-1].startswith(f"error: {bad}/{BAD_ID}")


def test_a_bug_keeps_its_traceback(bad, monkeypatch):
    import jepa4rec.data.__main__ as stats

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a mistake in the input")

    monkeypatch.setattr(stats, "load_dataset", broken)
    with pytest.raises(KeyError, match="a bug"):
        stats.main(["stats", bad])


def test_what_a_shell_sees(bad):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "jepa4rec.data", "stats", bad]
    plain = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr == f"error: {bad}/{BAD_ID} — fix or replace that file (README 'Data' describes each layout)\n"
    debug = subprocess.run([*run, "--debug"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert debug.returncode == 2 and debug.stderr.startswith("Traceback") and debug.stderr.endswith(plain.stderr)


@pytest.mark.parametrize("module", ["jepa4rec.calibrate", "jepa4rec.evaluate", "jepa4rec.finetune", "jepa4rec.pretrain",
                                    "jepa4rec.compare", "jepa4rec.fit_predictor",
                                    "jepa4rec.recommend", "app.main"])
def test_every_module_command_has_a_help(module, capsys):
    """``python -m jepa4rec.<command> --help`` and ``python app.py --help``: every option has its text (the
    parser refuses one without), and the help parses."""
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_an_option_without_a_help_text_is_refused():
    from jepa4rec.cli import ArgumentParser

    with pytest.raises(TypeError, match="argument --flag needs a help text"):
        ArgumentParser(prog="x").add_argument("--flag", type=int)


def test_threads_is_applied_to_torch_when_the_arguments_are_parsed():
    """``--threads N`` is one option of jepa4rec.cli (every long-running command has it): parsing sets torch's
    intra-op threads, so no command can forget to."""
    import torch

    from jepa4rec.cli import ArgumentParser

    parser = ArgumentParser(prog="x")
    parser.add_threads_argument()
    before = torch.get_num_threads()
    try:
        assert parser.parse_args([]).threads is None and torch.get_num_threads() == before
        target = 1 if before != 1 else 2
        assert parser.parse_args(["--threads", str(target)]).threads == target
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("module", ["jepa4rec.pretrain", "jepa4rec.finetune", "jepa4rec.evaluate", "jepa4rec.calibrate",
                                    "jepa4rec.fit_predictor"])
def test_long_running_commands_take_threads(module, capsys):
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    assert "--threads N" in capsys.readouterr().out


def test_a_device_that_is_not_there_is_named():
    """``--device cuda`` on a machine without a GPU, or ``cuda:7`` on one with fewer, is the user's mistake:
    resolve_device says so instead of torch's assertion at the first ``.to()``."""
    import torch

    from jepa4rec.devices import resolve_device
    from jepa4rec.errors import UserError

    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None) and resolve_device("cpu") == torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UserError, match=f"device 'cuda:{count}': torch sees"):
        resolve_device(f"cuda:{count}")
    with pytest.raises(UserError, match="only cpu and cuda are supported"):
        resolve_device("meta")


def test_python_m_jepa4rec_lists_every_command_and_runs_one(capsys):
    from jepa4rec.__main__ import COMMANDS, main

    package = ROOT / "jepa4rec"
    commands = {p.stem for p in package.glob("*.py") if p.read_text().startswith('"""``python -m jepa4rec.')}
    assert commands | {"data"} == set(COMMANDS)  # a new command module must join the list
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in COMMANDS) and "``" not in listed
    with pytest.raises(SystemExit) as done:
        main(["compare", "--help"])
    assert done.value.code == 0 and "python -m jepa4rec.compare" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err


def test_reproduce_equal_terms_script_helps_and_stops_at_a_bad_dataset(tmp_path):
    """The shell script that rebuilds the equal-terms table: --help says how to run it, and an unknown dataset
    stops it at the first command with that command's one-line error (nothing trained, no table written)."""
    import subprocess
    import sys

    script = ROOT / "scripts" / "reproduce_equal_terms.sh"
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "bash scripts/reproduce_equal_terms.sh OnlineRetail ml-100k" in shown and "Resumable" in shown
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "THREADS": "1", "RUNS": str(tmp_path / "runs"),
           "JEPA4REC_DATA_ROOT": str(tmp_path / "no-data"), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(script), "NoSuchDataset"], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert done.stderr.rstrip("\n").splitlines()[-1].startswith("error:") and "NoSuchDataset" in done.stderr
    assert not any((tmp_path / "runs").rglob("results.json"))
    # the twins' checkpoints are an option (JEPA / RECFORMER); a folder that is not there stops it before any work
    missing = subprocess.run(["bash", str(script), "Scientific_UniSRec"], capture_output=True, text=True,
                             env={**env, "JEPA": str(tmp_path / "no-twin")})
    assert missing.returncode == 2 and "no pre-trained model directory" in missing.stderr and "no-twin" in missing.stderr
    assert "RECIPE=" in shown and "OUT=" in shown and "RECIPE_OnlineRetail=" in shown
    # a dataset's own overrides (RECIPE_<name>) take RECIPE's place for that dataset only
    for extra, shown_recipe in [({"RECIPE": "epochs=3"}, "epochs=3"),
                                ({"RECIPE": "epochs=3", "RECIPE_NoSuchDataset": "pairs=all epochs=9"}, "pairs=all epochs=9"),
                                ({}, "epochs=4")]:
        done = subprocess.run(["bash", str(script), "NoSuchDataset"], capture_output=True, text=True, env={**env, **extra})
        assert done.returncode != 0 and f"max_minutes=null {shown_recipe})" in done.stdout, done.stdout
    # side by side: both fine-tunes start, both fail, the script stops with their status before any table
    done = subprocess.run(["bash", str(script), "NoSuchDataset"], capture_output=True, text=True,
                          env={**env, "SIDE_BY_SIDE": "1"})
    assert done.returncode != 0 and done.stdout.count("fine-tuning from") == 2 and "the table's rows" not in done.stdout
    assert done.stderr.count("NoSuchDataset") >= 2 and not any((tmp_path / "runs").rglob("results.json"))


def test_command_line_is_one_line_the_shell_takes_back():
    """The command a result file records keeps an argument with spaces as one argument (a twin's label)."""
    import shlex

    from jepa4rec.cli import command_line

    argv = ["--twins", "JEPA4Rec (λ2 = 1)=runs/twins/a", "RecFormer-style (λ2 = 0)=runs/twins/b", "--threads", "1"]
    line = command_line("scripts/zeroshot_curve.py", argv)
    assert shlex.split(line) == ["python", "scripts/zeroshot_curve.py", *argv]
    assert command_line("scripts/x.py", []) == "python scripts/x.py"
