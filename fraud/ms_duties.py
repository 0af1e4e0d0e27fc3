"""The worker's M&S duties: reminders (R6), auto-renewal (R5) and trial expiry (R1).

Each duty is recorded in `ms_duties` (license, coverage end, duty) in the same transaction as
its effect, so it happens once per coverage period however often the worker runs. Add-ons
lapsing with M&S (R8) need no duty: the activation decision compares the coverage date with
the request's day, so the cache never holds a stale grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from activation.licensing.maintenance import (
    REMINDER_OFFSETS_DAYS,
    QuoteKind,
    due_reminder,
    quote,
)
from activation.store.redis_store import ActivationStore
from activation.store.registry import LICENSE_COLUMNS
from fraud.notify.outbox import Channel, enqueue
from fraud.review.summary import refresh_license

ACTOR = "fraud-worker"


@dataclass
class DutyReport:
    reminders: int = 0
    renewals: int = 0
    trials_expired: int = 0


class MsDuties:
    def __init__(self, pool: asyncpg.Pool, store: ActivationStore) -> None:
        self._pool = pool
        self._store = store

    async def run(self, now: datetime) -> DutyReport:
        today = now.date()
        report = DutyReport()
        report.renewals = await self._auto_renew(today, now)
        report.reminders = await self._reminders(today, now)
        report.trials_expired = await self._trials(today, now)
        return report

    async def _reminders(self, today: date, now: datetime) -> int:
        horizon = today + timedelta(days=max(REMINDER_OFFSETS_DAYS))
        rows = await self._pool.fetch(
            """SELECT l.key, l.ms_covered_through, c.email, c.name,
                      COALESCE((SELECT array_agg(d.duty) FROM ms_duties d
                                WHERE d.license_key = l.key
                                  AND d.covered_through = l.ms_covered_through), '{}') AS done
               FROM licenses l JOIN customers c ON c.id = l.customer_id
               WHERE l.kind = 'perpetual' AND l.status = 'active' AND NOT l.auto_renew
                 AND l.ms_covered_through BETWEEN $1 AND $2""",
            today - timedelta(days=2),
            horizon,
        )
        sent = 0
        for row in rows:
            already = frozenset(
                int(duty.removeprefix("reminder:"))
                for duty in row["done"]
                if duty.startswith("reminder:")
            )
            offset = due_reminder(row["ms_covered_through"], today, already)
            if offset is None:
                continue
            if await self._record_reminder(row, offset, now):
                sent += 1
        return sent

    async def _record_reminder(self, row: asyncpg.Record, offset: int, now: datetime) -> bool:
        covered: date = row["ms_covered_through"]
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO ms_duties (license_key, covered_through, duty, done_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
                row["key"],
                covered,
                f"reminder:{offset}",
                now,
            )
            if inserted is None:
                return False
            await enqueue(
                connection,
                dedupe_key=f"ms:{row['key']}:{covered.isoformat()}:{offset}:email",
                channel=Channel.EMAIL,
                template="ms_lapsed" if offset == 0 else "ms_reminder",
                recipient=row["email"],
                payload={
                    "license_key": row["key"],
                    "customer_name": row["name"],
                    "ms_covered_through": covered.isoformat(),
                    # The days really left (a worker that was down sends the latest reminder late).
                    "days_left": max((covered - now.date()).days, 0),
                },
                now=now,
                license_key=row["key"],
            )
        return True

    async def _auto_renew(self, today: date, now: datetime) -> int:
        """R5: the renewal is recorded on the last covered day (or as soon after as the worker
        runs, while the renewal window is still open)."""
        rows = await self._pool.fetch(
            f"""SELECT {LICENSE_COLUMNS} FROM licenses l
                WHERE l.kind = 'perpetual' AND l.auto_renew AND l.status = 'active'
                  AND l.ms_covered_through <= $1""",
            today,
        )
        renewed = 0
        for row in rows:
            covered: date = row["ms_covered_through"]
            renewal = quote(covered, covered)  # the renewal as of the last covered day
            if renewal.kind is not QuoteKind.RENEWAL or renewal.covered_through_after is None:
                continue
            async with self._pool.acquire() as connection, connection.transaction():
                inserted = await connection.fetchval(
                    "INSERT INTO ms_duties (license_key, covered_through, duty, done_at) "
                    "VALUES ($1, $2, 'auto_renewal', $3) ON CONFLICT DO NOTHING RETURNING 1",
                    row["key"],
                    covered,
                    now,
                )
                if inserted is None:
                    continue
                await connection.execute(
                    "UPDATE licenses SET ms_covered_through = $2, updated_at = $3 WHERE key = $1",
                    row["key"],
                    renewal.covered_through_after,
                    now,
                )
                await connection.execute(
                    """INSERT INTO ms_transactions (license_key, kind, on_date, price_ratio,
                           covered_through_before, covered_through_after, actor)
                       VALUES ($1, 'auto_renewal', $2, $3, $4, $5, $6)""",
                    row["key"],
                    covered,
                    renewal.price_ratio,
                    covered,
                    renewal.covered_through_after,
                    ACTOR,
                )
            # The new coverage into Redis, that row version marked synced: the cache sweep
            # does not write the renewal a second time.
            await refresh_license(self._pool, self._store, row["key"])
            renewed += 1
        return renewed

    async def _trials(self, today: date, now: datetime) -> int:
        """R1: an expired trial is answered EXPIRED by the decision at once; the duty records
        the moment in the audit log, once, for the sales team."""
        return int(
            await self._pool.fetchval(
                """WITH expired AS (
                       INSERT INTO ms_duties (license_key, covered_through, duty, done_at)
                       SELECT key, purchased_on + trial_days, 'trial_expired', $2
                       FROM licenses
                       WHERE kind = 'trial' AND purchased_on + trial_days <= $1
                       ON CONFLICT DO NOTHING
                       RETURNING license_key),
                   audited AS (
                       INSERT INTO audit_log (at, actor, action, target, before, after)
                       SELECT $2, 'fraud-worker', 'license.trial_expired',
                              'license:' || license_key, NULL, '{"expired": true}'::jsonb
                       FROM expired RETURNING 1)
                   SELECT count(*) FROM audited""",
                today,
                now,
            )
        )
