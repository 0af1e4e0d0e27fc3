"""Fraud case routes (SPEC §6, §10): the review queue, a case's page, and the team's actions.

- `GET /admin/v1/cases` (viewer): `status` open (default) | resolved | all, `stage`, `severity`,
  `q` (key, customer e-mail or name, hostname), `limit`/`offset`; high severity first, then the
  next deadline, then id.
- `GET /admin/v1/cases/{id}` (viewer): the item plus license, timeline, notifications,
  phone task and steps.
- `POST /admin/v1/cases/{id}/actions` (reviewer): `{"action", "note"?, "days"?, "max_servers"?}`
  through the pure `fraud.cases.apply_action`; a refusal is 422 (bad parameters) or 409 (the
  case's state). `fraud.review.actions.perform` does the work, the one code path the console
  shares: one transaction, audited, Redis written after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.state import Role, now, render, resources_of
from activation.config import Settings
from activation.licensing.model import CaseStage, TeamAction
from activation.runtime import Resources
from activation.web.problems import ProblemError, bad_field
from fraud.cases import ActionRefused
from fraud.escalation import Ladder, ladder_from_settings
from fraud.review import actions, queries, summary

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

routes = web.RouteTableDef()


def ladder_for(settings: Settings) -> Ladder:
    """The escalation ladder (R14) as the worker builds it; read once per app."""
    return ladder_from_settings(settings.grace_days, settings.escalation_ladder)


def ladder_of(request: web.Request) -> Ladder:
    ladder = request.app.get(LADDER)
    return ladder if ladder is not None else ladder_for(resources_of(request).settings)


def case_item(
    request: web.Request, row: Mapping[str, Any], servers: list[dict[str, Any]]
) -> dict[str, Any]:
    """A license's open case as a queue item: for the admin API's license view."""
    return summary.case_item(row, ladder_of(request), servers)


async def enable_disabled_case(request: web.Request, key: str) -> bool:
    """Enable `key` through its case's `enable` action when its open case disabled it, so the
    case resolves with it (R15) instead of staying open on an enabled key; False when there is
    no such case (or a reviewer enabled it first): the caller enables the license plainly."""
    resources = resources_of(request)
    async with resources.pool.acquire() as conn:
        case = await queries.open_case_of(conn, key)
    if case is None or case["stage"] != CaseStage.DISABLED.value:
        return False
    try:
        await actions.perform(
            resources, ladder_of(request), case["id"], TeamAction.ENABLE,
            actor=actor(request), at=await now(request), note="license enabled",
        )  # fmt: skip
    except ActionRefused:
        return False
    return True


def prepare(app: web.Application, resources: Resources) -> None:
    app[LADDER] = ladder_for(resources.settings)


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
    found = await resources.store.installations_of([row["license_key"] for row in rows])
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
    days, max_servers = (p.opt_integer(body, name) for name in ("days", "max_servers"))
    try:
        await actions.perform(
            resources_of(request), ladder_of(request), case_id, action, actor=actor(request),
            at=await now(request), note=note, days=days, max_servers=max_servers,
        )  # fmt: skip
    except actions.CaseNotFound as missing:
        raise ProblemError(404, str(missing)) from None
    except ActionRefused as refused:
        raise _refusal(action, refused) from None
    return render(await _detail(request, case_id))


async def _detail(request: web.Request, case_id: int) -> dict[str, Any]:
    try:
        return await actions.case_detail(resources_of(request), ladder_of(request), case_id)
    except actions.CaseNotFound as missing:
        raise ProblemError(404, str(missing)) from None


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
    offset = p.whole_number(raw)
    if offset is None or offset > MAX_OFFSET:
        raise bad_field("offset", f"must be a whole number from 0 to {MAX_OFFSET}")
    return offset
