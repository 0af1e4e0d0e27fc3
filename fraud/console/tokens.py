"""API tokens for admins: list, issue (the secret is shown once), revoke; audited as the admin
API's `/admin/v1/tokens` routes are (`token.create`, `token.revoke`)."""

from __future__ import annotations

import secrets

from aiohttp import web

from activation.admin import audit
from activation.admin.auth import token_hash
from activation.admin.state import Role, resources_of
from fraud.console.guard import form, page
from fraud.console.render import FORM, redirect, render, session_of

_COLUMNS = "id, name, role, created_at, created_by, revoked_at"
ROLES = tuple(role.value for role in Role)

routes = web.RouteTableDef()


async def _page(request: web.Request, *, status: int = 200, **extra: object) -> web.Response:
    rows = await resources_of(request).pool.fetch(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id")
    return render(request, "tokens.html", status=status, tokens=rows, roles=ROLES, **extra)


def _actor(request: web.Request) -> str:
    session = session_of(request)
    assert session is not None  # the guard ran
    return session.name


@routes.get("/tokens")
@page(Role.ADMIN)
async def tokens_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/tokens")
@form(Role.ADMIN)
async def create_token(request: web.Request) -> web.Response:
    fields = request[FORM]
    name, role = fields.get("name", "").strip()[:100], fields.get("role", "")
    if not name or role not in ROLES:
        return await _page(request, status=422, error="Give the token a name and a role.")
    secret = secrets.token_urlsafe(32)
    resources = resources_of(request)
    at = await resources.clock.now()
    async with resources.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) "
            f"VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
            name, role, token_hash(secret), at, _actor(request),
        )  # fmt: skip
        await audit.record(
            conn, at=at, actor=_actor(request), action="token.create",
            target=f"token:{row['id']}", after=dict(row),
        )  # fmt: skip
    return await _page(request, created=row, secret=secret)


@routes.post(r"/tokens/{id:\d{1,18}}/revoke")
@form(Role.ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = int(request.match_info["id"])
    if request[FORM].get("confirm") != "yes":
        return await _page(request, status=422, error="Tick “sure” to revoke a token.")
    resources = resources_of(request)
    at = await resources.clock.now()
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE id = $1 FOR UPDATE", token_id
        )
        if before is None:
            raise web.HTTPNotFound(reason=f"no token {token_id}")
        after = await conn.fetchrow(
            f"UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 "
            f"RETURNING {_COLUMNS}",
            token_id, at,
        )  # fmt: skip
        await audit.record(
            conn, at=at, actor=_actor(request), action="token.revoke",
            target=f"token:{token_id}", before=dict(before), after=dict(after),
        )  # fmt: skip
    return redirect("/console/tokens")
