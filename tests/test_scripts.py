"""The experiment commands under ``scripts/`` on the toy corpus: real (tiny) runs, real outputs."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from commands import ROOT, command_env, load_script, one_line_error


TINY_FINETUNE = ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
                 "model.intermediate_size=64", "model.attention_window=16", "vocab_size=200", "max_items=10",
                 "max_tokens=128", "batch_size=8", "epochs=2", "max_valid_users=null", "progress=false",
                 "optim.lr=0.003", "optim.warmup_steps=5"]


def test_results_table_runs_every_kind_in_every_cell_and_reuses_records(toy, finetuned, tmp_path, capsys):
    from jepa4rec.data import load_dataset
    from jepa4rec.evaluation import CELLS
    from jepa4rec.recommender import evaluate_checkpoint
    from jepa4rec.significance import read_ranks

    script = load_script("results_table")
    pretrained = f"{finetuned[0].output_dir}/best"  # any model directory serves as "pre-trained" here
    args = ["--dataset", toy, "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"),
            "--jepa", pretrained, "--models", "popularity", "sasrec", "zeroshot_jepa4rec", "scratch",
            "--sasrec-epochs", "2", "--threads", "1", "--set", *TINY_FINETUNE]
    assert script.main(args) == 0

    long = pd.read_csv(tmp_path / "out" / "results_table.csv")
    assert list(long.columns) == ["dataset", "model", "priors", "protocol", "cell", "metric", "value"]
    labels = {script.MODELS[k].label for k in ("popularity", "sasrec", "zeroshot_jepa4rec", "scratch")}
    assert set(long["model"]) == labels
    assert set(long["protocol"]) == {"history kept", "history excluded"}
    assert len(long) == 4 * 4 * 3 and long["value"].between(0, 1).all()  # 4 models x 4 cells x 3 metrics
    records = {r["model_key"]: r for r in json.loads((tmp_path / "out" / "results_table.json").read_text())["records"]}
    assert records["scratch"]["seed"] == 42 and records["scratch"]["config"]["epochs"] == 2
    assert records["scratch"]["train_seconds"] > 0 and records["sasrec"]["best_epoch"] >= 1
    assert records["zeroshot_jepa4rec"]["checkpoint"] == pretrained
    for r in records.values():
        assert set(r["cells"]) == set(CELLS) and set(r["fits"]) == {"kept", "excluded"}
        assert r["fits"]["excluded"]["repeat_bias"] == 0.0  # a repeat bias cannot apply under exclusion
        # Each row's per-user ranks in every cell, for python -m jepa4rec.compare --cell
        kept, excluded = (read_ranks(tmp_path / "runs" / "Toy" / f"{r['model_key']}.ranks.csv", c).ranks
                          for c in ("kept", "excluded"))
        assert (excluded <= kept).all()
    # The zero-shot row is the same model the evaluator scores directly, priors fitted alike.
    direct = evaluate_checkpoint(pretrained, load_dataset(toy), priors="fit", progress=False)
    for cell in CELLS:
        assert records["zeroshot_jepa4rec"]["cells"][cell]["NDCG@10"] == pytest.approx(direct["cells"][cell]["NDCG@10"])
    md = (tmp_path / "out" / "results_table.md").read_text()
    assert md.count("| model | history kept: NDCG@10") == 2 and "With score priors fitted on the validation split" in md
    assert "JEPA4Rec w/o pre-training" in md

    capsys.readouterr()
    assert script.main(args) == 0  # records exist: nothing is trained again
    out = capsys.readouterr().out
    assert out.count("reusing") == 4 and "running" not in out

    # A run with other records (a fresh clone, another dataset) adds its rows; the committed ones stay.
    other = json.loads((tmp_path / "out" / "results_table.json").read_text())["records"][0]
    other = {**other, "dataset": "Elsewhere"}
    (tmp_path / "runs2" / "Elsewhere").mkdir(parents=True)
    (tmp_path / "runs2" / "Elsewhere" / f"{other['model_key']}.json").write_text(json.dumps(other))
    assert script.main(["--table-only", "--runs-dir", str(tmp_path / "runs2"), "--out-dir", str(tmp_path / "out")]) == 0
    merged = json.loads((tmp_path / "out" / "results_table.json").read_text())["records"]
    assert len(merged) == 5 and {r["dataset"] for r in merged} == {"Elsewhere", records["scratch"]["dataset"]}
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_results_table_table_only_without_records_is_a_clear_error(tmp_path, capsys):
    script = load_script("results_table")
    line = one_line_error(capsys, script.main, ["--table-only", "--runs-dir", str(tmp_path),
                                                "--out-dir", str(tmp_path / "out")])
    assert line == (f"error: no model records under {tmp_path} or in {tmp_path / 'out' / 'results_table.json'} — "
                    "run without --table-only first")
    assert not (tmp_path / "out").exists()


def test_results_table_never_trains_over_a_run_without_best(toy, tmp_path, capsys):
    script = load_script("results_table")
    run = tmp_path / "runs" / "Toy" / "jepa4rec"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"made": "elsewhere"}')
    line = one_line_error(capsys, script.main, ["--dataset", toy, "--models", "jepa4rec", "--force", "--runs-dir",
                                                str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")])
    assert line.startswith(f"error: {run} holds a fine-tuning run without best/; this command would train over it")
    assert (run / "results.json").read_text() == '{"made": "elsewhere"}' and not (tmp_path / "out").exists()


def test_results_table_scores_a_linked_run_with_the_priors_calibrate_writes(toy, finetuned, tmp_path):
    import shutil

    from jepa4rec.calibration import calibrate
    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import evaluate_checkpoint

    script = load_script("results_table")
    ds = load_dataset(toy)
    shutil.copytree(finetuned[0].output_dir, tmp_path / "runs" / ds.name / "jepa4rec")  # a finished run linked in
    args = ["--dataset", toy, "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"), "--threads", "1"]
    assert script.main(args + ["--models", "jepa4rec", "frozen_last_items"]) == 0
    records = {r["model_key"]: r for r in json.loads((tmp_path / "out" / "results_table.json").read_text())["records"]}
    row = records["jepa4rec"]
    assert row["train_seconds"] > 0 and row["config"]["dataset"] == finetuned[0].dataset
    # The kept-protocol fit is the one python -m jepa4rec.calibrate writes into a model directory ...
    fit, _ = calibrate(f"{finetuned[0].output_dir}/best", ds, tmp_path / "calibrated", popularity=True)
    assert row["fits"]["kept"]["repeat_bias"] == pytest.approx(fit["repeat_bias"], rel=1e-6, abs=1e-9)
    assert row["fits"]["kept"]["popularity_bias"] == pytest.approx(fit["popularity_bias"], rel=1e-6, abs=1e-9)
    # ... and that directory, scored with its own priors, ranks as the table's kept-with-priors cell.
    own = evaluate_checkpoint(tmp_path / "calibrated", ds, progress=False)
    assert own["NDCG@10"] == pytest.approx(row["cells"]["kept_priors"]["NDCG@10"], abs=1e-9)
    # A frozen row gets the same fit (in its own units) as every other scorer.
    assert records["frozen_last_items"]["fits"]["kept"]["fitted"] == ["repeat_bias", "popularity_bias"]


@pytest.mark.slow
def test_low_resource_trains_on_a_subset_and_tests_every_user(toy, finetuned, tmp_path):
    from app.plots import experiment_figure
    from jepa4rec.experiments import EXPERIMENTS
    from jepa4rec.data import load_dataset

    script = load_script("reproduce_low_resource")
    assert script.user_subset(100, 0.05, 1) == script.user_subset(100, 0.05, 1) and len(script.user_subset(100, 0.05, 1)) == 8
    args = ["--datasets", toy, "--models", "jepa4rec", "sasrec", "--fractions", "0.2", "1.0", "--threads", "1",
            "--jepa", f"{finetuned[0].output_dir}/best", "--runs-dir", str(tmp_path / "runs"),
            "--out-dir", str(tmp_path / "out"), "--set", "epochs=1", "max_valid_users=null", "batch_size=8"]
    assert script.main(args) == 0
    df = pd.read_csv(tmp_path / "out" / "low_resource.csv")
    assert set(df["model"]) == {"JEPA4Rec", "SASRec"} and set(df["fraction"]) == {0.2, 1.0}
    n_users = load_dataset(toy).n_users
    assert sorted(df["train_users"].unique()) == [round(0.2 * n_users), n_users]
    assert len(df) == 2 * 2 * 3 and df["value"].between(0, 1).all()
    # Every user is tested, whatever the training subset: the fine-tuned model's record says so.
    run = tmp_path / "runs" / Path(toy).name / "jepa4rec_f0.2_s42"
    assert json.loads((run / "all_users_test.json").read_text())["users"] == n_users
    assert json.loads((run / "results.json").read_text())["test"]["users"] == round(0.2 * n_users)
    exp = next(e for e in EXPERIMENTS if e.stem == "low_resource")
    assert len(experiment_figure(exp, df).data) == 2 * 3  # a line per model in each metric panel


@pytest.fixture(scope="module")
def toy_pretrained(toy, tmp_path_factory):
    """(all-domains model dir, the second domain): a 6-step pre-training on ``toy`` + another toy domain."""
    from jepa4rec.config import OptimConfig, PretrainConfig
    from jepa4rec.pretraining import pretrain
    from toy_corpus import TINY_MODEL, write_domain

    root = tmp_path_factory.mktemp("pre")
    other = write_domain(root / "Other", seed=9)
    cfg = PretrainConfig(output_dir=str(root / "all"), domains=[toy, str(other)], max_steps=6, model=dict(TINY_MODEL),
                         vocab_size=300, max_items=10, max_tokens=128, batch_size=8, log_every=1, progress=False,
                         optim=OptimConfig(lr=2e-3, warmup_steps=2), seed=7)
    return pretrain(cfg), other


def _tiny_pretrain_set():
    from toy_corpus import TINY_MODEL

    return ["model_size=tiny", *[f"model.{k}={v}" for k, v in TINY_MODEL.items()], "max_items=10",
            "max_tokens=128", "batch_size=8", "progress=false", "vocab_size=300"]


FT_SET = ["vocab_size=200", "max_items=10", "max_tokens=128", "batch_size=8", "epochs=1", "max_valid_users=null",
          "progress=false"]


@pytest.mark.slow
def test_pretrain_data_matches_the_all_domains_budget_and_writes_both_figures(toy, toy_pretrained, tmp_path, capsys):
    from app.plots import experiment_figure
    from jepa4rec.experiments import EXPERIMENTS

    all_domains, other = toy_pretrained
    script = load_script("reproduce_pretrain_data")
    pre_set = _tiny_pretrain_set()
    ft_set = [*FT_SET, "model.hidden_size=32", "model.num_hidden_layers=1"]
    def args(runs, finetune_set):
        return ["--jepa", str(all_domains), "--recformer", str(all_domains), "--single", str(other),
                "--finetune-targets", toy, "--zeroshot-targets", toy, "--threads", "1", "--runs-dir", str(tmp_path / runs),
                "--out-dir", str(tmp_path / "out"), "--pretrain-set", *pre_set, "--finetune-set", *finetune_set]

    # a pre-trained model's architecture cannot be overridden
    assert "with init_from, model.* may only set" in one_line_error(capsys, script.main, args("runs_bad", ft_set))
    # That call fine-tuned the from-scratch model with other options first: its run is not reused.
    line = one_line_error(capsys, script.main, args("runs_bad", ft_set[:7]))
    assert "made with other options" in line and line.endswith("— delete it or choose another --runs-dir")
    assert script.main(args("runs", ft_set[:7])) == 0

    single = json.loads((tmp_path / "runs" / "pretrain_data" / "Other" / "final" / "training_card.json").read_text())
    assert single["step"] == 6 and single["domains"] == [str(other)]
    fig3 = pd.read_csv(tmp_path / "out" / "pretrain_data.csv")
    assert list(fig3["pretraining"].unique()) == ["none", "Other only", "all 2"]
    fig4 = pd.read_csv(tmp_path / "out" / "zeroshot.csv")
    assert set(fig4["model"]) == {"JEPA4Rec", "RecFormer-style", "JEPA4Rec (Other only)"}
    for stem, df in (("pretrain_data", fig3), ("zeroshot", fig4)):
        exp = next(e for e in EXPERIMENTS if e.stem == stem)
        assert experiment_figure(exp, df).data


@pytest.mark.slow
def test_ablations_change_one_thing_at_the_matched_budget(toy, toy_pretrained, tmp_path):
    from jepa4rec.checkpoint import load_model_dir

    all_domains, _ = toy_pretrained
    script = load_script("reproduce_ablations")
    args = ["--datasets", toy, "--jepa", str(all_domains), "--threads", "1", "--runs-dir", str(tmp_path / "runs"),
            "--out-dir", str(tmp_path / "out"), "--pretrain-set", *_tiny_pretrain_set(), "--finetune-set", *FT_SET]
    assert script.main(args) == 0
    df = pd.read_csv(tmp_path / "out" / "ablations.csv")
    assert list(df["variant"].unique()) == list(script.VARIANTS) and len(df) == 4 * 3
    runs = tmp_path / "runs" / "ablations"
    no_mlm = json.loads((runs / "ablation_no_mlm_matched" / "final" / "training_card.json").read_text())
    assert no_mlm["step"] == 6 and no_mlm["config"]["loss"]["lambda_mlm"] == 0
    model, _, _ = load_model_dir(runs / "ablation_no_token_type_matched" / "final")
    assert model.config.use_token_type_embeddings is False
    meta = json.loads((tmp_path / "out" / "ablations.json").read_text())["meta"]
    assert next(r for r in meta["runs"] if r["variant"] == "JEPA4Rec")["init_from"] == str(all_domains)


def test_masking_sweep_pretrains_in_domain_without_leaking_the_test_split(toy, tmp_path, capsys):
    from app.plots import experiment_figure
    from jepa4rec.experiments import EXPERIMENTS

    script = load_script("reproduce_masking")
    args = ["--datasets", toy, "--ratios", "0.3", "0.7", "--seeds", "0", "1", "--steps", "3", "--threads", "1",
            "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"), "--set", *_tiny_pretrain_set()]
    assert script.main(args) == 0
    df = pd.read_csv(tmp_path / "out" / "masking_ratio.csv")
    assert len(df) == 2 * 2 * 3 and set(df["ratio"]) == {0.3, 0.7}
    card = json.loads((tmp_path / "runs" / "Toy" / "ratio0.7_seed1" / "final" / "training_card.json").read_text())
    assert card["config"]["train_split_only"] is True and card["config"]["loss"]["next_item_mask_ratio"] == 0.7
    assert card["config"]["tokenizer"].endswith("ratio0.3_seed0/tokenizer")  # one vocabulary per dataset
    # another seed run as its own process shares that vocabulary, so a later full command reuses its run
    assert script.main([*args[:args.index("--seeds")], "--seeds", "2", *args[args.index("--steps"):]]) == 0
    card = json.loads((tmp_path / "runs" / "Toy" / "ratio0.3_seed2" / "final" / "training_card.json").read_text())
    assert card["config"]["tokenizer"].endswith("ratio0.3_seed0/tokenizer")
    # the command again: every run and every evaluation is reused, the file written is the same
    capsys.readouterr()
    assert script.main(args) == 0
    assert capsys.readouterr().out.count("reusing the evaluation") == 4
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "masking_ratio.csv"), df)
    exp = next(e for e in EXPERIMENTS if e.stem == "masking_ratio")
    fig = experiment_figure(exp, df)
    assert fig.data[0].error_y.array is not None  # two seeds: mean with a spread
    assert "ratios must lie strictly between 0 and 1" in one_line_error(capsys, script.main, ["--ratios", "1.0"])


def test_bar_charts_make_room_for_long_labels():
    from app.plots import experiment_figure
    from jepa4rec.experiments import Experiment

    exp = Experiment("t", "vertical bars", "scripts/results_table.py", x="model", y="value", color="metric",
                     facet="dataset", kind="bar")
    short = pd.DataFrame({"dataset": "D", "model": ["SASRec", "Popularity"], "metric": "NDCG@10", "value": [0.1, 0.2]})
    long = short.assign(model=["Transformer over frozen MiniLM item vectors", "Popularity"])
    assert experiment_figure(exp, long).layout.height > experiment_figure(exp, short).layout.height


SCRIPTS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))
# Runs each script as ``__main__`` with ``--help`` in one child process (torch and the app are imported once
# instead of once a script, which took two minutes of the suite) and reports each one's exit code and output.
HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys
results = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as stop:
            code = stop.code or 0
        except BaseException as error:
            code = repr(error)
    results[path] = [code, out.getvalue()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def script_helps():
    import subprocess
    import sys

    paths = [str(ROOT / "scripts" / f"{name}.py") for name in SCRIPTS]
    proc = subprocess.run([sys.executable, "-c", HELP_DRIVER, *paths], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=command_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {Path(path).stem: result for path, result in json.loads(proc.stdout.splitlines()[-1]).items()}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_a_help(script, script_helps):
    """Each command documents its options (and at least imports and parses)."""
    code, out = script_helps[script]
    assert code == 0, out[-2000:]
    assert "usage:" in out and "--" in out


def test_build_demo_checkpoint_ships_a_calibrated_model_with_its_card(toy, finetuned, tmp_path):
    from jepa4rec.calibration import calibrate
    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import Recommender

    ds = load_dataset(toy)
    fit, _ = calibrate(f"{finetuned[0].output_dir}/best", ds, tmp_path / "calibrated")
    script = load_script("build_demo_checkpoint")
    assert script.main([str(tmp_path / "calibrated"), str(tmp_path / "shipped"), "--dtype", "float16", "--test", toy,
                        "--command", "python -m jepa4rec.calibrate ..."]) == 0
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert f"repeat bias {fit['repeat_bias']:+.4f}" in card and "with the score priors" in card
    shipped = Recommender.from_pretrained(tmp_path / "shipped", ds, use_cache=False)
    assert shipped.repeat_bias == fit["repeat_bias"]
    test = json.loads((tmp_path / "shipped" / "training_card.json").read_text())["shipped_test"]
    assert test["dataset"] == toy and 0 < test["MRR"] <= 1


def test_table2_chart_lists_each_datasets_models_down_the_side():
    """The overall results chart (dozens of long model names) draws horizontal bars, a panel per dataset,
    each listing only its own models, in the file's order."""
    from app.plots import experiment_figure
    from jepa4rec.experiments import EXPERIMENTS

    exp = next(e for e in EXPERIMENTS if e.stem == "results_table")
    cells = ("history kept", "history excluded")
    df = pd.DataFrame([{"dataset": d, "model": m, "cell": c, "metric": k, "value": v}
                       for d, models in (("A", ["Popularity", "JEPA4Rec, pre-trained, fine-tuned"]), ("B", ["SASRec"]))
                       for i, m in enumerate(models) for c in cells
                       for k, v in (("NDCG@10", 0.01 * (i + 1)), ("Recall@10", 0.02))])
    fig = experiment_figure(exp, df)
    # NDCG@10 only (the file holds more metrics), a trace per cell per panel
    assert {t.orientation for t in fig.data} == {"h"} and len(fig.data) == 2 * 2
    assert {t.name for t in fig.data} == set(cells) and max(max(t.x) for t in fig.data) == pytest.approx(0.02)
    panels = {}
    for t in fig.data:
        panels.setdefault(t.yaxis, set()).update(t.y)
    assert sorted(map(sorted, panels.values())) == [["JEPA4Rec, pre-trained, fine-tuned", "Popularity"], ["SASRec"]]
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.height > 200


def test_gpu_run_prepare_packs_minilm_in_float16_and_the_datasets(tmp_path, capsys):
    """What ``scripts/gpu_scale_run.py prepare`` hands the device: MiniLM's folder with float16 weights (a
    minilm-sized language model the commands start from) and the datasets in one xz archive. The ``run``
    half needs a GPU and minutes; its CPU check is ``run --smoke`` (docs/training.md)."""
    import tarfile

    import torch
    from safetensors.torch import load_file

    from jepa4rec.language_models import language_model_dir
    from jepa4rec.modeling import matching_model_size
    from toy_corpus import write_domain

    for name, seed in (("Source", 1), ("Target", 2)):
        write_domain(tmp_path / "data" / name, seed=seed, n_users=20)
    gpu = tmp_path / "gpu"
    load_script("gpu_scale_run").main(["prepare", "--prepared", str(gpu), "--data-root", str(tmp_path / "data"),
                                       "--domains", "Source", "--target", "Target"])
    assert "A device call copies it with the tracked files" in capsys.readouterr().out
    assert json.loads((gpu / "prepared.json").read_text()) == {"domains": ["Source"], "target": "Target"}
    assert matching_model_size(gpu / "minilm") == "minilm"
    ours, wheel = load_file(str(gpu / "minilm" / "model.safetensors")), load_file(str(language_model_dir("minilm") / "model.safetensors"))
    assert ours.keys() == wheel.keys() and {t.dtype for t in ours.values()} == {torch.float16}
    assert all(torch.equal(ours[k], wheel[k].half()) for k in wheel)
    with tarfile.open(gpu / "data.tar.xz") as archive:
        names = set(archive.getnames())
    assert {"Source/items.jsonl", "Source/interactions.csv", "Target/items.jsonl", "Target/interactions.csv"} <= names


def test_the_reveal_charts_history_only_series_is_a_dashed_line_across_every_share():
    """Measured once (at 0% revealed), the history-only series would be one point under the revealed lines'
    first points; it is drawn as a dashed line over the whole range instead (Fig. 7)."""
    import pandas as pd

    from app.plots import experiment_figure
    from jepa4rec.experiments import EXPERIMENTS

    rows = [{"model": "JEPA4Rec (history only)", "dataset": "D", "metric": "Recall@10", "reveal": 0.0, "value": 0.1}]
    rows += [{"model": "JEPA4Rec (history + revealed words)", "dataset": "D", "metric": "Recall@10", "reveal": r / 10,
              "value": 0.1 + r / 20} for r in range(11)]
    fig = experiment_figure(next(e for e in EXPERIMENTS if e.stem == "reveal_curve"), pd.DataFrame(rows))
    dashed = [t for t in fig.data if t.line.dash == "dash"]
    assert len(dashed) == 1 and list(dashed[0].x) == [0.0, 1.0] and list(dashed[0].y) == [0.1, 0.1]
    assert dashed[0].name == "JEPA4Rec (history only)"
    solid = [t for t in fig.data if t.line.dash != "dash"]
    assert len(solid) == 1 and len(solid[0].x) == 11


def test_top10_overlap_of_a_model_with_itself_is_whole_and_excluded_lists_skip_the_history(toy, finetuned, tmp_path):
    import torch

    from jepa4rec.data import load_dataset
    from jepa4rec.recommender import Recommender

    script = load_script("top10_overlap")
    best = f"{finetuned[0].output_dir}/best"
    out = tmp_path / "o.json"
    assert script.main(["--dataset", toy, "--pair", "same", best, best, "--users", "20", "--batch-size", "7",
                        "--out", str(out), "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    cell = result["pairs"]["same"]
    assert result["users"] == 20 and "--pair same" in result["command"]
    for protocol in ("kept", "excluded"):
        assert cell[protocol]["mean_shared"] == 10 and cell[protocol]["identical_share"] == 1.0
        assert cell[protocol]["shared_counts"]["10"] == 20
    # the lists are the model's own top 10, in case order, and history items never appear under exclusion
    dataset = load_dataset(toy)
    cases = dataset.test_cases()[:20]
    lists = script.top_lists(best, dataset, cases, batch_size=7)
    direct = Recommender.from_pretrained(best, dataset).score_all([c.history for c in cases])
    tenth = direct.topk(10, dim=1).values[:, -1:]  # (batches pad differently, so exact ties may break otherwise)
    assert (direct.gather(1, lists["kept"]) >= tenth - 1e-5).all() and lists["kept"].shape == (20, 10)
    assert all(not set(row) & set(c.history) for row, c in zip(lists["excluded"].tolist(), cases))
    assert script.overlap(torch.tensor([[1, 2, 3]]), torch.tensor([[3, 4, 5]]))["mean_shared"] == 1


def test_reveal_demo_steps_are_paired_mrr_ratios_up_the_slider():
    script = load_script("measure_reveal_demo")
    history = [100, 50, 20, 10]
    ranks = {script.HISTORY_ONLY: history, "0": [200, 60, 30, 12], "25": [10, 5, 2, 1], "50": [10, 5, 2, 1],
             "75": [2, 1, 1, 1], "100": [1, 2, 1, 1]}
    steps = {(s["from"], s["to"]): s for s in script.paired_steps(ranks, resamples=200)}
    assert list(steps) == list(script.STEPS)
    same = steps[("25", "50")]  # the same ranks at two shares: a ratio of 1 with no spread
    assert same["mrr_ratio"] == 1.0 and same["ratio_low"] == same["ratio_high"] == 1.0 and same["p_value"] == 1.0
    down = steps[("75", "100")]  # one user falls from rank 1 to 2: the ratio is the MRRs' ratio
    assert down["mrr_ratio"] == pytest.approx((1 + 0.5 + 1 + 1) / (0.5 + 1 + 1 + 1))
    whole = steps[(script.HISTORY_ONLY, "100")]
    assert whole["mrr_ratio"] == pytest.approx((1 + 0.5 + 1 + 1) / sum(1 / r for r in history))
    assert whole["ratio_low"] > 1


def test_reveal_demo_measures_what_the_app_serves_and_records_it(tmp_path):
    """The whole command on real ml-100k users with the shipped tiny model served as the app would serve it
    (a checkpoints folder whose index names it): every user's rank at every share, the summaries those ranks
    give, the paired steps, and the serving precision."""
    import numpy as np

    from jepa4rec.paths import CHECKPOINTS_DIR

    served = tmp_path / "checkpoints"
    served.mkdir()
    for name in ("jepa4rec-tiny-pretrain", "jepa4rec-tiny-ml100k"):
        (served / name).symlink_to(CHECKPOINTS_DIR / name)
    (served / "index.json").write_text(json.dumps({"default": "jepa4rec-tiny-pretrain", "ml-100k": "jepa4rec-tiny-ml100k"}))
    script = load_script("measure_reveal_demo")
    out = tmp_path / "demo.json"
    assert script.main(["--dataset", "ml-100k", "--users", "6", "--threads", "1", "--checkpoints-dir", str(served),
                        "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"] == "jepa4rec-tiny-ml100k" and result["mode"] == "fine-tuned" and result["users"] == 6
    assert result["precision"] in ("fp32", "bf16")
    assert set(result["ranks"]) == {script.HISTORY_ONLY, *map(str, script.FRACTIONS)}
    for share, ranks in result["ranks"].items():
        assert len(ranks) == 6 and all(isinstance(r, int) and r >= 1 for r in ranks)
        summary = result["history_only"] if share == script.HISTORY_ONLY else result["reveal"][share]
        assert summary["mrr"] == pytest.approx(float(np.mean([1 / r for r in ranks])))
    assert [(s["from"], s["to"]) for s in result["steps"]] == list(script.STEPS)
    assert "--users 6" in result["command"]
