"""Paired comparison of two models' rankings (jepa4rec.significance, python -m jepa4rec.compare) and the
rank files it reads."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from commands import one_line_error
from jepa4rec.data.dataset import DataFormatError
from jepa4rec.evaluation import metrics_from_ranks, per_case_metric
from jepa4rec.compare import main
from jepa4rec.significance import compare, paired_ranks, read_ranks, write_ranks


def test_per_case_values_average_to_the_metrics():
    ranks = torch.tensor([1, 2, 3, 10, 11, 500])
    metrics = metrics_from_ranks(ranks)
    for name, value in metrics.items():
        assert float(per_case_metric(ranks, name).mean()) == pytest.approx(value)
    assert per_case_metric([3], "NDCG@10").item() == pytest.approx(0.5)  # 1 / log2(4)
    assert per_case_metric([11], "NDCG@10").item() == 0.0
    with pytest.raises(ValueError, match="unknown metric 'HR@10'"):
        per_case_metric([1], "HR@10")
    with pytest.raises(ValueError, match="1-based"):
        per_case_metric([0], "MRR")


def test_identical_rankings_do_not_differ():
    ranks = np.random.default_rng(0).integers(1, 200, size=300)
    c = compare(ranks, ranks.copy(), "NDCG@10", resamples=500)
    assert c.diff == 0.0 and (c.diff_low, c.diff_high) == (0.0, 0.0)
    assert c.ratio == pytest.approx(1.0) and c.p_value == 1.0


def test_a_clearly_better_ranking_is_significant_and_the_sign_follows_the_order():
    rng = np.random.default_rng(1)
    a = rng.integers(1, 100, size=2000)
    b = np.maximum(1, a - 30)  # every target moved up 30 places
    better = compare(a, b, "Recall@10", resamples=2000)
    assert better.b > better.a and better.diff_low > 0 and better.ratio_low > 1
    assert better.p_value <= 1 / 2000 * 2  # at the test's floor
    worse = compare(b, a, "Recall@10", resamples=2000)
    assert worse.diff == pytest.approx(-better.diff) and worse.diff_high < 0


def test_a_baseline_with_few_hits_gives_an_unbounded_ratio_not_nan():
    """2 hits in 1,000 users: about 14% of resamples give A a mean of 0, so the ratio's upper end is inf."""
    a = np.full(1000, 500)
    a[:2] = 1
    b = np.full(1000, 500)
    b[:40] = 1
    c = compare(a, b, "Recall@10", resamples=2000)
    assert c.ratio == pytest.approx(20.0) and 1 < c.ratio_low < c.ratio and c.ratio_high == np.inf
    # Resamples where both are 0 are left out; with A all zeros there is no ratio at all.
    none = compare(np.full(50, 500), b[:50], "Recall@10", resamples=500)
    assert np.isnan([none.ratio, none.ratio_low, none.ratio_high]).all() and none.diff > 0


def test_a_few_swapped_users_are_within_noise():
    rng = np.random.default_rng(2)
    a = rng.integers(1, 50, size=3000)
    b = a.copy()
    # Three users gain a top place and three lose one: no difference a paired test should call real.
    up, down = rng.choice(3000, size=(2, 3), replace=False)
    b[up], b[down] = 1, 40
    c = compare(a, b, "NDCG@10", resamples=2000, seed=3)
    assert c.diff_low < 0 < c.diff_high and c.p_value > 0.2
    # Seeded: the same call gives the same interval.
    assert compare(a, b, "NDCG@10", resamples=2000, seed=3) == c


def test_rank_files_round_trip_and_pair_by_user(tmp_path):
    a = write_ranks(tmp_path / "a.csv", ["u1", "u2", "u3"], ["i1", "i2", "i3"], torch.tensor([1, 5, 20]))
    b = tmp_path / "b.csv"
    b.write_text("user,target,rank\nu3,i3,2\nu1,i1,4\nu2,i2,5\n")  # another order: paired by user
    ra, rb = paired_ranks(read_ranks(a), read_ranks(b))
    assert ra.tolist() == [1, 5, 20] and rb.tolist() == [4, 5, 2]


@pytest.mark.parametrize("text, message", [
    ("user,rank\nu1,3\n", "line 1: missing column(s) target"),
    ("user,target,rank\nu1,i1,3\nu2,i2,zero\n", "line 3: rank 'zero' is not a positive integer"),
    ("user,target,rank\nu1,i1,3\nu1,i2,4\n", "line 3: user 'u1' already on line 2"),
    ("user,target,rank\n", "no rows"),
])
def test_a_bad_rank_file_is_refused_by_line(tmp_path, text, message):
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_ranks(path)


def test_files_of_different_cases_are_refused(tmp_path):
    a = read_ranks(write_ranks(tmp_path / "a.csv", ["u1", "u2"], ["i1", "i2"], [1, 2]))
    other_users = read_ranks(write_ranks(tmp_path / "b.csv", ["u1", "u9"], ["i1", "i2"], [1, 2]))
    with pytest.raises(DataFormatError, match="user 'u2' is only in the first"):
        paired_ranks(a, other_users)
    other_split = read_ranks(write_ranks(tmp_path / "c.csv", ["u1", "u2"], ["i1", "i7"], [1, 2]))
    with pytest.raises(DataFormatError, match="user 'u2': target 'i2'"):
        paired_ranks(a, other_split)


def test_evaluate_saves_the_ranks_its_metrics_average(finetuned, toy, tmp_path, capsys):
    """A real checkpoint evaluated twice (trained, and the same config untrained) through the commands a
    user runs: the rank file reproduces the reported metrics, and the comparison reads both files."""
    from jepa4rec.evaluate import main as evaluate_main

    cfg, _ = finetuned
    checkpoint = f"{cfg.output_dir}/best"
    trained, untrained, record = tmp_path / "trained.csv", tmp_path / "untrained.csv", tmp_path / "r.jsonl"
    assert evaluate_main(["--checkpoint", checkpoint, "--dataset", toy, "--save-ranks", str(trained),
                          "--out", str(record)]) == 0
    assert evaluate_main(["--checkpoint", checkpoint, "--dataset", toy, "--random-init",
                          "--save-ranks", str(untrained)]) == 0
    reported = json.loads(record.read_text().splitlines()[0])
    saved = read_ranks(trained)
    assert len(saved.users) == reported["users"]
    assert metrics_from_ranks(saved.ranks)["NDCG@10"] == pytest.approx(reported["NDCG@10"], abs=1e-12)

    capsys.readouterr()
    out = tmp_path / "cmp.jsonl"
    assert main([str(untrained), str(trained), "--resamples", "300", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NDCG@10" in printed and "Recall@10" in printed and "MRR" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["metric"] for r in rows] == ["NDCG@10", "Recall@10", "MRR"]
    assert rows[0]["b"] == pytest.approx(reported["NDCG@10"], abs=1e-12)
    assert (rows[0]["file_a"], rows[0]["file_b"]) == (str(untrained), str(trained))


def test_the_command_refuses_mismatched_files_in_one_line(tmp_path, capsys):
    a = write_ranks(tmp_path / "a.csv", ["u1", "u2"], ["i1", "i2"], [1, 2])
    b = write_ranks(tmp_path / "b.csv", ["u1"], ["i1"], [1])
    line = one_line_error(capsys, main, [str(a), str(b)])
    assert "ranks 2 users" in line and "same dataset, split" in line
    line = one_line_error(capsys, main, [str(a), str(a), "--metrics", "HR@10"])
    assert "unknown metric 'HR@10'" in line
