"""The floors import one way: storage ← bot ← commands, and no two modules import each other.

Every module under storage/, bot/ and commands/ is read with `ast` (nothing is imported), and
every import statement counts: at the top, inside functions, under `if TYPE_CHECKING:`. An import
inside a function still ties the two modules together; it only hides the tie from Python's
start-up, so it must not be the way around a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"storage": 0, "bot": 1, "commands": 2}

# The composition root: it builds the runtime and registers the Slack listeners, so it alone
# may reach up to commands/.
COMPOSITION_ROOT = "bot.app"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file that names one of ours."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _ours(alias.name, known)
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                up = here[: len(here) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod; `from mod import thing` the module.
                target = _ours(f"{base}.{alias.name}", known) or _ours(base, known)
                if target:
                    yield target, node.lineno


def _ours(dotted: str, known: set[str]) -> str | None:
    """The most specific module of ours that `dotted` names, or None for anything else."""
    if dotted.split(".")[0] not in FLOORS:
        return None
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in _imports(name, path, known):
            if target != name:
                edges.setdefault(target, line)
    return graph


def _floor(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for importer, edges in sorted(graph.items()):
        for imported, line in sorted(edges.items()):
            if _floor(imported) <= _floor(importer):
                continue
            if importer == COMPOSITION_ROOT:
                continue
            path = importer.replace(".", "/") + ".py"
            found.append(f"{importer} (line {line} of {path}) imports {imported}")
    return found


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules (every module in it imports every
    other, directly or round a loop), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:
        # Tarjan's algorithm, iteratively: the module graph is deep enough to worry recursion.
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(groups)


def _cycle_in(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """One concrete cycle inside a strongly connected group, starting at its first module."""
    members = set(group)
    start = group[0]
    # Breadth-first from start back to start, inside the group only.
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return group  # unreachable for a strongly connected group


def test_every_floor_is_read() -> None:
    graph = _graph()
    for floor in FLOORS:
        assert any(module.split(".")[0] == floor for module in graph), floor
    # The reader resolves the imports it sees: the app imports the store.
    assert "storage.store" in graph["bot.app"]


def test_no_upward_import() -> None:
    found = upward_imports(_graph())
    assert not found, "upward imports (storage ← bot ← commands):\n" + "\n".join(found)


def test_no_import_circle() -> None:
    graph = _graph()
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(
        f"{', '.join(group)}: {' → '.join(_cycle_in(group, graph))}" for group in found
    )


def test_the_check_sees_a_circle_and_an_upward_import() -> None:
    """The checks themselves: a made-up graph with one circle and one upward import."""
    graph = {
        "storage.a": {"storage.b": 1},
        "storage.b": {"storage.a": 3, "bot.c": 4},
        "bot.c": {},
        "bot.app": {"commands.d": 1},
        "commands.d": {"bot.c": 2},
    }
    assert circles(graph) == [["storage.a", "storage.b"]]
    assert _cycle_in(["storage.a", "storage.b"], graph) == ["storage.a", "storage.b", "storage.a"]
    assert upward_imports(graph) == ["storage.b (line 4 of storage/b.py) imports bot.c"]
