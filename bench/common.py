"""What the benchmarks share: a throw-away database and Redis prefix per run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

VENV_BIN = Path(sys.executable).parent
KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # as activation.store.registry issues keys


def admin_postgres_url() -> str:
    """BENCH_POSTGRES_URL: a connection that may create and drop databases."""
    return os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def bench_redis_url() -> str:
    """BENCH_REDIS_URL, else REDIS_URL, else the local Redis."""
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get(
        "REDIS_URL", "redis://127.0.0.1:6379/0"
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def migrate(database_url: str, redis_url: str) -> None:
    """`activation-server migrate`, exactly as an operator runs it."""
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "activation-server"),
        "migrate",
        env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"activation-server migrate failed: {errors.decode().strip()}")


async def drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def delete_redis_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under `prefix:` in batches; the number deleted."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted
