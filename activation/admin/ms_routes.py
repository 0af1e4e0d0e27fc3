"""M&S routes: the quote (R3/R4), recording a renewal or reinstatement, auto-renewal (R5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg
from aiohttp import web

from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.license_common import change_license, full_view, not_found, path_key
from activation.admin.state import Role, render, resources_of, today
from activation.licensing.maintenance import (
    MsQuote,
    QuoteKind,
    can_cancel_auto_renew,
    has_ms,
    quote,
)
from activation.store import admin_store
from activation.store.admin_store import LicenseRecord
from activation.web.problems import ProblemError

routes = web.RouteTableDef()


def covered_through(record: LicenseRecord) -> date:
    """The last covered day; kinds without M&S (R1/R2) cannot be quoted or renewed: 422."""
    license = record.license
    if not has_ms(license.kind) or license.ms_covered_through is None:
        raise ProblemError(422, f"a {license.kind} license has no M&S", kind=license.kind.value)
    return license.ms_covered_through


def quote_json(q: MsQuote) -> dict[str, Any]:
    return {
        "kind": q.kind.value,
        "price_ratio": None if q.price_ratio is None else float(q.price_ratio),
        "covered_through_after": q.covered_through_after,
        "first_allowed_on": q.first_allowed_on,
    }


def too_early(q: MsQuote) -> ProblemError:
    first = q.first_allowed_on.isoformat() if q.first_allowed_on else "later"
    return ProblemError(
        409, f"too early to renew: renewal is allowed from {first}", first_allowed_on=first
    )


@routes.get("/admin/v1/licenses/{key}/ms-quote")
@requires(Role.VIEWER)
async def ms_quote(request: web.Request) -> web.Response:
    key = path_key(request)
    on = p.query_day(request, "on") or await today(request)
    async with resources_of(request).pool.acquire() as conn:
        record = await admin_store.fetch_license(conn, key)
    if record is None:
        raise not_found(key)
    return render(quote_json(quote(covered_through(record), on)) | {"on": on})


@routes.post("/admin/v1/licenses/{key}/ms-renewals")
@requires(Role.ADMIN)
async def ms_renewal(request: web.Request) -> web.Response:
    on = p.opt_day(await p.json_body(request), "on") or await today(request)
    who = actor(request)

    async def change(conn: asyncpg.Connection, before: LicenseRecord, at: datetime) -> MsQuote:
        current = covered_through(before)
        q = quote(current, on)
        if q.kind is QuoteKind.TOO_EARLY or q.covered_through_after is None:
            raise too_early(q)
        key = before.license.key
        await admin_store.extend_coverage(conn, key, q.covered_through_after, at)
        await admin_store.record_ms(
            conn, key, q.kind.value, on, q.price_ratio, current, q.covered_through_after, who
        )
        return q

    record, q = await change_license(request, path_key(request), "license.ms_renewal", change)
    view = await full_view(request, record, await today(request))
    body = quote_json(q) | {"on": on, "license": view}
    return render(body | {"ms_covered_through": record.license.ms_covered_through}, 201)


@routes.put("/admin/v1/licenses/{key}/auto-renew")
@requires(Role.ADMIN)
async def auto_renew(request: web.Request) -> web.Response:
    enabled = p.boolean(await p.json_body(request), "enabled")
    on = await today(request)

    async def change(conn: asyncpg.Connection, before: LicenseRecord, at: datetime) -> None:
        last = covered_through(before)
        if before.license.auto_renew and not enabled and not can_cancel_auto_renew(last, on):
            raise ProblemError(
                409,
                f"auto-renewal can no longer be cancelled: coverage ends {last.isoformat()} "
                "and cancelling is allowed only up to 15 days before",
                ms_covered_through=last.isoformat(),
            )
        await admin_store.set_auto_renew(conn, before.license.key, enabled, at)

    record, _ = await change_license(request, path_key(request), "license.auto_renew", change)
    return render(await full_view(request, record, on))
