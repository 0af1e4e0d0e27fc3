"""The audit log (SPEC §6): one row per admin write, in the write's own transaction.

Targets name what changed: `license:KEY`, `customer:ID`, `token:ID`, `release:ID`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from activation.admin import parsing
from activation.admin.auth import requires
from activation.admin.state import Role, render, resources_of, to_json


async def record(
    conn: asyncpg.Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, before, after) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
        at,
        actor,
        action,
        target,
        None if before is None else to_json(before).decode(),
        None if after is None else to_json(after).decode(),
    )


async def entries(pool: asyncpg.Pool, target: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first; all targets when `target` is None."""
    rows = await pool.fetch(
        "SELECT id, at, actor, action, target, before, after FROM audit_log "
        "WHERE $1::text IS NULL OR target = $1 ORDER BY id DESC LIMIT $2",
        target,
        limit,
    )
    return [
        {
            "id": row["id"],
            "at": row["at"],
            "actor": row["actor"],
            "action": row["action"],
            "target": row["target"],
            "before": None if row["before"] is None else orjson.loads(row["before"]),
            "after": None if row["after"] is None else orjson.loads(row["after"]),
        }
        for row in rows
    ]


routes = web.RouteTableDef()


@routes.get("/admin/v1/audit")
@requires(Role.VIEWER)
async def list_audit(request: web.Request) -> web.Response:
    limit = parsing.query_limit(request)
    items = await entries(resources_of(request).pool, parsing.query_text(request, "target"), limit)
    return render({"items": items})
