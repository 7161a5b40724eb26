#!/usr/bin/env python
"""The shape of the code, measured: modules, the import graph (layers, cycles), the longest functions.

Reads the Python files of ``jepa4rec/`` and ``app/`` (or the folders given) under ``--root`` without importing
them, and prints:

* modules and lines per package;
* the import graph between them (every ``import`` / ``from ... import`` of a project module, lazy ones inside
  functions included): edges, strongly connected components of more than one module (import cycles), and
  the longest chain of imports (the number of layers);
* the ten longest functions (lines from ``def`` to the end of their body).

Duplicated blocks are the ``duplicates`` tool's to count. ``--json`` writes the figures for a note.

    python scripts/code_shape.py
    python scripts/code_shape.py --root ../some-checkout --json shape.json
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import names (relative ones resolved against ``current``)."""
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def read_graph(root: Path, packages: list[str]) -> tuple[dict[str, set[str]], dict[str, int], list[tuple[int, str]]]:
    files = {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    edges: dict[str, set[str]] = {m: set() for m in files}
    lines: dict[str, int] = {}
    functions: list[tuple[int, str]] = []
    for name, path in files.items():
        text = path.read_text(encoding="utf-8")
        lines[name] = text.count("\n")
        tree = ast.parse(text)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                # "from . import readers" imports the submodule readers, not the package's __init__.
                base = resolve(name, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                # the longest project module the import names (a name inside a module counts as the module)
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges[name].add(t)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return edges, lines, sorted(functions, reverse=True)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan); a package importing its own
    submodules to re-export them is not a cycle unless a submodule imports the package back."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def depth(edges: dict[str, set[str]], cyclic: set[str]) -> int:
    """The longest import chain among modules outside cycles (the number of layers)."""
    memo: dict[str, int] = {}

    def d(v) -> int:
        if v not in memo:
            memo[v] = 0
            memo[v] = 1 + max((d(w) for w in edges.get(v, ()) if w not in cyclic), default=0)
        return memo[v]

    return max((d(v) for v in edges if v not in cyclic), default=0)


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="the checkout to measure")
    p.add_argument("--packages", nargs="+", default=["jepa4rec", "app"], help="folders of Python modules to read")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    root = Path(args.root)
    missing = [pkg for pkg in args.packages if not (root / pkg).is_dir()]
    if missing:
        raise UserError(f"--root {root} has no {', '.join(missing)} folder", hint="give the root of a checkout")
    edges, lines, functions = read_graph(root, args.packages)
    loops = cycles(edges)
    cyclic = {m for c in loops for m in c}
    shape = {"root": str(root), "modules": len(edges), "lines": sum(lines.values()),
             "per_package": {pkg: {"modules": sum(m.split(".")[0] == pkg for m in edges),
                                   "lines": sum(n for m, n in lines.items() if m.split(".")[0] == pkg)}
                             for pkg in args.packages},
             "import_edges": sum(len(v) for v in edges.values()), "cycles": loops, "layers": depth(edges, cyclic),
             "longest_functions": [{"lines": n, "function": f} for n, f in functions[:10]],
             "longest_modules": [{"lines": n, "module": m} for m, n in sorted(lines.items(), key=lambda kv: -kv[1])[:5]]}
    print(f"{shape['modules']} modules, {shape['lines']:,} lines "
          + ", ".join(f"({k}: {v['modules']} modules, {v['lines']:,} lines)" for k, v in shape["per_package"].items()))
    print(f"{shape['import_edges']} imports between them; {shape['layers']} layers; "
          f"{len(loops)} import cycle(s){': ' + '; '.join(' <-> '.join(c) for c in loops) if loops else ''}")
    print("ten longest functions: " + ", ".join(f"{f['function']} ({f['lines']})" for f in shape["longest_functions"]))
    print("longest modules: " + ", ".join(f"{m['module']} ({m['lines']})" for m in shape["longest_modules"]))
    if args.json:
        Path(args.json).write_text(json.dumps(shape, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
