"""API token routes (admin only): issue (the secret is shown once), list, revoke."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires, token_hash
from activation.admin.state import Role, now, render, resources_of
from activation.api.problems import ProblemError

routes = web.RouteTableDef()

_COLUMNS = "id, name, role, created_at, created_by, revoked_at"


@routes.post("/admin/v1/tokens")
@requires(Role.ADMIN)
async def create_token(request: web.Request) -> web.Response:
    body = await p.json_body(request)
    name, role = p.text(body, "name", max_len=100), p.choice(body, "role", Role)
    secret = secrets.token_urlsafe(32)
    at = await now(request)
    async with resources_of(request).pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) "
            f"VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
            name, role.value, token_hash(secret), at, actor(request),
        )  # fmt: skip
        token: dict[str, Any] = dict(row)
        await audit.record(
            conn, at=at, actor=actor(request), action="token.create",
            target=f"token:{token['id']}", after=token,
        )  # fmt: skip
    return render(token | {"token": secret}, 201)


@routes.get("/admin/v1/tokens")
@requires(Role.ADMIN)
async def list_tokens(request: web.Request) -> web.Response:
    rows = await resources_of(request).pool.fetch(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id")
    return render({"items": [dict(row) for row in rows]})


@routes.delete("/admin/v1/tokens/{id}")
@requires(Role.ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = p.path_id(request, "token")
    at = await now(request)
    async with resources_of(request).pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE id = $1 FOR UPDATE", token_id
        )
        if before is None:
            raise ProblemError(404, f"no token {token_id}")
        after = await conn.fetchrow(
            f"UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 "
            f"RETURNING {_COLUMNS}",
            token_id, at,
        )  # fmt: skip
        await audit.record(
            conn, at=at, actor=actor(request), action="token.revoke",
            target=f"token:{token_id}", before=dict(before), after=dict(after),
        )  # fmt: skip
    return render(dict(after))
