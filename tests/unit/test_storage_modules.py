"""storage/ imports one way (model ← backends ← factory, docs/adr/0015) and never reaches into another module's privates."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.support import REPO

STORAGE = REPO / "storage"


def _module(path: Path) -> str:
    return "storage." + path.stem


def _parsed() -> dict[str, ast.Module]:
    return {
        _module(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
        for p in sorted(STORAGE.glob("*.py"))
        if p.stem != "__init__"
    }


def import_graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Each storage module → the storage modules it imports, at the top or inside a function."""
    known = set(trees)
    graph: dict[str, set[str]] = {m: set() for m in trees}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module in known:
                    graph[module].add(node.module)
                elif node.module == "storage":
                    graph[module] |= {f"storage.{a.name}" for a in node.names} & known
    return graph


def private_reaches(trees: dict[str, ast.Module]) -> list[str]:
    """`module: name` for every private name one storage module takes from another."""
    known = set(trees)
    found = []
    for module, tree in trees.items():
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in known:
                found += [f"{module}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.ImportFrom) and node.module == "storage":
                aliases |= {a.asname or a.name for a in node.names if f"storage.{a.name}" in known}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname for a in node.names if a.name in known and a.asname}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{module}: {node.value.id}.{node.attr}")
    return found


def test_storage_import_graph_has_no_cycle():
    graph = import_graph(_parsed())
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"storage/ has an import cycle: {' -> '.join(exc.args[1])}")
    assert order.index("storage.model") < order.index("storage.sqlite_store") < order.index("storage.tables")


@pytest.mark.parametrize(
    "backend",
    [
        "storage.sqlite_store",
        "storage.cassandra_store",
        "storage.cassandra_session",
        "storage.dfe_writer",
        "storage.migrations",
    ],
)
def test_model_and_backends_never_import_the_factory(backend):
    graph = import_graph(_parsed())
    assert "storage.tables" not in graph[backend]
    assert not graph["storage.model"] - {"storage.errors"}


def test_no_storage_module_uses_a_private_name_of_another():
    assert private_reaches(_parsed()) == []


def test_the_checks_see_a_cycle_and_a_private_reach():
    trees = {
        "storage.a": ast.parse("from storage.b import _hidden\n"),
        "storage.b": ast.parse("def f():\n    from storage import a\n    return a._secret\n"),
    }
    assert import_graph(trees) == {"storage.a": {"storage.b"}, "storage.b": {"storage.a"}}
    assert sorted(private_reaches(trees)) == ["storage.a: storage.b._hidden", "storage.b: a._secret"]
