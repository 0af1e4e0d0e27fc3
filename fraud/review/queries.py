"""PostgreSQL reads of the review queue and a case's page (SPEC §6); every function takes a
connection, so a caller can read inside its own transaction (and lock the case row)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from activation.licensing.model import CaseStage
from fraud.cases import Case
from fraud.escalation import Ladder, Step

CASE_SELECT = """
SELECT c.*, l.status AS license_status, l.exception_max_servers,
       cu.name AS customer_name, cu.email AS customer_email,
       COALESCE((SELECT array_agg(s.step ORDER BY s.step) FROM case_steps s
                 WHERE s.case_id = c.id), '{}') AS steps_done
FROM fraud_cases c
JOIN licenses l ON l.key = c.license_key
JOIN customers cu ON cu.id = l.customer_id
"""

# The queue (SPEC §6): high severity (R16 leaks) first, then the next deadline (the grace end
# while in grace, the disable date once overdue; none for disabled or resolved cases), then id.
_LIST = f"""{CASE_SELECT}
WHERE ($1::text = 'all' OR c.status = $1)
  AND ($2::text IS NULL OR c.stage = $2)
  AND ($3::text IS NULL OR c.severity = $3)
  AND ($9::text IS NULL OR l.product = $9)
  AND ($4::text IS NULL
       OR strpos(lower(c.license_key), lower($4)) > 0
       OR strpos(lower(cu.email), lower($4)) > 0
       OR strpos(lower(cu.name), lower($4)) > 0
       OR EXISTS (SELECT 1 FROM installations i WHERE i.license_key = c.license_key
                  AND strpos(lower(i.hostname), lower($4)) > 0))
ORDER BY (c.severity = 'high') DESC,
         CASE WHEN c.status = 'open' AND c.stage = 'grace'
                  THEN c.opened_at + (c.extension_seconds + $5::bigint) * interval '1 second'
              WHEN c.status = 'open' AND c.stage = 'overdue'
                  THEN c.opened_at + (c.extension_seconds + $6::bigint) * interval '1 second'
         END ASC NULLS LAST,
         c.id
LIMIT $7 OFFSET $8
"""


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """`status` is open, resolved or all; `q` matches key, customer e-mail/name or hostname;
    `product` is exact (the console's filter)."""

    status: str = "open"
    stage: str | None = None
    severity: str | None = None
    q: str | None = None
    limit: int = 100
    offset: int = 0
    product: str | None = None


def case_from_row(row: Mapping[str, Any]) -> Case:
    """A `fraud_cases` row with its `steps_done` (array of step names) as the rules see it."""
    return Case(
        id=row["id"],
        license_key=row["license_key"],
        opened_at=row["opened_at"],
        stage=CaseStage(row["stage"]),
        resolved=row["status"] == "resolved",
        on_hold=row["on_hold"],
        hold_started_at=row["hold_started_at"],
        extension=timedelta(seconds=row["extension_seconds"]),
        steps_done=frozenset(Step(step) for step in row["steps_done"]),
        leak_suspected=row["leak_suspected"],
        servers_active=row["servers_active"],
        servers_allowed=row["servers_allowed"],
    )


async def list_cases(
    conn: asyncpg.Connection, where: CaseFilter, ladder: Ladder
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        _LIST,
        where.status,
        where.stage,
        where.severity,
        where.q,
        int(ladder.grace.total_seconds()),
        int(ladder.disable_after.total_seconds()),
        where.limit,
        where.offset,
        where.product,
    )
    return rows


async def fetch_case(
    conn: asyncpg.Connection, case_id: int, *, lock: bool = False
) -> asyncpg.Record | None:
    """One case; `lock` takes the case row's lock first (call inside a transaction).

    The lock and the read are two statements on purpose: a `SELECT … FOR UPDATE` that waited
    for another transaction's lock re-reads only the locked row after it commits; its joins
    and subqueries (the steps done, the license's status) keep the statement's older snapshot.
    Read after the lock, everything is as the other transaction left it."""
    if lock:
        found = await conn.fetchval("SELECT id FROM fraud_cases WHERE id = $1 FOR UPDATE", case_id)
        if found is None:
            return None
    row: asyncpg.Record | None = await conn.fetchrow(f"{CASE_SELECT} WHERE c.id = $1", case_id)
    return row


async def open_case_of(conn: asyncpg.Connection, license_key: str) -> asyncpg.Record | None:
    """The key's open case (at most one: `fraud_cases_one_open_idx`)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"{CASE_SELECT} WHERE c.license_key = $1 AND c.status = 'open'", license_key
    )
    return row


async def case_page(conn: asyncpg.Connection, case_id: int, license_key: str) -> dict[str, Any]:
    """What a case's page adds to the queue item: license, timeline, notifications, steps."""
    license = await conn.fetchrow(
        """SELECT l.key, l.product, l.kind, l.edition, l.status, l.disabled_reason,
                  l.disabled_at, l.failover, l.max_servers, l.exception_max_servers,
                  cu.id AS customer_id, cu.name AS customer_name,
                  cu.email AS customer_email, cu.phone AS customer_phone
           FROM licenses l JOIN customers cu ON cu.id = l.customer_id WHERE l.key = $1""",
        license_key,
    )
    events = await conn.fetch(
        "SELECT id, at, kind, actor, note, data FROM case_events WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    notifications = await conn.fetch(
        """SELECT id, channel, template, recipient, status, attempts, created_at, sent_at,
                  last_error
           FROM notifications WHERE case_id = $1 ORDER BY id""",
        case_id,
    )
    task = await conn.fetchrow(
        "SELECT id, status, outcome, created_at, done_at FROM phone_tasks WHERE case_id = $1",
        case_id,
    )
    steps = await conn.fetch(
        "SELECT step, ran_at FROM case_steps WHERE case_id = $1 ORDER BY ran_at, step", case_id
    )
    return {
        "license": None if license is None else _license(license),
        "timeline": [
            {k: event[k] for k in ("id", "at", "kind", "actor", "note")}
            | {"data": orjson.loads(event["data"]) if event["data"] else {}}
            for event in events
        ],
        "notifications": [dict(row) for row in notifications],
        "phone_task": None if task is None else dict(task),
        "steps": [dict(row) for row in steps],
    }


def _license(row: Mapping[str, Any]) -> dict[str, Any]:
    fields = ("key", "product", "kind", "edition", "status", "disabled_reason", "disabled_at")
    return {name: row[name] for name in fields} | {
        "failover": row["failover"],
        "max_servers": row["exception_max_servers"] or row["max_servers"],
        "exception_max_servers": row["exception_max_servers"],
        "customer": {
            "id": row["customer_id"],
            "name": row["customer_name"],
            "email": row["customer_email"],
            "phone": row["customer_phone"],
        },
    }
