"""API tokens in PostgreSQL: issue, list, revoke, each write audited in its transaction.

One code path for the JSON API (`/admin/v1/tokens`) and the console's tokens page. Only the
sha256 of a secret is stored; the secret itself is returned once, at issue.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import asyncpg

from activation.admin import audit
from activation.admin.auth import token_hash

COLUMNS = "id, name, role, created_at, created_by, revoked_at"


async def list_tokens(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT {COLUMNS} FROM api_tokens ORDER BY id")
    return [dict(row) for row in rows]


async def issue_token(
    pool: asyncpg.Pool, *, name: str, role: str, at: datetime, actor: str
) -> tuple[dict[str, Any], str]:
    """(the token's row, its secret)."""
    secret = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) "
            f"VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}",
            name, role, token_hash(secret), at, actor,
        )  # fmt: skip
        token = dict(row)
        await audit.record(
            conn, at=at, actor=actor, action="token.create", target=f"token:{token['id']}",
            after=token,
        )  # fmt: skip
    return token, secret


async def revoke_token(
    pool: asyncpg.Pool, token_id: int, *, at: datetime, actor: str
) -> dict[str, Any] | None:
    """The revoked token's row, or None when there is no such token."""
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM api_tokens WHERE id = $1 FOR UPDATE", token_id
        )
        if before is None:
            return None
        after = await conn.fetchrow(
            f"UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 "
            f"RETURNING {COLUMNS}",
            token_id, at,
        )  # fmt: skip
        await audit.record(
            conn, at=at, actor=actor, action="token.revoke", target=f"token:{token_id}",
            before=dict(before), after=dict(after),
        )  # fmt: skip
    return dict(after)
