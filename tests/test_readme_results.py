"""The README's results block is the committed tables', written by scripts/readme_results.py."""
from __future__ import annotations

import json
import shutil

import pytest
from commands import ROOT, load_script

from jepa4rec.errors import UserError

readme_results = load_script("readme_results")


def test_the_readme_states_the_numbers_of_the_committed_tables(capsys):
    assert readme_results.main(["--check"]) == 0


def test_a_changed_record_makes_the_readme_stale_until_it_is_rewritten(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    for name in ("results_table.json", "results_table_paired.json"):
        shutil.copy(ROOT / "scripts" / "results" / name, results / name)
    table = json.loads((results / "results_table.json").read_text())
    sasrec = next(r for r in table["records"] if (r["dataset"], r["model_key"]) == ("ml-100k", "sasrec"))
    sasrec["cells"]["excluded"]["NDCG@10"] = 0.12345
    (results / "results_table.json").write_text(json.dumps(table))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    before = readme.read_text()
    args = ["--readme", str(readme), "--results-dir", str(results)]
    assert readme_results.main([*args, "--check"]) == 1
    assert "+| SASRec (item IDs) |" in capsys.readouterr().out and readme.read_text() == before
    assert readme_results.main(args) == 0
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| SASRec (item IDs) |"))
    assert row.endswith("| 0.0491 / 0.1235 |")
    assert readme_results.main([*args, "--check"]) == 0
    # Only the block between the markers changes.
    assert readme.read_text().split(readme_results.BEGIN)[0] == before.split(readme_results.BEGIN)[0]
    assert readme.read_text().split(readme_results.END)[1] == before.split(readme_results.END)[1]


def test_a_readme_without_the_markers_is_named():
    with pytest.raises(UserError, match="needs one <!-- results:begin --> line"):
        readme_results.replace_block("# no markers\n", "block", "README.md")
