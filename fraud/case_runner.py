"""The I/O around the pure case machine (fraud/cases.py): PostgreSQL first, then Redis.
Cases are opened in fraud/case_opening.py; this module evaluates the open ones.

- Each rung of the ladder is recorded in `case_steps` (primary key case + step) in the same
  transaction as its effects (outbox rows, phone task, disabling): two workers, or a worker
  that crashed after the commit, can never run a step twice (R14).
- Disabling writes PostgreSQL, then the Redis license document, so every API process answers
  DISABLED on its next request (R17). The Redis case summary (stage, grace end, disable date)
  is re-written from PostgreSQL at every evaluation.
- A pass evaluates only the open cases whose `next_check_at` has come (a partial index over
  the open cases), not every open case: what is due costs, what is open does not. After an
  evaluation the case's next check is `fraud.cases.next_check_at`.
- A case that changes (a step, a resolution, a new stage) gets its next check in two steps:
  the evaluation's transaction leaves it due as unfinished ('-infinity'), and only once Redis
  is written is the next check set, on condition that nobody wrote the row in between (its
  `xmin`). A crash or a Redis error between the two leaves the case due, so the next pass
  evaluates it in full and writes Redis again; an event or a person's action in between (both
  make the case due) is never overwritten.
- A due case with nothing to do (most: a server that might have gone silent phoned home
  after all) is only rescheduled, in one statement for all of them (`evaluate_due`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from activation.licensing.model import CaseStage
from activation.store.keys import KeyLayout
from activation.store.redis_store import ActivationStore
from fraud.cases import (
    Case,
    apply_evaluation,
    disable_at,
    evaluate,
    grace_ends_at,
    next_check_at,
    severity,
)
from fraud.disabling import disable_license
from fraud.escalation import Action, Ladder, Rung
from fraud.notify.outbox import Channel, enqueue
from fraud.review.queries import case_from_row, fetch_case
from fraud.review.summary import (
    clear_summary,
    refresh_license,
    servers_last_seen,
    servers_last_seen_of,
    write_summary,
)

log = logging.getLogger(__name__)

ACTOR = "fraud-worker"
STEP_TAKEN_RETRIES = 3

# The due cases as the rules see them, with the row's version and whether its last evaluation
# is unfinished ('-infinity': committed, Redis not yet written, or never evaluated).
_DUE = """
SELECT c.*, c.xmin::text AS version, c.next_check_at = '-infinity' AS unfinished,
       COALESCE(l.exception_max_servers, l.max_servers) AS allowed,
       COALESCE((SELECT array_agg(s.step ORDER BY s.step) FROM case_steps s
                 WHERE s.case_id = c.id), '{}') AS steps_done
FROM fraud_cases c JOIN licenses l ON l.key = c.license_key
WHERE c.status = 'open' AND c.next_check_at <= $1
ORDER BY c.next_check_at, c.id
"""

# Next checks of due cases with nothing to do; rows locked in id order (as ingest locks them),
# and only rows nobody wrote since they were read.
_RESCHEDULE = """
WITH locked AS (SELECT id FROM fraud_cases WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE)
UPDATE fraud_cases c SET next_check_at = v.at, servers_active = v.active,
       servers_allowed = v.allowed
FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::int[], $5::text[])
     AS v (id, at, active, allowed, version)
WHERE c.id = v.id AND c.id IN (SELECT id FROM locked) AND c.xmin::text = v.version
"""


class StepTaken(Exception):
    """The step's row exists: another worker ran it after this one read the case."""


@dataclass
class CaseReport:
    opened: int = 0
    resolved: int = 0
    leaks: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    disabled: int = 0
    evaluated: int = 0  # cases a pass looked at: the due ones, not every open one


class CaseRunner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        layout: KeyLayout,
        store: ActivationStore,
        ladder: Ladder,
        *,
        active_window: timedelta,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._layout = layout
        self._store = store
        self._ladder = ladder
        self._window = active_window

    # -- evaluation ------------------------------------------------------------------------

    async def evaluate_due(self, now: datetime) -> CaseReport:
        """The open cases whose next check has come (`next_check_at <= now`).

        - All of them are read in one query and their servers in one Redis round trip, and
          the pure rules say which have something to do (resolve, a step, a new stage).
        - Those with nothing to do, their last evaluation complete (Redis written), get their
          next check in one statement, on condition that nobody wrote the row since the read.
        - Each of the others is evaluated in its own transaction holding the case row's lock,
          so a reviewer's action and the worker never interleave on one case; a case locked
          by someone else stays due for the next pass.
        """
        report = CaseReport()
        rows = await self._pool.fetch(_DUE, now)
        if not rows:
            return report
        cutoff = now - self._window
        keys = [row["license_key"] for row in rows]
        seen_by_key = await servers_last_seen_of(self._redis, self._layout, keys, cutoff)
        quiet: list[tuple[int, datetime | None, int, int, str]] = []
        busy: list[int] = []
        for row, seen in zip(rows, seen_by_key, strict=True):
            case = case_from_row(row)
            active, allowed = len(seen), row["allowed"]
            result = evaluate(
                case, servers_active=active, servers_allowed=allowed, now=now, ladder=self._ladder
            )
            if (
                row["unfinished"]
                or result.resolve
                or result.rungs
                or result.stage is not case.stage
                or case.stage is CaseStage.DISABLED
            ):
                busy.append(row["id"])
                continue
            counted = replace(case, servers_active=active, servers_allowed=allowed)
            at = next_check_at(counted, self._ladder, last_seen=seen, window=self._window, now=now)
            quiet.append((row["id"], at, active, allowed, row["version"]))
        if quiet:
            await self._pool.execute(
                _RESCHEDULE,
                *(list(column) for column in zip(*quiet, strict=True)),
            )
            report.evaluated += len(quiet)
        for case_id in busy:
            await self.evaluate_case(case_id, now, report)
        return report

    async def recheck_all(self) -> int:
        """Every open case evaluated in full on the next pass, which writes its Redis summary
        again: for when Redis came back without its data (a stream's group vanished)."""
        status: str = await self._pool.execute(
            "UPDATE fraud_cases SET next_check_at = '-infinity' WHERE status = 'open'"
        )
        return int(status.split()[-1])

    async def evaluate_case(self, case_id: int, now: datetime, report: CaseReport) -> None:
        """Evaluate one case. A step another worker recorded first rolls this attempt back and
        the case is read again: the step is then done, so this worker goes on with what is
        left (usually nothing). Only a step recorded between the lock and the insert can do
        that, so a second attempt always sees it."""
        for _ in range(STEP_TAKEN_RETRIES):
            try:
                await self._evaluate_one(case_id, now, report)
                return
            except StepTaken as taken:
                log.info("case %d: %s already recorded by another worker; re-read", case_id, taken)
        log.warning("case %d: steps kept being taken by others; left to the next pass", case_id)

    async def _evaluate_one(self, case_id: int, now: datetime, report: CaseReport) -> None:
        cutoff = now - self._window
        counted = CaseReport()
        version: str | None = None
        async with self._pool.acquire() as connection, connection.transaction():
            # A case another worker or a reviewer holds is theirs this pass: skipped, not
            # waited for, so workers share the open cases instead of queueing on each one.
            # Read after the lock (see `fetch_case`).
            held = await connection.fetchval(
                "SELECT id FROM fraud_cases WHERE id = $1 FOR UPDATE SKIP LOCKED", case_id
            )
            row = None if held is None else await fetch_case(connection, case_id)
            if row is None or row["status"] != "open":
                return
            counted.evaluated = 1
            case = case_from_row(row)
            allowed = await connection.fetchval(
                "SELECT COALESCE(exception_max_servers, max_servers) FROM licenses WHERE key = $1",
                case.license_key,
            )
            seen = await servers_last_seen(self._redis, self._layout, case.license_key, cutoff)
            active = len(seen)
            result = evaluate(
                case, servers_active=active, servers_allowed=allowed, now=now, ladder=self._ladder
            )
            if result.resolve:
                await self._resolve(connection, case, now, active, allowed)
                counted.resolved += 1
            else:
                for rung in result.rungs:
                    await self._run_rung(connection, case, rung, row, now, active, allowed)
                    counted.steps[rung.step.value] = counted.steps.get(rung.step.value, 0) + 1
                    if Action.DISABLE_KEY in rung.actions:
                        counted.disabled += 1
                # Still due, as unfinished, until Redis is written; see the module docstring.
                version = await connection.fetchval(
                    """UPDATE fraud_cases SET stage = $2, next_due_at = $3,
                           servers_active = $4, servers_allowed = $5,
                           next_check_at = '-infinity'
                       WHERE id = $1 RETURNING xmin::text""",
                    case.id,
                    result.stage.value,
                    result.next_due_at,
                    active,
                    allowed,
                )
            updated = replace(
                apply_evaluation(case, result, now=now),
                servers_active=active,
                servers_allowed=allowed,
            )
        # Counted once committed: a rolled-back attempt (StepTaken) did nothing.
        report.evaluated += counted.evaluated
        report.resolved += counted.resolved
        report.disabled += counted.disabled
        for step, count in counted.steps.items():
            report.steps[step] = report.steps.get(step, 0) + count
        # After the commit: Redis follows PostgreSQL.
        if updated.resolved:
            await clear_summary(self._redis, self._layout, case.license_key)
            return
        await write_summary(self._redis, self._layout, updated, self._ladder)
        if updated.stage is CaseStage.DISABLED:
            await refresh_license(self._pool, self._store, case.license_key)
        await self._pool.execute(
            "UPDATE fraud_cases SET next_check_at = $2 WHERE id = $1 AND xmin::text = $3",
            case.id,
            next_check_at(updated, self._ladder, last_seen=seen, window=self._window, now=now),
            version,
        )

    async def _run_rung(
        self,
        connection: asyncpg.Connection,
        case: Case,
        rung: Rung,
        row: Any,
        now: datetime,
        active: int,
        allowed: int,
    ) -> None:
        """Record the step with its effects, in the case's transaction (the row lock makes the
        step's primary key a second guard, not the only one)."""
        recorded = await connection.fetchval(
            "INSERT INTO case_steps (case_id, step, ran_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true",
            case.id,
            rung.step.value,
            now,
        )
        if not recorded:
            raise StepTaken(rung.step.value)
        variables = {
            "case_id": case.id,
            "license_key": case.license_key,
            "customer_name": row["customer_name"],
            "servers_active": active,
            "servers_allowed": allowed,
            "grace_ends_at": grace_ends_at(case, self._ladder).isoformat(),
            "disable_at": disable_at(case, self._ladder).isoformat(),
            "step": rung.step.value,
        }
        for action in rung.actions:
            await self._act(connection, action, case, rung, row, variables, now)
        await timeline(
            connection,
            case.id,
            now,
            f"step:{rung.step.value}",
            f"escalation step {rung.step.value} ran",
        )

    async def _act(
        self,
        connection: asyncpg.Connection,
        action: Action,
        case: Case,
        rung: Rung,
        row: Any,
        variables: dict[str, Any],
        now: datetime,
    ) -> None:
        dedupe = f"case:{case.id}:{rung.step.value}"
        if action is Action.EMAIL_CUSTOMER:
            await enqueue(
                connection,
                dedupe_key=f"{dedupe}:email",
                channel=Channel.EMAIL,
                template=_email_template(rung),
                recipient=row["customer_email"],
                payload=variables,
                now=now,
                case_id=case.id,
                license_key=case.license_key,
            )
        elif action is Action.ALERT_TEAM:
            payload = {"event": f"case.{rung.step.value}", "severity": severity(case), **variables}
            await enqueue(
                connection,
                dedupe_key=f"{dedupe}:webhook",
                channel=Channel.WEBHOOK,
                template=f"case_{rung.step.value}",
                recipient="fraud-team",
                payload=payload,
                now=now,
                case_id=case.id,
                license_key=case.license_key,
            )
        elif action is Action.PHONE_TASK:
            await connection.execute(
                "INSERT INTO phone_tasks (case_id, created_at) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                case.id,
                now,
            )
        elif action is Action.DISABLE_KEY:
            await disable_license(
                connection,
                case.license_key,
                now,
                ACTOR,
                "multiple servers past the grace period: assumed compromised",
            )

    async def _resolve(
        self, connection: asyncpg.Connection, case: Case, now: datetime, active: int, allowed: int
    ) -> None:
        await connection.execute(
            """UPDATE fraud_cases SET status = 'resolved', stage = 'resolved',
                   resolved_at = $2, resolution = 'servers back within the limit',
                   resolved_by = $3, next_due_at = NULL, next_check_at = NULL, servers_active = $4,
                   servers_allowed = $5, on_hold = false
               WHERE id = $1""",
            case.id,
            now,
            ACTOR,
            active,
            allowed,
        )
        await timeline(
            connection,
            case.id,
            now,
            "resolved",
            f"resolved by itself: {active} active, {allowed} allowed (R15)",
        )


async def timeline(
    connection: asyncpg.Connection,
    case_id: int,
    at: datetime,
    kind: str,
    note: str,
    actor: str = ACTOR,
) -> None:
    await connection.execute(
        "INSERT INTO case_events (case_id, at, kind, actor, note) VALUES ($1, $2, $3, $4, $5)",
        case_id,
        at,
        kind,
        actor,
        note,
    )


def _email_template(rung: Rung) -> str:
    return {"grace_over": "grace_over", "reminder": "reminder", "disable": "disabled"}.get(
        rung.step.value, rung.step.value
    )
