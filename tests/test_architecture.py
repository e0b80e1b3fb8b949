"""The package's import graph: no cycle, and the library never imports the application wing.

The lister reads every ``bayesresnet/**/*.py`` with :mod:`ast` and records every import,
at the top of a file and inside functions, absolute and relative. An import names the
deepest module of the package it reaches: ``from bayesresnet import plots`` is an arrow
to ``bayesresnet.plots``, ``from bayesresnet import __version__`` an arrow to the package
``bayesresnet`` itself. Run this file as a script to print the layer diagram.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "bayesresnet"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
APP = f"{PACKAGE}.app"
ENTRY_POINTS = {f"{PACKAGE}.__main__"}  # may import the application wing


def module_name(path: Path, root: Path = ROOT) -> str:
    """``bayesresnet/infer/nuts.py`` -> ``bayesresnet.infer.nuts``; ``__init__`` is its package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement reaches (candidates, not yet resolved to modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - (node.level - 1)])
        stem = f"{base}.{node.module}" if node.module else base
    else:
        stem = node.module or ""
    return [f"{stem}.{alias.name}" for alias in node.names]


def _resolve(name: str, modules: set[str]) -> str | None:
    """The deepest module of the package that ``name`` lies in, or None outside it."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Every module of the package and the modules of the package it imports (anywhere in it)."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(tree):
            # ``from a import b`` names a.b: the arrow goes to a.b if that is a module, else to a.
            targets |= {_resolve(name, modules) for name in _imported(node, module, is_package)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted; sinks come first."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def find_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One closed path through a strongly connected component, e.g. ``[a, b, a]``."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        step = min(w for w in graph[path[-1]] if w in members)
        if step in seen:
            return path[path.index(step) :] + [step]
        path.append(step)
        seen.add(step)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module."""
    return [find_cycle(graph, c) for c in strongly_connected(graph) if len(c) > 1]


def layers(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """Longest-path layering: layer 0 imports nothing of the package, layer k imports layer k-1.

    The modules of an import cycle share one layer (the layering of the condensation).
    """
    graph = import_graph() if graph is None else graph
    component_of = {m: tuple(c) for c in strongly_connected(graph) for m in c}
    depth: dict[tuple, int] = {}
    for component in dict.fromkeys(component_of.values()):  # sinks first (Tarjan's order)
        below = {component_of[w] for m in component for w in graph[m]} - {component}
        depth[component] = 1 + max((depth[c] for c in below), default=-1)
    result = [[] for _ in range(1 + max(depth.values()))]
    for module, component in component_of.items():
        result[depth[component]].append(module)
    return [sorted(layer) for layer in result]


def diagram(graph: dict[str, set[str]] | None = None) -> str:
    """The layers as text, top layer first, with the import cycles under them."""
    graph = import_graph() if graph is None else graph
    rows = layers(graph)
    short = [[m.removeprefix(f"{PACKAGE}.") for m in layer] for layer in rows]
    lines = [f"{len(graph)} modules on {len(rows)} layers"]
    lines += [f"{k:>3}  {'  '.join(layer)}" for k, layer in reversed(list(enumerate(short)))]
    for cycle in cycles(graph):
        lines.append("cycle: " + " -> ".join(cycle))
    return "\n".join(lines)


def _is_app(module: str) -> bool:
    return module == APP or module.startswith(f"{APP}.")


def test_the_lister_sees_local_relative_and_from_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "a.py").write_text("def f():\n    from bayesresnet.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import g\n")
    (pkg / "sub" / "b.py").write_text("from .. import c\nfrom bayesresnet import __version__\n")
    (pkg / "c.py").write_text("import bayesresnet.a\nimport numpy\n")
    graph = import_graph(pkg)
    assert graph == {
        "bayesresnet": set(),
        "bayesresnet.a": {"bayesresnet.sub.b"},
        "bayesresnet.sub": {"bayesresnet.sub.b"},
        "bayesresnet.sub.b": {"bayesresnet", "bayesresnet.c"},
        "bayesresnet.c": {"bayesresnet.a"},
    }
    assert cycles(graph) == [
        ["bayesresnet.a", "bayesresnet.sub.b", "bayesresnet.c", "bayesresnet.a"]
    ]
    assert layers({"x": {"y"}, "y": set(), "z": {"x", "y"}}) == [["y"], ["x"], ["z"]]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20  # the lister found the package
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)
    print(diagram(graph))


def test_the_library_never_imports_the_application_wing():
    graph = import_graph()
    assert any(_is_app(m) for m in graph), "the application wing bayesresnet.app is missing"
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if not _is_app(m) and m not in ENTRY_POINTS
        for t in targets
        if _is_app(t)
    )
    assert not upward, "library modules import the application wing:\n" + "\n".join(upward)


def test_the_atomic_writer_and_the_levels_import_nothing_of_the_package():
    graph = import_graph()
    assert graph[f"{PACKAGE}._io"] == set()
    assert graph[f"{PACKAGE}.levels"] == set()


if __name__ == "__main__":
    print(diagram())
