"""The shape of the code: which packages may import which (no new cycle between the
subpackages of ``workers``), read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ROOT / "workers"

# The layers of docs/architecture.md, bottom first: a package imports only from its own
# layer or those below.
LAYERS = [
    {"bus", "store", "tables", "gcpause"},
    {"liveness"},
    {"notify"},
    {"jobs"},
    {"proposals"},
    {"commands"},
    {"takeover", "recovery"},
    {"node", "jobops"},
    {"demo", "localcluster", "replay"},
    {"cli", "manager"},
]


def package_of(module: str) -> str | None:
    """``workers.<x>...`` -> ``x`` (a top-level module is a package of its own)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "workers" else None


def imports(path: Path) -> Iterator[str]:
    """The absolute module names ``path`` imports (also under ``TYPE_CHECKING``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "workers":
                yield from (f"workers.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def package_graph() -> dict[str, set[str]]:
    """Subpackage (or top-level module) of ``workers`` -> those it imports."""
    graph: dict[str, set[str]] = {}
    for path in WORKERS.rglob("*.py"):
        src = path.relative_to(WORKERS).parts[0].removesuffix(".py")
        if src == "__init__":
            continue
        for module in imports(path):
            dst = package_of(module)
            if dst is not None and dst != src:
                graph.setdefault(src, set()).add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_between_the_packages_of_workers() -> None:
    found = cycles(package_graph())
    assert found == [], f"an import cycle between packages of workers: {found}"


def test_a_package_imports_only_from_its_layer_or_below() -> None:
    rank = {p: i for i, layer in enumerate(LAYERS) for p in layer}
    graph = package_graph()
    assert sorted(set(graph) - set(rank)) == [], "place the new package in LAYERS (and the doc)"
    up = sorted((a, b) for a, bs in graph.items() for b in bs if rank[b] > rank[a])
    assert up == [], "an import up the layers of docs/architecture.md"
