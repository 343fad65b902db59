"""Imports point down the pipeline and nowhere else: read from the source with `ast`, every import
between stagedsl's rooms goes from a higher room to a lower one (or stays in its room), no two
modules import each other in a circle, the core never imports the built-in plugins, and the
plugins import only `stagedsl`'s public names.

``python tests/test_layering.py`` prints the room graph (what the closing note of issue 8 shows).
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROOMS = ("base", "registry", "spec", "public", "plan", "engine", "export", "matrix_dir", "search_dir", "eval", "report", "ensemble",
         "matrix", "search", "api", "cli")
"""Bottom to top. `base` is what every room may use (errors and how they read, data, run_dir and its lock, extras); `public` is
the `stagedsl` package itself (its eager imports; the rest it loads lazily by name). Above the
engine sit the rooms that compose runs or read them: `matrix_dir` (`stagedsl.matrix.layout`,
the matrix folder's layout: what the matrix writes and eval and the ensembles read, as run_dir
is between the engine and the export), `search_dir` (`stagedsl.search.layout`, a search's folder,
which the report reads), eval, report, ensemble, matrix, search (its trials run through the
matrix's process pool)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] == "plugins":
        parts[0] = "stagedsl_plugins"
    return ".".join(parts)


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "stagedsl_plugins":
        return "plugins"
    if len(parts) == 1:
        return "public"
    if parts[1] in ("errors", "diagnostics", "data", "run_dir", "run_lock", "extras"):
        return "base"
    if parts[1] == "__main__":
        return "cli"
    if parts[1:3] == ["matrix", "layout"]:
        return "matrix_dir"
    if parts[1:3] == ["search", "layout"]:
        return "search_dir"
    return parts[1]


def imports(path: Path, modules: set[str]) -> list[tuple[str, str]]:
    """(imported module, how): "top" at module level, "lazy" inside a function, "type" under TYPE_CHECKING.

    ``from a.b import c`` imports the module ``a.b.c`` when there is one, else the names of ``a.b``.
    """
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, how: str) -> None:
        for child in ast.iter_child_nodes(node):
            kind = how
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "lazy"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                kind = "type"
            if isinstance(child, ast.Import):
                found.extend((alias.name, kind) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                found.extend((f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, kind) for alias in child.names)
            visit(child, kind)

    visit(tree, "top")
    return found


def graph() -> dict[str, list[tuple[str, str]]]:
    """Module -> the stagedsl / stagedsl_plugins modules it imports (that exist), with how."""
    files = {module_name(p): p for p in [*ROOT.glob("stagedsl/**/*.py"), *ROOT.glob("plugins/**/*.py")]}
    edges: dict[str, list[tuple[str, str]]] = {}
    for module, path in files.items():
        targets = []
        for name, how in imports(path, set(files)):
            if name.split(".")[0] in ("stagedsl", "stagedsl_plugins") and name in files and name != module:
                targets.append((name, how))
        edges[module] = sorted(set(targets))
    return edges


def upward(edges: dict) -> list[str]:
    """Every import from a room to a room above it."""
    rank = {name: i for i, name in enumerate(ROOMS)}
    out = []
    for module, targets in edges.items():
        if room(module) == "plugins":
            continue
        for target, how in targets:
            if room(target) == "plugins" or rank[room(target)] > rank[room(module)]:
                out.append(f"{module} -> {target} ({how})")
    return out


def cycles(edges: dict) -> list[list[str]]:
    """Circles of module-level imports (Tarjan's strongly connected components of size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, how in edges.get(node, ()):
            if how != "top":
                continue
            if target not in index:
                strong(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            strong(node)
    return found


def render() -> str:
    """The room graph: per room its modules, then every room-to-room arrow with how many imports make it."""
    edges = graph()
    by_room = collections.defaultdict(list)
    for module in edges:
        by_room[room(module)].append(module)
    arrows = collections.Counter()
    for module, targets in edges.items():
        for target, how in targets:
            if room(target) != room(module):
                arrows[(room(module), room(target), how)] += 1
    lines = ["rooms, bottom to top: " + " < ".join(ROOMS) + "   (plugins: outside, on `stagedsl` only)", ""]
    for name in (*ROOMS, "plugins"):
        lines.append(f"{name:<9} {', '.join(sorted(m.split('.', 1)[-1] if '.' in m else m for m in by_room[name]))}")
    lines += ["", "arrows (importer -> imported: module-level / lazy / type-only imports):"]
    pairs = sorted({(a, b) for a, b, _ in arrows}, key=lambda p: (ROOMS.index(p[0]) if p[0] in ROOMS else 99, p[1]))
    for a, b in pairs:
        counts = ", ".join(f"{arrows[(a, b, how)]} {how}" for how in ("top", "lazy", "type") if arrows[(a, b, how)])
        lines.append(f"  {a:>8} -> {b:<9} {counts}")
    up, circles = upward(edges), cycles(edges)
    lines += ["", f"arrows up the pipeline: {len(up)}" + "".join(f"\n  {u}" for u in up),
              f"circles of module-level imports: {len(circles)}" + "".join(f"\n  {' <-> '.join(c)}" for c in circles)]
    return "\n".join(lines)


def test_imports_point_down_the_pipeline_only():
    assert upward(graph()) == []


def test_no_module_imports_itself_round_a_circle():
    assert cycles(graph()) == []


def test_the_core_never_imports_the_plugins_and_the_plugins_only_the_public_api():
    for module, targets in graph().items():
        if room(module) == "plugins":
            outside = [t for t, _ in targets if t.startswith("stagedsl.")]
            assert outside == [], f"{module} imports {outside}: plugins use `stagedsl`'s public names only"
        else:
            assert not [t for t, _ in targets if t.startswith("stagedsl_plugins")], module


def test_the_check_sees_an_arrow_up():
    edges = {"stagedsl.spec.loader": [("stagedsl.engine.runner", "lazy")], "stagedsl.engine.runner": []}
    assert upward(edges) == ["stagedsl.spec.loader -> stagedsl.engine.runner (lazy)"]
    assert cycles({"a": [("b", "top")], "b": [("a", "top")]}) == [["a", "b"]]


if __name__ == "__main__":
    print(render())
