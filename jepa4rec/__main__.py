"""``python -m jepa4rec``: the list of commands; ``python -m jepa4rec COMMAND ...`` runs one.

``python -m jepa4rec evaluate --checkpoint X --dataset Y`` is ``python -m jepa4rec.evaluate --checkpoint X
--dataset Y``. The list reads each command's summary from its module's docstring without importing it,
so it prints at once.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from .cli import EXIT_CODE

PACKAGE = Path(__file__).resolve().parent
# Every ``python -m jepa4rec.<name>`` command, in the order of the data flow.
COMMANDS = ("data", "pretrain", "finetune", "calibrate", "fit_predictor", "evaluate", "compare", "recommend")


def summary(name: str) -> str:
    path = PACKAGE / name / "__main__.py" if (PACKAGE / name).is_dir() else PACKAGE / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = doc.split("\n\n")[0].replace("\n", " ")
    return first.split(": ", 1)[-1]  # drop the leading "``python -m jepa4rec.X ...``"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m jepa4rec COMMAND [ARGS ...]   (or python -m jepa4rec.COMMAND [ARGS ...])", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary(name)}" for name in COMMANDS]
    lines += ["", "python -m jepa4rec COMMAND --help shows a command's options; the app is python app.py."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; the commands are {', '.join(COMMANDS)} — see python -m jepa4rec --help",
              file=sys.stderr)
        return EXIT_CODE
    module = importlib.import_module(f"jepa4rec.{name}.__main__" if name == "data" else f"jepa4rec.{name}")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
