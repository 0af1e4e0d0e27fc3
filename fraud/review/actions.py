"""One fraud-team action end to end (SPEC §6, R12, R15, R17): the single code path the JSON API
(`fraud.review.routes`) and the console (`fraud.console`) both call.

- One PostgreSQL transaction holds the locked case row, `fraud.cases.apply_action`, the case and
  license change (`persist.save_action`), the timeline row and the audit rows.
- After the commit, Redis is written: the license document (disable, enable, exception) and the
  case summary (written while open, cleared once resolved).
- A missing case raises `CaseNotFound`; a refusal is the rules' own `ActionRefused`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from activation.admin import audit
from activation.licensing.model import TeamAction
from activation.runtime import Resources
from fraud.cases import ActionResult, apply_action
from fraud.escalation import Ladder
from fraud.review import queries, summary
from fraud.review.persist import save_action

_AUDITED = (
    "status", "stage", "on_hold", "hold_started_at", "extension_seconds", "servers_active",
    "servers_allowed", "resolved_at", "resolution", "resolved_by", "license_status",
    "exception_max_servers",
)  # fmt: skip


class CaseNotFound(LookupError):
    def __init__(self, case_id: int) -> None:
        super().__init__(f"no case {case_id}")
        self.case_id = case_id


async def perform(
    resources: Resources,
    ladder: Ladder,
    case_id: int,
    action: TeamAction,
    *,
    actor: str,
    at: datetime,
    note: str | None = None,
    days: int | None = None,
    max_servers: int | None = None,
) -> ActionResult:
    """Apply `action` to case `case_id` as `actor` at `at`, audited; see the module docstring."""
    params = {"days": days, "max_servers": max_servers}
    async with resources.pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, case_id)
        active = await summary.active_servers(
            resources.redis, resources.layout, row["license_key"],
            at - resources.settings.active_window,
        )  # fmt: skip
        before = queries.case_from_row(row)
        if not before.resolved:  # the count the exception (R12) is judged by is today's
            before = replace(before, servers_active=active)
        result = apply_action(
            before, action, now=at, actor=actor, note=note, days=days, max_servers=max_servers
        )
        await save_action(
            conn, before, result, action=action, actor=actor, note=note, params=params, now=at,
            ladder=ladder,
        )  # fmt: skip
        after = await _locked(conn, case_id)
        await audit.record(
            conn, at=at, actor=actor, action=f"case.{action.value}", target=f"case:{case_id}",
            before=_audit_state(row, ladder), after=_audit_state(after, ladder),
        )  # fmt: skip
        if result.enable_key:
            await audit.record(
                conn, at=at, actor=actor, action="license.enable",
                target=f"license:{before.license_key}",
                before={"status": row["license_status"]}, after={"status": "active"},
            )  # fmt: skip
        if result.new_max_servers is not None:
            await audit.record(
                conn, at=at, actor=actor, action="license.exception",
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
    return result


async def case_detail(resources: Resources, ladder: Ladder, case_id: int) -> dict[str, Any]:
    """The case's page: the queue item plus license, timeline, notifications, phone task, steps."""
    async with resources.pool.acquire() as conn:
        row = await queries.fetch_case(conn, case_id)
        if row is None:
            raise CaseNotFound(case_id)
        page = await queries.case_page(conn, case_id, row["license_key"])
    servers = await resources.store.installations(row["license_key"])
    return summary.case_item(row, ladder, servers) | page


async def _locked(conn: asyncpg.Connection, case_id: int) -> asyncpg.Record:
    row = await queries.fetch_case(conn, case_id, lock=True)
    if row is None:
        raise CaseNotFound(case_id)
    return row


def _audit_state(row: Mapping[str, Any], ladder: Ladder) -> dict[str, Any]:
    grace, disable = summary.deadlines(queries.case_from_row(row), ladder)
    return {name: row[name] for name in _AUDITED} | {"grace_ends_at": grace, "disable_at": disable}
