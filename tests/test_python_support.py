"""Python 3.10-3.12 (pyproject's requires-python) on a machine with one interpreter: the code's syntax,
and the parts of scripts/check_python_support.py that run offline (its dependency resolution needs the
package index; docs/compatibility.md gives what it printed)."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile

from commands import ROOT, load_script

OLDEST = (3, 10)


def test_every_python_file_parses_as_the_oldest_supported_python():
    files = [p for folder in ("jepa4rec", "app", "scripts", "tests") for p in (ROOT / folder).rglob("*.py")]
    files.append(ROOT / "app.py")
    assert len(files) > 50
    for path in files:
        # feature_version rejects grammar newer than 3.10 (except*, PEP 695 type parameters, ...).
        ast.parse(path.read_text(), filename=str(path), feature_version=OLDEST)


def test_oldest_supported_python_matches_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={OLDEST[0]}.{OLDEST[1]}"' in text


def test_only_the_torch_pin_is_replaced_by_the_stand_in():
    script = load_script("check_python_support")
    text, version = script.with_stub_torch("# torch==9 in a comment is not a pin\ntorch==2.13.0\ntorchvision==0.1\n")
    assert version == "2.13.0"
    assert text == "# torch==9 in a comment is not a pin\ntorch==2.13.0+stub\ntorchvision==0.1\n"


def test_the_stand_in_wheel_installs_offline_with_no_files_and_no_dependencies(tmp_path):
    script = load_script("check_python_support")
    wheel = script.stub_wheel(tmp_path, "2.13.0")
    assert sorted(zipfile.ZipFile(wheel).namelist()) == [
        "torch-2.13.0+stub.dist-info/METADATA", "torch-2.13.0+stub.dist-info/RECORD", "torch-2.13.0+stub.dist-info/WHEEL"]
    target = tmp_path / "target"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
                           "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (target / "torch-2.13.0+stub.dist-info" / "METADATA").read_text().splitlines()[2] == "Version: 2.13.0+stub"


def test_the_report_reader_leaves_the_stand_in_out_and_normalises_names():
    script = load_script("check_python_support")
    report = {"install": [{"metadata": {"name": "torch", "version": "2.13.0+stub"}},
                          {"metadata": {"name": "huggingface_hub", "version": "2.4.0"}},
                          {"metadata": {"name": "Jinja2", "version": "3.1.6"}}]}
    assert script.resolved(report) == {"huggingface-hub": "2.4.0", "jinja2": "3.1.6"}
