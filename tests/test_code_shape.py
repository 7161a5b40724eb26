"""The layering rule, checked: no import cycle between the project's modules (lazy imports included)."""
from __future__ import annotations

from commands import ROOT, load_script


def test_no_module_imports_one_that_imports_it_back():
    shape = load_script("code_shape")
    edges, _, _ = shape.read_graph(ROOT, ["jepa4rec", "app"])
    assert len(edges) > 50 and shape.cycles(edges) == []
    # The check sees a cycle where one exists: two modules importing each other.
    assert shape.cycles({**edges, "jepa4rec.errors": edges["jepa4rec.errors"] | {"jepa4rec.cli"}})
