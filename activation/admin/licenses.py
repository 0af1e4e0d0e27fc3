"""License routes: create, read, disable/enable (R17), add-ons (R8)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from aiohttp import web

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.case_side import case_side_of
from activation.admin.license_common import (
    change_license,
    full_view,
    not_found,
    path_key,
)
from activation.admin.license_input import addon_name, new_license
from activation.admin.state import Role, now, render, resources_of, today
from activation.licensing.model import LicenseKind, LicenseStatus
from activation.store import admin_store
from activation.store.admin_store import LicenseRecord, NewLicense
from activation.store.cache_write import write_through
from activation.web.problems import ProblemError

routes = web.RouteTableDef()


async def insert_audited(
    conn: asyncpg.Connection, new: NewLicense, who: str, at: datetime, action: str
) -> LicenseRecord:
    """Insert one license and its audit row; unknown customer → 422, duplicate key → 409."""
    try:
        async with conn.transaction():
            record = await admin_store.insert_license(conn, new, who)
            await audit.record(
                conn, at=at, actor=who, action=action, target=f"license:{new.key}",
                after=record.to_doc(),
            )  # fmt: skip
    except asyncpg.ForeignKeyViolationError:
        raise ProblemError(
            422, f"customer_id: no customer {new.customer_id}", field="customer_id"
        ) from None
    except asyncpg.UniqueViolationError:
        raise ProblemError(409, f"key: license {new.key} already exists", field="key") from None
    return record


@routes.post("/admin/v1/licenses")
@requires(Role.ADMIN)
async def create_license(request: web.Request) -> web.Response:
    new = new_license(await p.json_body(request))
    resources = resources_of(request)
    async with resources.pool.acquire() as conn:
        record = await insert_audited(
            conn, new, actor(request), await now(request), "license.create"
        )
    await write_through(resources.pool, resources.store, [record])
    return render(await full_view(request, record, await today(request)), 201)


@routes.get("/admin/v1/licenses/{key}")
@requires(Role.VIEWER)
async def get_license(request: web.Request) -> web.Response:
    key = path_key(request)
    async with resources_of(request).pool.acquire() as conn:
        record = await admin_store.fetch_license(conn, key)
    if record is None:
        raise not_found(key)
    return render(await full_view(request, record, await today(request)))


@routes.post("/admin/v1/licenses/{key}/disable")
@requires(Role.ADMIN)
async def disable_license(request: web.Request) -> web.Response:
    reason = p.text(await p.json_body(request), "reason")

    async def change(conn: asyncpg.Connection, before: LicenseRecord, at: datetime) -> None:
        await admin_store.set_status(conn, before.license.key, LicenseStatus.DISABLED, reason, at)

    record, _ = await change_license(request, path_key(request), "license.disable", change)
    return render(await full_view(request, record, await today(request)))


@routes.post("/admin/v1/licenses/{key}/enable")
@requires(Role.ADMIN)
async def enable_license(request: web.Request) -> web.Response:
    """A key its fraud case disabled is enabled through the case's `enable` action, so the
    case resolves with it (R15) instead of staying open on an enabled key."""
    key = path_key(request)
    side = case_side_of(request)
    if side is not None and await side.enable_disabled_case(request, key):
        async with resources_of(request).pool.acquire() as conn:
            record = await admin_store.fetch_license(conn, key)
        assert record is not None
        return render(await full_view(request, record, await today(request)))

    async def change(conn: asyncpg.Connection, before: LicenseRecord, at: datetime) -> None:
        await admin_store.set_status(conn, before.license.key, LicenseStatus.ACTIVE, None, at)

    record, _ = await change_license(request, key, "license.enable", change)
    return render(await full_view(request, record, await today(request)))


@routes.post("/admin/v1/licenses/{key}/addons")
@requires(Role.ADMIN)
async def add_addon(request: web.Request) -> web.Response:
    name = addon_name(p.text(await p.json_body(request), "name").lower(), "name")
    on = await today(request)

    async def change(conn: asyncpg.Connection, before: LicenseRecord, _: datetime) -> None:
        if before.license.kind is LicenseKind.FREE:
            raise ProblemError(422, "a free license cannot have add-ons", field="name")
        if not await admin_store.add_addon(conn, before.license.key, name, on):
            raise ProblemError(409, f"the license already has add-on {name}", field="name")

    record, _ = await change_license(request, path_key(request), "license.addon_add", change)
    return render(await full_view(request, record, on), 201)


@routes.delete("/admin/v1/licenses/{key}/addons/{name}")
@requires(Role.ADMIN)
async def remove_addon(request: web.Request) -> web.Response:
    name = request.match_info["name"].lower()

    async def change(conn: asyncpg.Connection, before: LicenseRecord, _: datetime) -> None:
        # No stored name holds NUL (PostgreSQL text cannot), and the query would fail on it.
        if "\x00" in name or not await admin_store.remove_addon(conn, before.license.key, name):
            raise ProblemError(404, f"the license has no add-on {name[:40]!r}")

    record, _ = await change_license(request, path_key(request), "license.addon_remove", change)
    return render(await full_view(request, record, await today(request)))
