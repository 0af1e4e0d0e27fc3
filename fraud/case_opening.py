"""Opening fraud cases from ingested events (R13) and flagging leaked keys (R16).

- A case opens when an event shows more active servers than allowed; its opening time is the
  moment the activation script first saw the key over its limit (the license hash's `over`),
  so the worker's deadlines equal the GRACE answers' `grace_ends_at`. One open case per key
  (a partial unique index): two workers opening the same case is a no-op for the second.
- A key seen on more than the threshold of distinct servers within 24 h is flagged at once:
  high severity, top of the queue, a team webhook. It is not disabled (R16).
- An event that may bring an open case's key back within its limit makes the case due at
  once (`next_check_at` = now): a deactivation, or an activation counting no more servers than
  allowed (R15). Activations still over the limit leave the case's next check alone: the ladder
  runs on time, and the moment servers leave the active window is scheduled already
  (`fraud.cases.next_check_at`). Cases never due (stage disabled) stay so.
- A case opens due at once (`next_check_at` defaults to '-infinity', never evaluated): its
  first evaluation writes the Redis summary and schedules the ladder and the window.
- All of it is written on the ingest's connection, in the transaction that stores the events that
  show them (`CaseOpener.write`), before the stream entries are acknowledged: an error or a
  crash in between rolls both back and the redelivered entries open the case again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from activation.store.keys import KeyLayout
from fraud.case_runner import timeline
from fraud.cases import is_leak
from fraud.escalation import Ladder
from fraud.events import Event
from fraud.ingest import Opened
from fraud.notify.outbox import Channel, enqueue

log = logging.getLogger(__name__)


class CaseOpener:
    def __init__(
        self, redis: Redis, layout: KeyLayout, ladder: Ladder, *, leak_threshold: int
    ) -> None:
        self._redis = redis
        self._layout = layout
        self._ladder = ladder
        self._leak_threshold = leak_threshold

    async def write(
        self, connection: asyncpg.Connection, events: Iterable[Event], now: datetime
    ) -> Opened:
        """Open the cases and flag the leaks `events` show, on `connection` (inside the
        ingest's transaction). Keys in sorted order: two workers' batches lock the same
        case rows in one order."""
        opened = Opened()
        over: dict[str, Event] = {}
        leaks: set[str] = set()
        maybe_within: set[str] = set()
        for event in events:
            if event.op == "a" and event.servers_active > event.servers_allowed:
                over.setdefault(event.license_key, event)
            else:
                maybe_within.add(event.license_key)
            if is_leak(event.recent_servers, self._leak_threshold):
                leaks.add(event.license_key)
        if maybe_within:
            await self._make_due(connection, sorted(maybe_within), now)
        for key in sorted(over):
            event = over[key]
            opened_at = await self._over_since(key) or event.at
            if await self._open(connection, key, opened_at, event, now):
                opened.cases += 1
        for key in sorted(leaks):
            if await self._flag_leak(connection, key, now):
                opened.leaks += 1
        return opened

    async def _make_due(
        self, connection: asyncpg.Connection, keys: list[str], now: datetime
    ) -> None:
        """The keys' open cases are due now, or earlier if they were (rows locked in id order,
        as every batch does). The keys with such a case are picked here from the few open
        cases, rather than sending the whole batch's keys to PostgreSQL to look up."""
        watched = {
            row["license_key"]
            for row in await connection.fetch(
                "SELECT license_key FROM fraud_cases "
                "WHERE status = 'open' AND next_check_at IS NOT NULL"
            )
        }
        affected = [key for key in keys if key in watched]
        if not affected:
            return
        await connection.execute(
            """UPDATE fraud_cases SET next_check_at = LEAST(next_check_at, $2)
               WHERE id IN (SELECT id FROM fraud_cases
                            WHERE license_key = ANY($1::text[]) AND status = 'open'
                              AND next_check_at IS NOT NULL
                            ORDER BY id FOR UPDATE)""",
            affected,
            now,
        )

    async def _over_since(self, key: str) -> datetime | None:
        raw = await self._redis.hget(self._layout.for_license(key, 0).license, "over")
        return datetime.fromtimestamp(float(raw), UTC) if raw else None

    async def _open(
        self,
        connection: asyncpg.Connection,
        key: str,
        opened_at: datetime,
        event: Event,
        now: datetime,
    ) -> bool:
        case_id = await connection.fetchval(
            """INSERT INTO fraud_cases (license_key, opened_at, servers_active,
                   servers_allowed, next_due_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (license_key) WHERE status = 'open' DO NOTHING
               RETURNING id""",
            key,
            opened_at,
            event.servers_active,
            event.servers_allowed,
            opened_at + self._ladder.grace,
        )
        if case_id is None:
            return False
        await timeline(
            connection,
            case_id,
            now,
            "opened",
            f"{event.servers_active} servers active, {event.servers_allowed} allowed; "
            f"migration grace until {(opened_at + self._ladder.grace):%Y-%m-%d %H:%M} UTC",
        )
        log.info("opening case %s for %s", case_id, key)
        return True

    async def _flag_leak(self, connection: asyncpg.Connection, key: str, now: datetime) -> bool:
        row = await connection.fetchrow(
            """UPDATE fraud_cases SET leak_suspected = true, severity = 'high'
               WHERE license_key = $1 AND status = 'open' AND NOT leak_suspected
               RETURNING id, servers_active""",
            key,
        )
        if row is None:
            return False
        await timeline(
            connection,
            row["id"],
            now,
            "leak_suspected",
            "key seen on many servers within 24 hours (R16)",
        )
        await enqueue(
            connection,
            dedupe_key=f"case:{row['id']}:leak:webhook",
            channel=Channel.WEBHOOK,
            template="leak_suspected",
            recipient="fraud-team",
            payload={
                "event": "leak_suspected",
                "case_id": row["id"],
                "license_key": key,
                "severity": "high",
                "at": now.isoformat(),
            },
            now=now,
            case_id=row["id"],
            license_key=key,
        )
        return True
