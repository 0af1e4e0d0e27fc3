"""API tokens for admins: list, issue (the secret is shown once), revoke; audited as the admin
API's `/admin/v1/tokens` routes are (`token.create`, `token.revoke`)."""

from __future__ import annotations

from aiohttp import web

from activation.admin import token_store
from activation.admin.state import Role, resources_of
from fraud.console.guard import form, page
from fraud.console.render import FORM, redirect, render, session_of

ROLES = tuple(role.value for role in Role)

routes = web.RouteTableDef()


async def _page(request: web.Request, *, status: int = 200, **extra: object) -> web.Response:
    """The page, with `error` or the `created` token and its `secret` when given (the template
    is rendered with StrictUndefined: every name it reads is passed)."""
    rows = await token_store.list_tokens(resources_of(request).pool)
    context = {"error": None, "created": None, "secret": None} | extra
    return render(request, "tokens.html", status=status, tokens=rows, roles=ROLES, **context)


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
    resources = resources_of(request)
    row, secret = await token_store.issue_token(
        resources.pool, name=name, role=role, at=await resources.clock.now(),
        actor=_actor(request),
    )  # fmt: skip
    return await _page(request, created=row, secret=secret)


@routes.post(r"/tokens/{id:\d{1,18}}/revoke")
@form(Role.ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = int(request.match_info["id"])
    if request[FORM].get("confirm") != "yes":
        return await _page(request, status=422, error="Tick “sure” to revoke a token.")
    resources = resources_of(request)
    revoked = await token_store.revoke_token(
        resources.pool, token_id, at=await resources.clock.now(), actor=_actor(request)
    )
    if revoked is None:
        raise web.HTTPNotFound(reason=f"no token {token_id}")
    return redirect("/console/tokens")
