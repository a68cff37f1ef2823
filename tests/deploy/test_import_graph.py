"""The import graph follows docs/design.md's "Dependencies point one way": every arrow of its layer diagram, no
circles, and the runtime's boundary (``ssdlite_runtime`` imports nothing of ``ssdlite``, torch or Lightning; no
backend imports another; optional packages are imported inside functions).

The graph is read from the source with ``ast``: every ``import`` / ``from ... import`` anywhere in a module (inside
functions too: an import that runs late still ties the two modules together), except those under
``if TYPE_CHECKING:``, which never run. ``from package import name`` points at ``package.name`` when that is a
module, else at the package. The parent package a Python import runs first is not an edge: a package that
re-exports its submodules would otherwise form a circle with each of them.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO_ROOT / "ssdlite"
RUNTIME_ROOT = REPO_ROOT / "runtime" / "ssdlite_runtime"
SCRIPTS = [*sorted((REPO_ROOT / "tools").glob("*.py")), REPO_ROOT / "detect.py", REPO_ROOT / "data" / "download.py"]
FORBIDDEN_IN_RUNTIME = {"ssdlite", "torch", "torchvision", "lightning", "pytorch_lightning"}
"""What the runtime never imports (the full package reaches it through entry points, which are no import)."""

LAYERS: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "data": {"core"},
    "evaluation": {"core"},
    "deploy": {"core", "models", "data", "evaluation"},
    "engine": {"core", "models", "data", "evaluation", "deploy"},
    "benchmarks": {"core", "models", "data", "evaluation", "deploy", "engine"},
    "commands": {"core", "models", "data", "evaluation", "deploy", "engine", "benchmarks", "openmp"},
    "openmp": set(),
}
"""docs/design.md's diagram: each subpackage of ``ssdlite`` and the ones it may import (``ssdlite_runtime``, the
shared base, is open to all of them)."""

THIRD_PARTY: dict[str, set[str]] = {
    "core": {"torch", "torchvision", "numpy"},
    "models": {"torch", "torchvision", "numpy"},
}
"""The layers that import few packages besides the standard library and ``ssdlite_runtime``: these only."""

LIGHTNING_USERS = ("ssdlite.engine", "ssdlite.data.datamodule")
"""Where Lightning is imported: the training loop and the LightningDataModule, nowhere else."""


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


@functools.cache  # read once per package: several tests walk the same graph
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


def imported_names(path: Path) -> dict[str, bool]:
    """Every module a file imports (any package), mapped to whether one such import is at the module's top level
    (TYPE_CHECKING imports left out; relative imports are the package's own and left out too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: dict[str, bool] = {}
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found = [node.module or ""]
        else:
            continue
        for name in found:
            names[name] = names.get(name, False) or parents.get(node) is tree
    return names


def top_level(name: str) -> str:
    return name.partition(".")[0]


def test_the_packages_have_no_import_circles():
    for root in (PACKAGE_ROOT, RUNTIME_ROOT):
        found = circles(import_graph(root))
        assert not found, "import circles: " + "; ".join(" <-> ".join(component) for component in found)


def layer(module: str) -> str:
    """``ssdlite.core.anchors`` -> "core" (the package itself: "ssdlite")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_each_layer_imports_only_the_layers_its_arrows_allow():
    graph = import_graph()
    assert set(LAYERS) == {layer(name) for name in graph if name != "ssdlite"}, "a new subpackage: give it its arrows"
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items() if source != "ssdlite"
        for target in targets
        if layer(target) != layer(source) and layer(target) not in LAYERS[layer(source)]
    )
    assert not wrong, "imports against docs/design.md's arrows: " + "; ".join(wrong)


def test_core_and_models_import_only_torch_torchvision_numpy_and_the_runtime():
    allowed_everywhere = set(sys.stdlib_module_names) | {"ssdlite", "ssdlite_runtime"}
    for name, path in module_names(PACKAGE_ROOT).items():
        if name != "ssdlite" and layer(name) in THIRD_PARTY:
            others = {top_level(module) for module in imported_names(path)} - allowed_everywhere
            assert others <= THIRD_PARTY[layer(name)], f"{name} imports {sorted(others - THIRD_PARTY[layer(name)])}"


def test_only_the_engine_and_the_datamodule_import_lightning():
    for name, path in module_names(PACKAGE_ROOT).items():
        if not name.startswith(LIGHTNING_USERS):
            lightning = {module for module in imported_names(path) if top_level(module) in ("lightning", "pytorch_lightning")}
            assert not lightning, f"{name} imports {sorted(lightning)}"


def test_the_scripts_of_a_checkout_only_call_a_command():
    for script in SCRIPTS:
        ours = {module for module in imported_names(script) if top_level(module) not in sys.stdlib_module_names}
        assert ours and ours <= {"ssdlite.commands", "ssdlite_runtime"}, f"{script.name} imports {sorted(ours)}"


def test_the_runtime_imports_nothing_of_ssdlite_nor_torch():
    for name, path in module_names(RUNTIME_ROOT).items():
        forbidden = {module for module in imported_names(path) if top_level(module) in FORBIDDEN_IN_RUNTIME}
        assert not forbidden, f"{name} imports {sorted(forbidden)}"


def test_backends_import_none_of_each_other_nor_the_predictor():
    runtime = import_graph(RUNTIME_ROOT)
    backends = {name for name in runtime if name.startswith("ssdlite_runtime.backends.")}
    base = "ssdlite_runtime.backends.base"
    assert {base, "ssdlite_runtime.backends.onnx_runtime"} <= backends
    for backend in backends - {base}:
        assert not runtime[backend] & (backends - {base} | {"ssdlite_runtime.predictor"}), (backend, runtime[backend])
    main = import_graph()
    assert {name for name in main if name.startswith("ssdlite.deploy.backends.")} == {"ssdlite.deploy.backends.eager"}
    eager = main["ssdlite.deploy.backends.eager"]
    assert not {name for name in eager if name.startswith("ssdlite.deploy.export")}


def test_runtime_modules_import_optional_packages_inside_functions():
    """A module's top level imports the standard library, numpy, cv2 and the runtime only: every backend is listed
    where some runtime is missing, one backend's package never loads for another's file, and ``ssdlite-detect``
    starts without supervision."""
    allowed = set(sys.stdlib_module_names) | {"numpy", "cv2", "ssdlite_runtime"}
    for path in sorted(RUNTIME_ROOT.rglob("*.py")):
        at_top = {name for name, top in imported_names(path).items() if top and top_level(name) not in allowed}
        assert not at_top, f"{path.name} imports {sorted(at_top)} at the top; import them inside the loader"


def test_exporters_never_import_the_backends_or_the_predictor():
    graph, files = import_graph(), module_names(PACKAGE_ROOT)
    exporters = [name for name in graph if name.startswith("ssdlite.deploy.export")]
    assert "ssdlite.deploy.export.onnx" in exporters
    for exporter in exporters:
        runtime_side = {target for target in graph[exporter] if target.startswith("ssdlite.deploy.backends")}
        runtime_side |= {name for name in imported_names(files[exporter])
                         if name.startswith(("ssdlite_runtime.backends", "ssdlite_runtime.predictor"))}
        assert not runtime_side, (exporter, graph[exporter])


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
