"""Fraud case routes (SPEC §6, §10): the review queue, a case's page, and the team's actions.

- `GET /admin/v1/cases` (viewer): `status` open (default) | resolved | all, `stage`, `severity`,
  `q` (key, customer e-mail or name, hostname), `limit`/`offset`; high severity first, then the
  next deadline, then id.
- `GET /admin/v1/cases/{id}` (viewer): the item plus license, timeline, notifications,
  phone task and steps.
- `POST /admin/v1/cases/{id}/actions` (reviewer): `{"action", "note"?, "days"?, "max_servers"?}`
  through the pure `fraud.cases.apply_action`; a refusal is 422 (bad parameters) or 409 (the
  case's state). One transaction holds the case change, the license change, the timeline row
  and the audit row; Redis (case summary, license document) is written after the commit.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import asyncpg
from aiohttp import web

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.state import Role, now, render, resources_of
from activation.api.problems import ProblemError, bad_field
from activation.config import Settings
from activation.licensing.model import CaseStage
from fraud.cases import ActionRefused, TeamAction, apply_action
from fraud.escalation import Ladder, ladder_from_settings
from fraud.review import queries, summary
from fraud.review.persist import save_action

LADDER = web.AppKey("case_ladder", Ladder)

STATUSES = ("open", "resolved", "all")
SEVERITIES = ("normal", "high")
MAX_NOTE = 2000
MAX_OFFSET = 1_000_000
_PARAM_OF = {
    TeamAction.EXTEND: "days",
    TeamAction.GRANT_EXCEPTION: "max_servers",
    TeamAction.LOG_CALL: "note",
}
_AUDITED = (
    "status", "stage", "on_hold", "hold_started_at", "extension_seconds", "servers_active",
    "servers_allowed", "resolved_at", "resolution", "resolved_by", "license_status",
    "exception_max_servers",
)  # fmt: skip

routes = web.RouteTableDef()


def ladder_for(settings: Settings) -> Ladder:
    """The escalation ladder (R14) as the worker builds it; read once per app."""
    return ladder_from_settings(settings.grace_days, os.environ.get("ESCALATION_LADDER"))


def ladder_of(request: web.Request) -> Ladder:
    ladder = request.app.get(LADDER)
    return ladder if ladder is not None else ladder_for(resources_of(request).settings)


def case_view(
    request: web.Request, row: Mapping[str, Any] | None, servers: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """A license's open case as a queue item (None without one): for the license routes."""
    return None if row is None else summary.case_item(row, ladder_of(request), servers)


@routes.get("/admin/v1/cases")
@requires(Role.VIEWER)
async def list_cases(request: web.Request) -> web.Response:
    where = queries.CaseFilter(
        status=_query_choice(request, "status", STATUSES) or "open",
        stage=_query_choice(request, "stage", tuple(stage.value for stage in CaseStage)),
        severity=_query_choice(request, "severity", SEVERITIES),
        q=p.query_text(request, "q", max_len=200),
        limit=p.query_limit(request),
        offset=_query_offset(request),
    )
    resources, ladder = resources_of(request), ladder_of(request)
    async with resources.pool.acquire() as conn:
        rows = await queries.list_cases(conn, where, ladder)
    found = await asyncio.gather(*(resources.store.installations(r["license_key"]) for r in rows))
    items = [summary.case_item(row, ladder, s) for row, s in zip(rows, found, strict=True)]
    return render({"items": items, "limit": where.limit, "offset": where.offset})


@routes.get("/admin/v1/cases/{id}")
@requires(Role.VIEWER)
async def get_case(request: web.Request) -> web.Response:
    return render(await _detail(request, p.path_id(request, "case")))


@routes.post("/admin/v1/cases/{id}/actions")
@requires(Role.REVIEWER)
async def case_action(request: web.Request) -> web.Response:
    case_id = p.path_id(request, "case")
    body = await p.json_body(request)
    action = _action(body)
    note = p.opt_text(body, "note", max_len=MAX_NOTE)
    params = {name: p.opt_integer(body, name) for name in ("days", "max_servers")}
    resources, ladder = resources_of(request), ladder_of(request)
    at, who = await now(request), actor(request)
    async with resources.pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, case_id)
        active = await summary.active_servers(
            resources.redis, resources.layout, row["license_key"],
            at - resources.settings.active_window,
        )  # fmt: skip
        before = queries.case_from_row(row)
        if not before.resolved:  # the count the exception (R12) is judged by is today's
            before = replace(before, servers_active=active)
        try:
            result = apply_action(
                before, action, now=at, actor=who, note=note, days=params["days"],
                max_servers=params["max_servers"],
            )  # fmt: skip
        except ActionRefused as refused:
            raise _refusal(action, refused) from None
        await save_action(
            conn, before, result, action=action, actor=who, note=note, params=params, now=at,
            ladder=ladder,
        )  # fmt: skip
        after = await _locked(conn, case_id)
        await audit.record(
            conn, at=at, actor=who, action=f"case.{action.value}", target=f"case:{case_id}",
            before=_audit_state(row, ladder), after=_audit_state(after, ladder),
        )  # fmt: skip
        if result.enable_key:
            await audit.record(
                conn, at=at, actor=who, action="license.enable",
                target=f"license:{before.license_key}",
                before={"status": row["license_status"]}, after={"status": "active"},
            )  # fmt: skip
        if result.new_max_servers is not None:
            await audit.record(
                conn, at=at, actor=who, action="license.exception",
                target=f"license:{before.license_key}",
                before={"exception_max_servers": row["exception_max_servers"]},
                after={"exception_max_servers": result.new_max_servers},
            )  # fmt: skip
    # After the commit: PostgreSQL first, then Redis (R17).
    key = before.license_key
    if result.disable_key or result.enable_key or result.new_max_servers is not None:
        await summary.refresh_license(resources.pool, resources.store, key)
    if not before.resolved:  # a resolved case's log_call must not touch a newer case's summary
        if result.case.resolved:
            await summary.clear_summary(resources.redis, resources.layout, key)
        else:
            await summary.write_summary(resources.redis, resources.layout, result.case, ladder)
    return render(await _detail(request, case_id))


async def _detail(request: web.Request, case_id: int) -> dict[str, Any]:
    resources = resources_of(request)
    async with resources.pool.acquire() as conn:
        row = await queries.fetch_case(conn, case_id)
        if row is None:
            raise ProblemError(404, f"no case {case_id}")
        page = await queries.case_page(conn, case_id, row["license_key"])
    servers = await resources.store.installations(row["license_key"])
    return summary.case_item(row, ladder_of(request), servers) | page


async def _locked(conn: asyncpg.Connection, case_id: int) -> asyncpg.Record:
    row = await queries.fetch_case(conn, case_id, lock=True)
    if row is None:
        raise ProblemError(404, f"no case {case_id}")
    return row


def _audit_state(row: Mapping[str, Any], ladder: Ladder) -> dict[str, Any]:
    grace, disable = summary.deadlines(queries.case_from_row(row), ladder)
    return {name: row[name] for name in _AUDITED} | {"grace_ends_at": grace, "disable_at": disable}


def _action(body: p.Body) -> TeamAction:
    name = p.text(body, "action", max_len=40)
    try:
        return TeamAction(name)
    except ValueError:
        known = ", ".join(action.value for action in TeamAction)
        raise ProblemError(
            422, f"action: unknown action {name!r}; one of {known}", field="action"
        ) from None


def _refusal(action: TeamAction, refused: ActionRefused) -> ProblemError:
    if refused.invalid_input:
        field = _PARAM_OF.get(action, "action")
        return ProblemError(422, f"{field}: {refused.reason}", field=field, action=action.value)
    return ProblemError(409, refused.reason, action=action.value)


def _query_choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = p.query_text(request, name, max_len=40)
    if value is not None and value not in allowed:
        raise bad_field(name, f"must be one of {', '.join(allowed)}")
    return value


def _query_offset(request: web.Request) -> int:
    raw = request.query.get("offset")
    if raw is None:
        return 0
    if not raw.isdigit() or int(raw) > MAX_OFFSET:
        raise bad_field("offset", f"must be a whole number from 0 to {MAX_OFFSET}")
    return int(raw)
