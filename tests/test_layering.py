"""Imports go one way: model -> sources -> engine -> analysis -> report -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import runstate

PACKAGE = Path(runstate.__file__).parent
ORDER = ["errors", "model", "sources", "engine", "analysis", "report", "live", "export",
         "cli"]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "runstate" or len(parts) < 2:
        return None
    return ORDER.index(parts[1]) if parts[1] in ORDER else None


def test_no_module_imports_a_later_layer():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        own = _layer(".".join(rel.parts))
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                target = _layer(node.module)
                if target is not None and target > own:
                    bad.append(f"{rel}: imports {node.module}")
    assert not bad, "\n".join(bad)
