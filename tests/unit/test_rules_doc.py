"""docs/rules.md covers R1–R17 and its pointers into the code resolve.

A pointer is a Markdown link with a relative target. Its path must exist, and each backticked
name in its text must be defined in the linked file:
- Python: `module.name`, `name` or `Class.member` (a def, class or assigned name; a leading part
  equal to the file's stem is the module);
- Lua: a `local function name` of the script;
- `§ MARK` in a link's text: MARK must appear in a comment of the linked file (the Lua script's
  sections are marked by the rule they serve, e.g. `-- R13: ...`).
A backticked file name equal to the link target's own name just names the file.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rules.md"
RULES = [f"R{n}" for n in range(1, 18)]

LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{2,4} (R\d+)\b", re.MULTILINE)
NAME = re.compile(r"`([^`]+)`")
MARK = re.compile(r"§ ([A-Za-z0-9_.]+)")
LUA_FUNCTION = re.compile(r"^\s*(?:local\s+)?function\s+([A-Za-z_][A-Za-z0-9_.]*)\s*\(", re.M)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def relative_links(text: str) -> list[tuple[str, str]]:
    """(link text, target path) of every link into the repository."""
    links = []
    for match in LINK.finditer(text):
        target = match["target"]
        if target.startswith(("#", "http://", "https://", "mailto:")):
            continue
        links.append((match["text"], target.split("#", 1)[0]))
    return links


def _defined_in(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


@cache
def _python_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def python_defines(path: Path, dotted: str) -> bool:
    """Whether `dotted` (`name`, `module.name`, `Class.member`, `module.Class.member`) is
    defined in the Python file at `path`."""
    parts = dotted.split(".")
    if len(parts) > 1 and parts[0] == path.stem:
        parts = parts[1:]
    body: list[ast.stmt] = _python_tree(path).body
    for index, part in enumerate(parts):
        node = _defined_in(body).get(part)
        if node is None:
            return False
        if index < len(parts) - 1:
            if not isinstance(node, ast.ClassDef):
                return False
            body = node.body
    return True


def lua_defines(path: Path, name: str) -> bool:
    return name in LUA_FUNCTION.findall(path.read_text(encoding="utf-8"))


def comment_mentions(path: Path, mark: str) -> bool:
    prefix = "--" if path.suffix == ".lua" else "#"
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(mark)}(?![A-Za-z0-9_])")
    return any(
        line.strip().startswith(prefix) and pattern.search(line)
        for line in path.read_text(encoding="utf-8").splitlines()
    )


def pointer_problems(text: str, doc_dir: Path) -> list[str]:
    """Every pointer of `text` (a document in `doc_dir`) that does not resolve, described."""
    problems = []
    for link_text, target in relative_links(text):
        path = (doc_dir / target).resolve()
        if not path.exists():
            problems.append(f"{target}: no such file")
            continue
        for name in NAME.findall(link_text):
            if name == path.name:
                continue
            if path.suffix == ".py":
                found = python_defines(path, name)
            elif path.suffix == ".lua":
                found = lua_defines(path, name)
            else:
                found = False
            if not found:
                problems.append(f"{target}: `{name}` is not defined there")
        for mark in MARK.findall(link_text):
            if not comment_mentions(path, mark):
                problems.append(f"{target}: no comment marks § {mark}")
    return problems


def rule_sections(text: str) -> dict[str, str]:
    """Each R-heading's section: up to the next heading of the same or a higher level."""
    sections: dict[str, str] = {}
    for match in HEADING.finditer(text):
        level = match[0].index(" ")
        following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
        sections[match[1]] = text[match.start() : following.start() if following else len(text)]
    return sections


def test_every_rule_r1_to_r17_has_one_heading() -> None:
    headings = HEADING.findall(doc_text())
    assert sorted(headings, key=lambda r: int(r[1:])) == RULES, headings


def test_every_rule_points_to_code_and_tests() -> None:
    """Each rule's section links to at least one implementing file and one test file."""
    for rule, section in rule_sections(doc_text()).items():
        targets = [target for _, target in relative_links(section)]
        code = [t for t in targets if not t.startswith("../tests/")]
        tests = [t for t in targets if t.startswith("../tests/")]
        assert code, f"{rule} points to no code"
        assert tests, f"{rule} points to no tests"


def test_every_pointer_resolves() -> None:
    links = relative_links(doc_text())
    assert len(links) >= 17 * 2, f"only {len(links)} pointers found"
    problems = pointer_problems(doc_text(), DOC.parent)
    assert not problems, "broken pointers:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ("[`x`](../activation/licensing/no_such_module.py)", "no such file"),
        ("[`eligibility.eligible_build`](../activation/licensing/eligibility.py)", "not defined"),
        ("[`Ladder.no_such_member`](../fraud/escalation.py)", "not defined"),
        ("[`no_such_function`](../activation/store/activate.lua)", "not defined"),
        ("[`activate.lua` § R99](../activation/store/activate.lua)", "no comment marks"),
    ],
)
def test_a_broken_pointer_is_reported(broken: str, problem: str) -> None:
    """The checker itself can fail: each kind of broken pointer is named."""
    problems = pointer_problems(doc_text() + "\n" + broken + "\n", DOC.parent)
    assert len(problems) == 1 and problem in problems[0], problems
