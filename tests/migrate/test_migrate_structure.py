"""The migrate package has no import cycle (its modules import in one order)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "tfxent" / "migrate"


def test_migrate_modules_import_without_cycles():
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        imports = set()
        for node in ast.walk(ast.parse(path.read_text())):  # also imports inside functions
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "tfxent.migrate."
            ):
                imports.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = imports
    assert "_notebook" in graph["_files"] and "_engine" in graph["_files"]
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError
    assert order.index("_engine") < order.index("_notebook") < order.index("_files")
