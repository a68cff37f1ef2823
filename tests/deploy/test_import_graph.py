"""The package's import graph has no circles, and the deploy layout keeps its one-way rules.

The graph is read from the source with ``ast``: every ``import`` / ``from ... import`` anywhere in a module (inside
functions too: an import that runs late still ties the two modules together), except those under
``if TYPE_CHECKING:``, which never run. ``from package import name`` points at ``package.name`` when that is a
module, else at the package. The parent package a Python import runs first is not an edge: a package that
re-exports its submodules would otherwise form a circle with each of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "ssdlite"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (file ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    found = set()
    for target in targets:
        while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(component) for component in found)


def test_backends_import_none_of_each_other_nor_the_predictor():
    graph = import_graph()
    backends = {name for name in graph if name.startswith("ssdlite.deploy.backends.")}
    assert {"ssdlite.deploy.backends.base", "ssdlite.deploy.backends.eager"} <= backends
    for backend in backends - {"ssdlite.deploy.backends.base"}:
        others = backends - {backend, "ssdlite.deploy.backends.base"}
        assert not graph[backend] & (others | {"ssdlite.deploy.predictor"}), (backend, sorted(graph[backend]))


def test_exporters_never_import_the_backends_or_the_predictor():
    graph = import_graph()
    exporters = [name for name in graph if name.startswith("ssdlite.deploy.export")]
    assert "ssdlite.deploy.export.onnx" in exporters
    for exporter in exporters:
        runtime_side = {target for target in graph[exporter] if target.startswith("ssdlite.deploy.backends")}
        assert not runtime_side and "ssdlite.deploy.predictor" not in graph[exporter], (exporter, graph[exporter])


def test_the_graph_reader_finds_a_circle_through_a_late_import(tmp_path):
    """The reader itself: a circle closed by an import inside a function counts; a TYPE_CHECKING one does not."""
    package = tmp_path / "ssdlite"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import a\n")
    (package / "sub" / "a.py").write_text("from ssdlite.sub.b import thing\n")
    (package / "sub" / "b.py").write_text("def thing():\n    from .a import other\n")
    (package / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ssdlite.sub import d\n"
    )
    (package / "sub" / "d.py").write_text("import ssdlite.sub.c\n")
    assert circles(import_graph(package)) == [["ssdlite.sub.a", "ssdlite.sub.b"]]
