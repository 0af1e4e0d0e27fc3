"""The public API's modules import one another in one direction only: no cycle among the
modules of activation/api/ (a cycle makes each half unreadable without the other)."""

from __future__ import annotations

import ast
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "activation" / "api"


def _imports(module: Path) -> set[str]:
    """The activation.api modules `module` imports, at run time or for type checking."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("activation.api."):
                names.add(node.module.removeprefix("activation.api.").split(".")[0])
            elif node.module == "activation.api":
                names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {
                alias.name.removeprefix("activation.api.").split(".")[0]
                for alias in node.names
                if alias.name.startswith("activation.api.")
            }
    return names


def test_no_module_of_the_public_api_imports_another_in_a_circle() -> None:
    graph = {module.stem: _imports(module) for module in API.glob("*.py")}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        for imported in sorted(graph.get(name, ())):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            else:
                visit(imported, [*path, imported])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == []
