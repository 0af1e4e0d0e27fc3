"""API token routes (admin only): issue (the secret is shown once), list, revoke."""

from __future__ import annotations

from aiohttp import web

from activation.admin import parsing as p
from activation.admin import token_store
from activation.admin.auth import actor, requires
from activation.admin.state import Role, now, render, resources_of
from activation.web.problems import ProblemError

routes = web.RouteTableDef()


@routes.post("/admin/v1/tokens")
@requires(Role.ADMIN)
async def create_token(request: web.Request) -> web.Response:
    body = await p.json_body(request)
    name, role = p.text(body, "name", max_len=100), p.choice(body, "role", Role)
    token, secret = await token_store.issue_token(
        resources_of(request).pool, name=name, role=role.value, at=await now(request),
        actor=actor(request),
    )  # fmt: skip
    return render(token | {"token": secret}, 201)


@routes.get("/admin/v1/tokens")
@requires(Role.ADMIN)
async def list_tokens(request: web.Request) -> web.Response:
    return render({"items": await token_store.list_tokens(resources_of(request).pool)})


@routes.delete("/admin/v1/tokens/{id}")
@requires(Role.ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = p.path_id(request, "token")
    revoked = await token_store.revoke_token(
        resources_of(request).pool, token_id, at=await now(request), actor=actor(request)
    )
    if revoked is None:
        raise ProblemError(404, f"no token {token_id}")
    return render(revoked)
