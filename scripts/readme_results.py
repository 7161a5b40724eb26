#!/usr/bin/env python
"""The README's results tables, written from the committed equal-terms tables, so the front door never
states a number the tables do not hold.

Reads ``scripts/results/results_table.json`` (every model's four cells: history kept / excluded, own scores
and with score priors) and ``results_table_paired.json`` (the paired tests), and writes the block between
the README's ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers: one NDCG@10 table for own scores,
one with score priors, and one of paired ratios (fine-tuned JEPA4Rec / SASRec, the app's model / SASRec,
JEPA4Rec / its λ2 = 0 twin, JEPA4Rec / the transformer over frozen MiniLM vectors; 95% bootstrap intervals,
same cell on both sides).
A model a dataset has no record of shows "–".

    python scripts/readme_results.py            # rewrite the block after scripts/results_table.py ran
    python scripts/readme_results.py --check    # exit 1 (and show the difference) when the README is stale
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError
from jepa4rec.evaluation import CELLS
from jepa4rec.paths import PROJECT_ROOT, RESULTS_DIR

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DATASETS = {"Scientific_UniSRec": "Scientific", "OnlineRetail": "Online Retail", "ml-100k": "ml-100k"}
# The README's rows (results_table.py's model keys) in reading order: baselines, then text models.
ROWS = {
    "popularity": "popularity",
    "sasrec": "SASRec (item IDs)",
    "frozen_last_items": "MiniLM, frozen, last items",
    "frozen_seq": "transformer over frozen MiniLM vectors",
    "zeroshot_recformer": "RecFormer-style (λ2 = 0), zero-shot",
    "zeroshot_jepa4rec": "JEPA4Rec, zero-shot",
    "recformer": "RecFormer-style (λ2 = 0), fine-tuned",
    "jepa4rec": "JEPA4Rec, fine-tuned",
    "scratch": "JEPA4Rec from MiniLM, fine-tuned (the app's)",
}
# The paired ratios the README prints (a / b is b's metric over a's: above 1, b ranks better).
PAIRS = (("sasrec", "jepa4rec", "JEPA4Rec / SASRec"), ("sasrec", "scratch", "the app's model / SASRec"),
         ("recformer", "jepa4rec", "JEPA4Rec / λ2 = 0 twin"),
         ("frozen_seq", "jepa4rec", "JEPA4Rec / transformer over frozen vectors"))
METRIC = "NDCG@10"


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found", hint="run scripts/results_table.py first, or give --results-dir") from None
    except ValueError as err:
        raise UserError(f"{path}: not JSON ({err})", hint="rerun scripts/results_table.py --table-only") from None


def _ratio(p: dict) -> str:
    return f"{p['ratio']:.3f}× [{p['ratio_low']:.3f}, {p['ratio_high']:.3f}]"


def results_block(results_dir: Path) -> str:
    """The README's results block (markers excluded) from the tables in ``results_dir``."""
    records = _load(results_dir / "results_table.json")["records"]
    pairs = _load(results_dir / "results_table_paired.json")["pairs"]
    value = {(r["dataset"], r["model_key"]): r["cells"] for r in records}
    paired = {(p["dataset"], p["a"], p["b"], p["cell"]): p for p in pairs if p["metric"] == METRIC}
    rows = [k for k in ROWS if any((d, k) in value for d in DATASETS)]
    lines = []
    for title, (kept, excluded) in (("own scores", CELLS[:2]), ("with score priors", CELLS[2:])):
        lines += [f"| {title} | " + " | ".join(DATASETS.values()) + " |", "|---" * (len(DATASETS) + 1) + "|"]
        for key in rows:
            cells = [f"{value[d, key][kept][METRIC]:.4f} / {value[d, key][excluded][METRIC]:.4f}"
                     if (d, key) in value else "–" for d in DATASETS]
            lines.append(f"| {ROWS[key]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["| paired, NDCG@10 | kept | excluded | kept + priors | excluded + priors |", "|---" * 5 + "|"]
    for a, b, what in PAIRS:
        for d, name in DATASETS.items():
            found = [paired.get((d, a, b, c)) for c in CELLS]
            if all(found):
                lines.append(f"| {name}: {what} | " + " | ".join(_ratio(p) for p in found) + " |")
    return "\n".join(lines)


def replace_block(readme: str, block: str, where: str = "README.md") -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise UserError(f"{where}: needs one {BEGIN} line and, after it, one {END} line",
                        hint="put them around the Results tables once; the script rewrites what is between")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    # The blank line ends the last table: a text line right after one would read as another row.
    return f"{head}{BEGIN}\n{block}\n\n{END}{tail}"


@command
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default=str(PROJECT_ROOT / "README.md"), help="the README to write or check")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR),
                        help="where results_table.json and results_table_paired.json are")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and print the difference when the README's block is stale")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    if not path.is_file():
        raise UserError(f"no README at --readme {path}", hint="give the project's README.md (the default)")
    readme = path.read_text(encoding="utf-8")
    updated = replace_block(readme, results_block(Path(args.results_dir)), str(path))
    if updated == readme:
        print(f"{path}: the results block is the tables' ({args.results_dir})")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(readme.splitlines(True), updated.splitlines(True),
                                                   str(path), "from the tables"))
        return 1
    path.write_text(updated, encoding="utf-8")
    print(f"{path}: results block rewritten from {args.results_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
