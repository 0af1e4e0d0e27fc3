"""Disabling a license in PostgreSQL: the one service both the worker's case ladder (R17) and a
reviewer's decision call, each inside its own transaction."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson


async def disable_license(
    connection: asyncpg.Connection, key: str, now: datetime, actor: str, reason: str
) -> None:
    """PostgreSQL side of disabling (the caller refreshes Redis after the commit)."""
    before = await connection.fetchval("SELECT status FROM licenses WHERE key = $1", key)
    await connection.execute(
        """UPDATE licenses SET status = 'disabled', disabled_reason = $2, disabled_at = $3,
               updated_at = $3 WHERE key = $1""",
        key,
        reason,
        now,
    )
    await connection.execute(
        "INSERT INTO audit_log (at, actor, action, target, before, after) "
        "VALUES ($1, $2, 'license.disable', $3, $4, $5)",
        now,
        actor,
        f"license:{key}",
        orjson.dumps({"status": before}).decode(),
        orjson.dumps({"status": "disabled", "reason": reason}).decode(),
    )
