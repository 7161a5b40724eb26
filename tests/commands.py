"""Running the commands from tests: a script's module, the environment of a command run as a child
process, and how an expected failure must look (exit code 2 and one ``error: … — …`` line on stderr).
Shared by tests/test_cli.py, tests/test_scripts.py and tests/test_pretraining.py.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_env(**extra: str) -> dict:
    """The environment of a command run as a child process: offline, one thread, and this checkout first
    on ``PYTHONPATH``, so that ``python scripts/x.py`` imports the code under test even where another copy
    of the package is installed (pytest's ``pythonpath = ["."]`` does the same for the tests themselves)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def one_line_error(capsys, main, argv) -> str:
    """Run ``main(argv)``, which must fail on its input; returns its ``error:`` line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err, err
    line = err.rstrip("\n").splitlines()[-1]  # progress or warnings may come before it
    assert line.startswith("error: ") and " — " in line, err
    return line
