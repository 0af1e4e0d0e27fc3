"""PostgreSQL writes of one fraud-team action (SPEC §6, R12, R15, R17), in the caller's
transaction; the caller adds the audit row and, after the commit, the Redis side (`summary`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from activation.licensing.model import TeamAction
from fraud.cases import ActionResult, Case
from fraud.disabling import disable_license
from fraud.escalation import Ladder
from fraud.review.summary import next_due

_UPDATE_CASE = """
UPDATE fraud_cases SET stage = $2, status = $3, on_hold = $4, hold_started_at = $5,
       extension_seconds = $6, servers_active = $7, servers_allowed = $8, next_due_at = $9,
       resolved_at = COALESCE($10, resolved_at), resolution = COALESCE($11, resolution),
       resolved_by = COALESCE($12, resolved_by), next_check_at = $13
WHERE id = $1
"""


def resolution(action: TeamAction, note: str | None, result: ActionResult) -> str:
    """Why the case was resolved, for `fraud_cases.resolution`."""
    reason = {
        TeamAction.RESOLVE: "resolved by the fraud team",
        TeamAction.GRANT_EXCEPTION: f"exception granted: up to {result.new_max_servers} servers",
        TeamAction.ENABLE: "key re-enabled by the fraud team",
    }.get(action, f"resolved by {action.value}")
    return f"{reason}: {note}" if note else reason


async def save_action(
    conn: asyncpg.Connection,
    before: Case,
    result: ActionResult,
    *,
    action: TeamAction,
    actor: str,
    note: str | None,
    params: dict[str, Any],
    now: datetime,
    ladder: Ladder,
) -> None:
    """Persist `result` (from `apply_action` on `before`, whose row the caller locked)."""
    case = result.case
    newly_resolved = case.resolved and not before.resolved
    await conn.execute(
        _UPDATE_CASE,
        case.id,
        case.stage.value,
        "resolved" if case.resolved else "open",
        case.on_hold,
        case.hold_started_at,
        round(case.extension.total_seconds()),
        case.servers_active,
        case.servers_allowed,
        next_due(case, ladder),
        now if newly_resolved else None,
        resolution(action, note, result) if newly_resolved else None,
        actor if newly_resolved else None,
        None if case.resolved else now,  # the worker looks at the changed case at once
    )
    if result.new_max_servers is not None:  # R12: the fraud team's exception
        await conn.execute(
            "UPDATE licenses SET exception_max_servers = $2, updated_at = $3 WHERE key = $1",
            case.license_key,
            result.new_max_servers,
            now,
        )
    if result.disable_key:  # R15, R17: PostgreSQL first; the caller writes Redis after commit
        reason = f"disabled by the fraud team (case {case.id})" + (f": {note}" if note else "")
        await disable_license(conn, case.license_key, now, actor, reason)
    if result.enable_key:
        await conn.execute(
            """UPDATE licenses SET status = 'active', disabled_reason = NULL,
                   disabled_at = NULL, updated_at = $2 WHERE key = $1""",
            case.license_key,
            now,
        )
    if action is TeamAction.LOG_CALL:
        await conn.execute(
            """UPDATE phone_tasks SET status = 'done', outcome = $2, done_at = $3
               WHERE case_id = $1 AND status = 'open'""",
            case.id,
            note,
            now,
        )
    data = {name: value for name, value in ({"note": note} | params).items() if value is not None}
    await conn.execute(
        "INSERT INTO case_events (case_id, at, kind, actor, note, data) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        case.id,
        now,
        action.value,
        actor,
        result.event,
        orjson.dumps(data).decode(),
    )
