"""Release routes (R7): publish a release, list releases of a product."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.state import Role, now, render, resources_of
from activation.licensing.model import Version
from activation.store import admin_store
from activation.web.problems import ProblemError, bad_field

routes = web.RouteTableDef()


@routes.post("/admin/v1/releases")
@requires(Role.ADMIN)
async def create_release(request: web.Request) -> web.Response:
    body = await p.json_body(request)
    product = p.text(body, "product", max_len=100).lower()
    try:
        version = Version.parse(p.text(body, "version", max_len=40))
    except ValueError as error:
        raise bad_field("version", str(error)) from None
    released_on = p.day(body, "released_on")
    resources = resources_of(request)
    at = await now(request)
    try:
        async with resources.pool.acquire() as conn, conn.transaction():
            release = await admin_store.insert_release(conn, product, version, released_on)
            await audit.record(
                conn, at=at, actor=actor(request), action="release.create",
                target=f"release:{release['id']}", after=release,
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise ProblemError(409, f"{product} {version} is already published") from None
    await resources.releases.refresh()
    return render(release, 201)


@routes.get("/admin/v1/releases")
@requires(Role.VIEWER)
async def list_releases(request: web.Request) -> web.Response:
    product = p.query_text(request, "product", max_len=100)
    async with resources_of(request).pool.acquire() as conn:
        items = await admin_store.list_releases(conn, product.lower() if product else None)
    return render({"items": items})
