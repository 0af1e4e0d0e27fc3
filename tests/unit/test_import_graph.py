"""Imports point one way: no file of the project imports another in a circle, nothing under
activation/ imports fraud/ except the composition roots that start both, and the layers below the
apps (the foundation, then the public API) import nothing above them. The graph is read from the
source, counting imports inside functions and `TYPE_CHECKING` blocks, since those still tie the
files together for a reader."""

from __future__ import annotations

import ast
from collections.abc import Set as AbstractSet
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("activation", "fraud", "metrics", "activation_client")
# The composition roots start the server and the worker together, so they may import both sides.
COMPOSITION_ROOTS = frozenset({"activation.cli", "activation.dev"})

# The layers, each a tuple of packages and modules (a package stands for everything in it).
# The foundation: the rules, the stores, the HTTP plumbing every port shares, and what they need.
FOUNDATION = (
    "activation.licensing",
    "activation.store",
    "activation.web",
    "activation.clock",
    "activation.config",
    "activation.logs",
    "activation.client_address",
    "metrics",
)
PUBLIC_API = ("activation.api",)
# What builds the apps from settings: it knows every layer, so no layer may know it.
ASSEMBLY = ("activation.runtime", "activation.cli", "activation.dev")
# Each layer and what it may not import: the apps and the assembly above it. The public API is
# handed its collaborators; the admin API and fraud/ sit on top of it.
NOT_IMPORTED_BY = {
    FOUNDATION: ("activation.api", "activation.admin", *ASSEMBLY, "fraud"),
    PUBLIC_API: ("activation.admin", *ASSEMBLY, "fraud"),
}

# Violations known and not yet fixed, each to be removed from here when it is (the test fails when a
# listed one no longer occurs, so the lists only shrink).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()


def _module_files() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its __init__)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imported(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that importing `name` loads: the longest known prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod when there is one.
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _imported(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def _loaded_with(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """`target` and the packages Python runs on the way to it (their __init__ files), except the
    importer itself and the packages it already sits in."""
    parts = target.split(".")
    loaded = {".".join(parts[:end]) for end in range(1, len(parts) + 1)}
    return {
        name
        for name in loaded
        if name in modules and name != importer and not importer.startswith(name + ".")
    }


def _graph() -> dict[str, set[str]]:
    """Each module and the project modules its import statements name."""
    modules = _module_files()
    return {name: _imports_of(name, path, modules) for name, path in modules.items()}


def _loading_graph() -> dict[str, set[str]]:
    """Each module and every project module its imports run, package __init__ files included."""
    modules = _module_files()
    return {
        name: {loaded for target in targets for loaded in _loaded_with(target, name, modules)}
        for name, targets in _graph().items()
    }


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _describe_cycles(components: AbstractSet[frozenset[str]]) -> str:
    return "\n".join("  " + " <-> ".join(sorted(c)) for c in sorted(components, key=sorted))


def test_no_file_imports_another_in_a_circle() -> None:
    found = _cycles(_loading_graph())
    assert found == KNOWN_CYCLES, (
        f"new cycles:\n{_describe_cycles(found - KNOWN_CYCLES)}\n"
        f"listed cycles that no longer occur (remove them from KNOWN_CYCLES):\n"
        f"{_describe_cycles(KNOWN_CYCLES - found)}"
    )


def test_nothing_under_activation_but_the_composition_roots_imports_fraud() -> None:
    found = {
        (importer, imported)
        for importer, targets in _graph().items()
        if importer.split(".")[0] == "activation" and importer not in COMPOSITION_ROOTS
        for imported in targets
        if imported.split(".")[0] == "fraud"
    }

    def describe(edges: AbstractSet[tuple[str, str]]) -> str:
        return "\n".join(f"  {a} -> {b}" for a, b in sorted(edges))

    assert found == KNOWN_UPWARD, (
        f"new imports from activation/ into fraud/:\n{describe(found - KNOWN_UPWARD)}\n"
        f"listed ones that no longer occur (remove them from KNOWN_UPWARD):\n"
        f"{describe(KNOWN_UPWARD - found)}"
    )


def _within(module: str, parts: tuple[str, ...]) -> bool:
    return any(module == part or module.startswith(part + ".") for part in parts)


def test_the_foundation_and_the_public_api_import_nothing_above_them() -> None:
    graph = _graph()
    found = {
        (importer, imported)
        for layer, above in NOT_IMPORTED_BY.items()
        for importer, targets in graph.items()
        if _within(importer, layer)
        for imported in targets
        if _within(imported, above)
    }
    assert not found, "imports of a layer above:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in sorted(found)
    )


def test_every_layer_names_modules_that_exist() -> None:
    """A renamed package would otherwise drop out of the layering check unnoticed."""
    modules = _module_files()
    named = {part for layer, above in NOT_IMPORTED_BY.items() for part in (*layer, *above)}
    assert {name for name in named if name not in modules} == set()
