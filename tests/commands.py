"""Running the commands from tests: a script's module, and how an expected failure must look (exit
code 2 and one ``error: … — …`` line on stderr). Shared by tests/test_cli.py and tests/test_scripts.py.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
