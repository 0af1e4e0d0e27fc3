"""Server binaries the tests start themselves, installed from Debian when the machine has none
(as tests/browser/conftest.py does with chromium), so a fresh machine's `make test` skips none
of the tests that need them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


def install(package: str, *, present: Path | str) -> None:
    """`apt-get install -y package` unless `present` (a path, or a command on PATH) exists;
    the test fails, naming the package, when that is impossible."""
    if _exists(present):
        return
    if shutil.which("apt-get") is None:
        pytest.fail(f"{present} is missing and there is no apt-get to install `{package}`")
    result = _apt("install", "-y", package)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        _apt("update")
        result = _apt("install", "-y", package)
    if result.returncode != 0 or not _exists(present):
        pytest.fail(
            f"could not install `{package}` (`apt-get install -y {package}` failed; run it as "
            f"root):\n{result.stderr[-2000:]}"
        )


def _exists(present: Path | str) -> bool:
    return Path(present).exists() if isinstance(present, Path) else bool(shutil.which(present))


def redis_server() -> str:
    """The machine's redis-server (and redis-cli), installed with apt-get when missing."""
    install("redis-server", present="redis-server")
    install("redis-tools", present="redis-cli")
    found = shutil.which("redis-server")
    assert found is not None
    return found


def postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server programs (initdb, pg_ctl, postgres), the
    newest major installed; the `postgresql` package is installed when there is none."""
    found = _debian_postgres_bin()
    if found is None:
        install("postgresql", present=Path("/usr/lib/postgresql"))
        found = _debian_postgres_bin()
    if found is None:
        pytest.fail("the `postgresql` package installed no /usr/lib/postgresql/*/bin/pg_ctl")
    return found


def _debian_postgres_bin() -> Path | None:
    majors = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return majors[-1].parent if majors else None
