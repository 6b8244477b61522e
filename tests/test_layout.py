"""The package's floor plan: no two modules import each other (lazy imports included), and the
trainer modules stay small enough to read top to bottom."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"turngym": ROOT / "turngym", "turngym.trainers": ROOT / "trainers"}
MAX_TRAINER_LINES = 400


def _import_graph() -> dict[str, set[str]]:
    """{module: the modules of PACKAGES it imports anywhere in its file, function bodies included}."""
    files = {
        f"{package}.{path.stem}": path
        for package, folder in PACKAGES.items()
        for path in folder.glob("*.py")
        if path.name != "__init__.py"
    }
    graph = {}
    for name, path in files.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_module_imports_one_that_imports_it_back():
    graph = _import_graph()
    assert "turngym.types" in graph and "turngym.trainers.critic" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_lazy_import_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_trainer_modules_are_small():
    sizes = {
        path.name: len(path.read_text().splitlines()) for path in PACKAGES["turngym.trainers"].glob("*.py")
    }
    assert "common.py" not in sizes  # the old grab-bag, split by concern
    assert max(sizes.values()) <= MAX_TRAINER_LINES, sizes
