"""The package layering of docs/ARCHITECTURE.md, checked on the source.

Every ``import`` of a tuningfork module is read from the source with
:mod:`ast`, function-level imports included (they are how cycles used to be
hidden), and resolved to the package it lands in. A package may import only
from packages of a lower layer, or from packages of its own layer as long as
the imports between them form no cycle.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "tuningfork"

#: Lowest first. A top-level module (``errors.py``) counts as a package of its own.
LAYERS = [
    {"errors", "config"},
    {"data"},
    {"preprocessing"},
    {"plots", "simulation"},
    {"models"},
    {"training", "clustering", "embeddings", "generation", "morphometry"},
    {"pipeline", "web"},
    {"cli", "demo", "_environment"},
]
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in SOURCE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every tuningfork module that ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import sub`` imports the submodule itself.
            found.update(f"{target}.{alias.name}" for alias in node.names
                         if f"{target}.{alias.name}" in modules)
    return {target for target in found if target in modules and target != name}


def _top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _package_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        source = _top_package(name)
        for target in _imports(name, path, modules):
            if source and _top_package(target) and _top_package(target) != source:
                graph[source].add(_top_package(target))
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return stack[stack.index(successor):] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_package_has_a_layer():
    packages = {_top_package(name) for name in _modules()} - {""}
    assert packages <= set(LAYER_OF), f"packages without a layer: {sorted(packages - set(LAYER_OF))}"


def test_no_package_imports_a_higher_layer():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in _package_graph().items()
        for target in targets
        if LAYER_OF[target] > LAYER_OF[source]
    )
    assert not upward, f"imports of a higher layer: {upward}"


def test_no_package_level_import_cycle():
    cycle = _find_cycle(_package_graph())
    assert cycle is None, f"package import cycle: {' -> '.join(cycle)}"


def test_no_module_level_import_cycle_across_packages():
    modules = _modules()
    graph = {name: {target for target in _imports(name, path, modules)
                    if _top_package(target) != _top_package(name)}
             for name, path in modules.items()}
    # Within a package, an __init__ re-exporting its submodules is expected;
    # across packages a cycle through modules is a layering error.
    cycle = _find_cycle(graph)
    assert cycle is None, f"module import cycle: {' -> '.join(cycle)}"


def test_the_checker_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_relative_and_function_level_imports_resolve(tmp_path):
    module = tmp_path / "embed.py"
    module.write_text(
        "from ..models import folder\n"
        "from . import store\n"
        "def late():\n"
        "    from ..clustering.voting import VotingClustering\n"
    )
    modules = {name: tmp_path for name in (
        "tuningfork.models", "tuningfork.models.folder", "tuningfork.embeddings.store",
        "tuningfork.embeddings", "tuningfork.clustering.voting")}
    found = _imports("tuningfork.embeddings.embed", module, modules)
    assert found == {"tuningfork.models", "tuningfork.models.folder", "tuningfork.embeddings",
                     "tuningfork.embeddings.store", "tuningfork.clustering.voting"}
