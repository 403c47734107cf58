"""The core's package stays sans-IO and layered: rdbss.core imports nothing from rdbss.actors
(the I/O side hands it what it needs: an outbox, a clock, client liveness, metrics), and its
modules import each other without a circle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import rdbss.core

PACKAGE = Path(rdbss.core.__file__).parent


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_core_does_not_import_the_io_side() -> None:
    for path in PACKAGE.glob("*.py"):
        assert not any(n.startswith("rdbss.actors") for n in imports_of(path)), path.name


def test_the_core_modules_import_each_other_without_a_circle() -> None:
    graph = {
        f"rdbss.core.{path.stem}": {n for n in imports_of(path) if n.startswith("rdbss.core.")}
        for path in PACKAGE.glob("*.py")
        if path.stem != "__init__"
    }
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:  # pragma: no cover - the message names the circle
        raise AssertionError(f"import circle: {exc.args[1]}") from exc
    assert order[-1] == "rdbss.core.core"  # the dispatcher sits on top of every part


def test_no_module_of_the_core_is_long() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name
