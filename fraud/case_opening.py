"""Opening fraud cases from ingested events (R13) and flagging leaked keys (R16).

- A case opens when an event shows more active servers than allowed; its opening time is the
  moment the activation script first saw the key over its limit (the license hash's `over`),
  so the worker's deadlines equal the GRACE answers' `grace_ends_at`. One open case per key
  (a partial unique index): two workers opening the same case is a no-op for the second.
- A key seen on more than the threshold of distinct servers within 24 h is flagged at once:
  high severity, top of the queue, a team webhook. It is not disabled (R16).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from activation.store.keys import KeyLayout
from fraud.case_runner import CaseReport, timeline
from fraud.cases import is_leak
from fraud.escalation import Ladder
from fraud.ingest import Event
from fraud.notify.outbox import Channel, enqueue

log = logging.getLogger(__name__)


class CaseOpener:
    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, layout: KeyLayout, ladder: Ladder,
        *, leak_threshold: int,
    ) -> None:  # fmt: skip
        self._pool = pool
        self._redis = redis
        self._layout = layout
        self._ladder = ladder
        self._leak_threshold = leak_threshold

    async def open_from_events(self, events: Iterable[Event], now: datetime) -> CaseReport:
        report = CaseReport()
        over: dict[str, Event] = {}
        leaks: set[str] = set()
        for event in events:
            if event.op == "a" and event.servers_active > event.servers_allowed:
                over.setdefault(event.license_key, event)
            if is_leak(event.recent_servers, self._leak_threshold):
                leaks.add(event.license_key)
        for key, event in over.items():
            opened_at = await self._over_since(key) or event.at
            if await self._open(key, opened_at, event, now):
                report.opened += 1
        for key in leaks:
            if await self._flag_leak(key, now):
                report.leaks += 1
        return report

    async def _over_since(self, key: str) -> datetime | None:
        raw = await self._redis.hget(self._layout.for_license(key, 0).license, "over")
        return datetime.fromtimestamp(float(raw), UTC) if raw else None

    async def _open(self, key: str, opened_at: datetime, event: Event, now: datetime) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
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
        log.info("opened case %s for %s", case_id, key)
        return True

    async def _flag_leak(self, key: str, now: datetime) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
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
