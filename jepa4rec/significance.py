"""Is one model's ranking better than another's, or within noise? The paired test behind
``python -m jepa4rec.compare``.

Two models evaluated on the same leave-one-out cases differ user by user; their metrics are means of
per-user values (:func:`jepa4rec.evaluation.per_case_metric`), so the comparison is paired. For each
metric :func:`compare` gives both means, the difference and the ratio B / A with a 95% interval from a
paired bootstrap over users (users resampled with replacement, the same users for both models), and the
two-sided p-value of a paired sign-flip randomisation test (the null: which model gave which of a user's
two values is a coin toss).

The inputs are rank files, one row per case: ``user,target`` and one ``rank_<cell>`` column per cell of the
comparison that was ranked (``rank_kept``, ``rank_excluded``, and with fitted priors ``rank_kept_priors``,
``rank_excluded_priors``: :data:`jepa4rec.evaluation.CELLS`), written by ``python -m jepa4rec.evaluate ...
--save-ranks FILE`` (:func:`write_ranks`). Both files are read in the same cell, so a comparison is always
like with like. Files written before the protocols were split have one ``rank`` column: history kept. Two
files must rank the same users' same targets: a pair from different splits or datasets is refused, naming
the first user that differs.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data.dataset import DataFormatError
from .evaluation import CELLS, per_case_metric

RANK_COLUMNS = ("user", "target")
LEGACY_RANK_COLUMN = "rank"  # files written before the two protocols: history kept
CHUNK = 500  # resamples drawn at once: bounds memory at CHUNK × users indexes
RANK_FILE_HINT = "write rank files with python -m jepa4rec.evaluate --save-ranks"


@dataclass(frozen=True)
class RankFile:
    """One model's per-case ranks, in file order."""
    path: str
    users: list[str]
    targets: list[str]
    ranks: np.ndarray


def rank_column(cell: str) -> str:
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
    return f"rank_{cell}"


def write_ranks(path: str | Path, users: Sequence[str], targets: Sequence[str],
                ranks: dict[str, torch.Tensor | Sequence[int]] | torch.Tensor | Sequence[int]) -> Path:
    """Write ``user,target,rank_<cell>...`` rows, one column per cell of ``ranks`` ({cell: ranks}, or one
    sequence of ranks: history kept; the format :func:`read_ranks` reads)."""
    if not isinstance(ranks, dict):
        ranks = {"kept": ranks}
    columns = {rank_column(cell): torch.as_tensor(r).reshape(-1).tolist() for cell, r in ranks.items()}
    if not columns:
        raise ValueError("no ranks to write")
    for name, values in columns.items():
        if not len(users) == len(targets) == len(values):
            raise ValueError(f"{len(users)} users, {len(targets)} targets and {len(values)} {name}: one of each per case")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*RANK_COLUMNS, *columns])
        writer.writerows(zip(users, targets, *columns.values()))
    return path


def write_case_ranks(path: str | Path, dataset, cases: Sequence,
                     ranks: dict[str, torch.Tensor | Sequence[int]] | torch.Tensor | Sequence[int]) -> Path:
    """Write the ranks of ``dataset``'s evaluation ``cases`` under the dataset's own user and item keys, so
    that files from two models (or two commands) pair by user."""
    return write_ranks(path, [dataset.user_keys[c.user] for c in cases], [dataset.item_keys[c.target] for c in cases],
                       ranks)


def read_ranks(path: str | Path, cell: str = "kept") -> RankFile:
    """Read one cell's ranks from a rank file (``rank_<cell>``; a file of the old one-column format has
    ``rank``, history kept), refusing by file and line a missing column, a rank that is not a positive
    integer, or a user listed twice."""
    path = Path(path)
    users: list[str] = []
    targets: list[str] = []
    ranks: list[int] = []
    seen: dict[str, int] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        column = rank_column(cell)
        if column not in header and cell == "kept" and LEGACY_RANK_COLUMN in header:
            column = LEGACY_RANK_COLUMN
        missing = [c for c in (*RANK_COLUMNS, column) if c not in header]
        if missing:
            has = [c.removeprefix("rank_") for c in header if c.startswith("rank_")]
            hint = (f"it ranks the cells {has}; choose one with --cell" if has else RANK_FILE_HINT)
            if column.endswith("_priors") and has:
                hint += " (cells with priors: evaluate with --priors fit)"
            raise DataFormatError(f"{path}: line 1: missing column(s) {', '.join(missing)} (has {header})", hint=hint)
        for line, row in enumerate(reader, start=2):
            user, raw = row["user"], row[column]
            try:
                rank = int(raw)
            except (TypeError, ValueError):
                rank = 0
            if rank < 1:
                raise DataFormatError(f"{path}: line {line}: rank {raw!r} is not a positive integer (ranks are 1-based)",
                                      hint=RANK_FILE_HINT)
            if user in seen:
                raise DataFormatError(f"{path}: line {line}: user {user!r} already on line {seen[user]}; one case per user",
                                      hint=RANK_FILE_HINT)
            seen[user] = line
            users.append(user)
            targets.append(row["target"])
            ranks.append(rank)
    if not ranks:
        raise DataFormatError(f"{path}: no rows; nothing to compare", hint=RANK_FILE_HINT)
    return RankFile(str(path), users, targets, np.asarray(ranks, dtype=np.int64))


def paired_ranks(a: RankFile, b: RankFile) -> tuple[np.ndarray, np.ndarray]:
    """B's ranks in A's user order; refuses files that do not rank the same users' same targets."""
    where = {u: i for i, u in enumerate(b.users)}
    only_a = [u for u in a.users if u not in where]
    if only_a or len(a.users) != len(b.users):
        raise DataFormatError(f"{a.path} ranks {len(a.users):,} users and {b.path} {len(b.users):,}"
                              + (f"; user {only_a[0]!r} is only in the first" if only_a else ""),
                              hint="compare evaluations of the same dataset, split and --max-users")
    order = np.asarray([where[u] for u in a.users])
    for i, j in enumerate(order):
        if a.targets[i] != b.targets[j]:
            raise DataFormatError(f"user {a.users[i]!r}: target {a.targets[i]!r} in {a.path} but {b.targets[j]!r} "
                                  f"in {b.path}", hint="compare evaluations of the same split (test or valid)")
    return a.ranks, b.ranks[order]


@dataclass(frozen=True)
class Comparison:
    metric: str
    users: int
    a: float
    b: float
    diff: float            # b − a
    diff_low: float        # 95% paired-bootstrap interval of the difference
    diff_high: float
    ratio: float           # b / a (nan when a is 0)
    ratio_low: float       # 95% interval of b / a (ratio_high is inf when resamples of a reach 0)
    ratio_high: float
    p_value: float         # two-sided paired sign-flip test of "no difference"


def compare(ranks_a, ranks_b, metric: str = "NDCG@10", resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired bootstrap interval and sign-flip p-value of ``metric`` between two models' ranks of the
    same cases (same order)."""
    va = per_case_metric(ranks_a, metric).numpy()
    vb = per_case_metric(ranks_b, metric).numpy()
    if va.shape != vb.shape:
        raise ValueError(f"{va.size} and {vb.size} cases: a paired test needs the same cases")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    n = va.size
    rng = np.random.default_rng(seed)
    d = vb - va
    boot_a, boot_b, flips = [], [], []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        boot_a.append(va[idx].mean(axis=1))
        boot_b.append(vb[idx].mean(axis=1))
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        flips.append((signs * d).mean(axis=1))
    boot_a, boot_b, flips = np.concatenate(boot_a), np.concatenate(boot_b), np.concatenate(flips)
    observed = d.mean()
    # The observed assignment counts as one of the equally likely ones, so p is never 0; the tolerance keeps
    # a flipped mean that equals the observed one up to float rounding counted as extreme.
    extreme = np.count_nonzero(np.abs(flips) >= abs(observed) - 1e-15)
    p = (1 + extreme) / (1 + resamples)
    low, high = np.percentile(boot_b - boot_a, [2.5, 97.5])
    ratio = vb.mean() / va.mean() if va.mean() > 0 else float("nan")
    # A resample where A scores 0 and B does not has an unbounded ratio (+inf, kept: a weak A must widen the
    # interval, not vanish from it); one where both score 0 says nothing about it and is left out. The
    # percentiles take observed values, never interpolating between a finite ratio and inf (which gave nan).
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(boot_a > 0, boot_b / boot_a, np.where(boot_b > 0, np.inf, np.nan))
    ratios = ratios[~np.isnan(ratios)]
    if va.mean() > 0 and ratios.size:
        r_low, r_high = np.percentile(ratios, [2.5, 97.5], method="inverted_cdf")
    else:
        r_low = r_high = np.nan
    return Comparison(metric, n, float(va.mean()), float(vb.mean()), float(observed), float(low), float(high),
                      float(ratio), float(r_low), float(r_high), float(p))


def format_comparison(c: Comparison) -> str:
    return (f"{c.metric:<10} A {c.a:.4f}  B {c.b:.4f}  B−A {c.diff:+.4f} [{c.diff_low:+.4f}, {c.diff_high:+.4f}]  "
            f"B/A {c.ratio:.3f}× [{c.ratio_low:.3f}, {c.ratio_high:.3f}]  p {c.p_value:.3g}")
