"""The console's pages (GET, viewer and up): the queue, a case, a license, the dashboard.

Each handler parses the query, reads through `fraud.review` (the same reads as the JSON API)
and renders a template; nothing here changes state.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from activation.admin.license_common import full_view, license_json, path_key
from activation.admin.offline_files import offline_files
from activation.admin.parsing import whole_number
from activation.admin.state import Role, resources_of
from activation.licensing.model import CaseStage
from activation.store import admin_store
from fraud.console import dashboard, views
from fraud.console.guard import page
from fraud.console.render import render
from fraud.review import actions, queries, summary
from fraud.review.routes import SEVERITIES, ladder_of

PAGE_SIZE = 25
STAGES = tuple(stage.value for stage in CaseStage if stage is not CaseStage.RESOLVED)
_INSTALLATIONS = """SELECT fingerprint, hostname, ip, version, first_seen_at, last_seen_at,
       deactivated_at FROM installations WHERE license_key = $1"""

routes = web.RouteTableDef()


def _pick(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


def _text(value: str | None, limit: int) -> str | None:
    """A free-text filter. NUL is dropped: PostgreSQL text cannot hold it (the query would fail),
    so no stored value contains one."""
    return (value or "").replace("\x00", "").strip()[:limit] or None


@routes.get("/")
@page(Role.VIEWER)
async def queue(request: web.Request) -> web.Response:
    query = request.query
    filters = {
        "stage": _pick(query.get("stage"), STAGES),
        "severity": _pick(query.get("severity"), SEVERITIES),
        "product": _text(query.get("product"), 60),
        "q": _text(query.get("q"), 200),
    }
    number = whole_number(query.get("page", "")) or 1
    number = min(max(number, 1), 10_000)
    where = queries.CaseFilter(
        stage=filters["stage"], severity=filters["severity"], q=filters["q"],
        product=filters["product"], limit=PAGE_SIZE + 1, offset=(number - 1) * PAGE_SIZE,
    )  # fmt: skip
    resources, ladder = resources_of(request), ladder_of(request)
    async with resources.pool.acquire() as conn:
        rows = await queries.list_cases(conn, where, ladder)
        products = [r["product"] for r in await conn.fetch("SELECT DISTINCT product FROM licenses")]
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    found = await resources.store.installations_of([row["license_key"] for row in rows])
    at = await resources.clock.now()
    items = [
        summary.case_item(row, ladder, servers) for row, servers in zip(rows, found, strict=True)
    ]
    items = [item | {"days_left": views.days_left(item["next_deadline"], at)} for item in items]
    kept = {name: value for name, value in filters.items() if value}
    return render(
        request, "queue.html", items=items, filters=filters, stages=STAGES,
        severities=SEVERITIES, products=sorted(products), page=number,
        prev_link=f"?{urlencode(kept | {'page': number - 1})}" if number > 1 else None,
        next_link=f"?{urlencode(kept | {'page': number + 1})}" if more else None,
    )  # fmt: skip


@routes.get(r"/cases/{id:\d{1,18}}")
@page(Role.VIEWER)
async def case(request: web.Request) -> web.Response:
    return await show_case(request, int(request.match_info["id"]))


async def show_case(
    request: web.Request, case_id: int, *, status: int = 200, error: str | None = None
) -> web.Response:
    """The case page; a refused form re-renders it with `error` and its status."""
    resources = resources_of(request)
    try:
        detail = await actions.case_detail(resources, ladder_of(request), case_id)
    except actions.CaseNotFound:
        raise web.HTTPNotFound(reason=f"no case {case_id}") from None
    at, key = await resources.clock.now(), detail["license_key"]
    async with resources.pool.acquire() as conn:
        record = await admin_store.fetch_license(conn, key)
        stored = await conn.fetch(_INSTALLATIONS, key)
        files = await offline_files(conn, key)
    window = resources.settings.active_window
    servers = views.installations(stored, detail["servers"], at, window)
    done = views.DONE.get(request.query.get("done", ""))
    return render(
        request, "case.html", status=status, case=detail, error=error, done=done,
        license=None if record is None else license_json(record, at.date()),
        servers=views.mark_offline(servers, files, at), offline_files=files, from_case=case_id,
        timeline=views.timeline(detail["timeline"], detail["notifications"]),
        days_left=views.days_left(detail["next_deadline"], at),
    )  # fmt: skip


@routes.get(r"/licenses/{key:[A-Za-z0-9-]{1,64}}")
@page(Role.VIEWER)
async def license_page(request: web.Request) -> web.Response:
    return await show_license(request, path_key(request))


async def show_license(
    request: web.Request, key: str, *, status: int = 200, error: str | None = None
) -> web.Response:
    """The license page; a refused offline-file form re-renders it with `error`."""
    resources = resources_of(request)
    async with resources.pool.acquire() as conn:
        record = await admin_store.fetch_license(conn, key)
        stored = await conn.fetch(_INSTALLATIONS, key)
        cases = await conn.fetch(
            "SELECT id, status, stage, severity, opened_at, resolved_at, resolution "
            "FROM fraud_cases WHERE license_key = $1 ORDER BY id DESC",
            key,
        )
        files = await offline_files(conn, key)
    if record is None:
        raise web.HTTPNotFound(reason=f"no license {key}")
    at = await resources.clock.now()
    view: dict[str, Any] = await full_view(request, record, at.date())
    servers = views.installations(
        stored, view["installations"], at, resources.settings.active_window
    )
    return render(
        request, "license.html", status=status, license=view, cases=cases, error=error,
        servers=views.mark_offline(servers, files, at), offline_files=files, from_case=None,
    )  # fmt: skip


@routes.get("/dashboard")
@page(Role.VIEWER)
async def dashboard_page(request: web.Request) -> web.Response:
    resources = resources_of(request)
    at = await resources.clock.now()
    async with resources.pool.acquire() as conn:
        figures = await dashboard.figures(conn, at)
    return render(request, "dashboard.html", **figures, chart=views, now=at)
