"""Versioned schema migrations: numbered SQL files in `migrations/`, applied in order.

Why our own runner rather than a library: the schema is plain SQL and asyncpg is the only
driver in the project (Alembic and yoyo need a second, synchronous driver). The runner keeps
the guarantees those tools give: a `schema_migrations` table records each applied version
with a checksum; an edited, already-applied file is refused; migrations run under an advisory
lock so several processes starting at once apply each file exactly once, each in its own
transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

_LOCK_ID = 0x6C6963656E7365  # "license": any constant shared by every process of the project


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    folder = resources.files("activation.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda migration: migration.version)


async def migrate(connection: asyncpg.Connection) -> list[int]:
    """Apply every pending migration; return the versions applied now."""
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        done: list[int] = []
        for migration in available_migrations():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version} ({migration.name}) was edited after it "
                        "was applied; add a new migration instead"
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration.version)
        return done
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
