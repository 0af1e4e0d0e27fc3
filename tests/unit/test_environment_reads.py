"""Every environment variable is read in one place, `Settings.from_env` (activation/config.py),
so the configuration is validated at start-up and the README's table is the whole of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("activation", "fraud", "metrics", "activation_client")
SETTINGS = "activation/config.py"
ENVIRONMENT = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})

# Files that touch the environment for a reason other than configuring the server.
ALLOWED = {
    # The command-line client is a separate program: it reads its own pinned public keys.
    "activation_client/cli.py",
    # prometheus-client's multi-process mode is switched by PROMETHEUS_MULTIPROC_DIR, which the
    # server sets for its child processes and the metrics module reads back in each child.
    "activation/cli.py",
    "metrics/__init__.py",
    # The development composition root hands the real environment to Settings with DEV on.
    "activation/dev.py",
}


def _touches_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ENVIRONMENT for alias in node.names)
        ):
            return True
    return False


def test_only_settings_reads_the_environment() -> None:
    found = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if _touches_environment(path)
    }
    outside = sorted(found - ALLOWED - {SETTINGS})
    assert outside == [], f"read the environment outside Settings: {outside}"
    stale = sorted(ALLOWED - found)
    assert stale == [], f"allowed but no longer touching the environment (remove them): {stale}"


def test_the_readme_table_lists_every_variable_settings_reads_once() -> None:
    read = re.findall(r'reader\.\w+\(\s*"([A-Z0-9_]+)"', (ROOT / SETTINGS).read_text())
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M)
    twice = sorted({name for name in rows if rows.count(name) > 1})
    assert twice == [], f"listed more than once in the README's configuration table: {twice}"
    missing, extra = sorted(set(read) - set(rows)), sorted(set(rows) - set(read))
    assert missing == [], f"read by Settings, missing from the README's table: {missing}"
    assert extra == [], f"in the README's table, not read by Settings: {extra}"
