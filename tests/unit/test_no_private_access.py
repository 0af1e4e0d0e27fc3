"""The product reaches its dependencies through their public APIs only: no module of
activation/, fraud/ or metrics/ reads, writes or calls a `_private` attribute of an object
other than its own (`self`, `cls`), such as an aiohttp request's or a redis-py client's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("activation", "fraud", "metrics")


def private_accesses(source: str) -> list[str]:
    """`line: expression` of every `x._name` in `source` where x is not `self` or `cls`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("request._match_info", ["1: request._match_info"]),
        ("super()._make_server()", ["1: super()._make_server"]),
        ("self._cache = 1\ncls._registry\nobj.__class__", []),
    ],
)
def test_the_check_sees_private_names(source: str, expected: list[str]) -> None:
    assert private_accesses(source) == expected


def test_no_module_touches_a_private_attribute_of_another_object() -> None:
    offenders = {
        str(path.relative_to(ROOT)): hits
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (hits := private_accesses(path.read_text()))
    }
    assert offenders == {}
