"""The notification outbox (SPEC §7): rows are written in the caller's transaction (the
deciding pass) and delivered later, at least once, by the sender (fraud/notify/sending.py).

Dedupe keys (the caller builds them; one row per key, ever):
- case escalation steps: ``case:{case_id}:{step}:{channel}``, e.g. ``case:17:day30:email``;
- M&S reminders: ``ms:{license_key}:{covered_through}:{offset}:email``, e.g.
  ``ms:ABCDE-…:2027-08-31:30:email`` (offset = days before the lapse, 0 on the day it lapses).
The key also yields the e-mail Message-ID and the webhook-id, so every retry of one message
carries the same id and the receiver can drop duplicates.

The row's life:
1. Claim (`claim`): one statement picks due rows of one channel (`FOR UPDATE SKIP LOCKED`)
   whose lease is free and leases them until wall-clock ``now + lease``. No row lock is held
   while sending; other workers skip leased rows. A worker that dies mid-send leaves the lease
   to run out: the row is claimed again and counted in `resends` (the receiver may have
   accepted the first attempt; the ids are the same).
2. Record: success → `sent` (`mark_sent`); failure → `attempts + 1`, `last_error`, and
   `next_attempt_at = now + backoff(attempts)`, or `dead` once `max_attempts` are used (or at
   once on `PermanentFailure`) (`mark_failed`). A failure is recorded only while the worker
   still holds its lease, so a worker that overran it cannot reschedule a row another sends.
Due times (`next_attempt_at`, backoff) follow the deployment's clock; leases follow the wall
clock, since they measure whether a process is still alive.

Rows of a channel with no configured sender (e.g. no FRAUD_WEBHOOK_URL) are not claimed: they
stay pending and go out once the channel is configured. Use `backlog` to watch them. A
deployment that does not want a channel at all should not enqueue rows for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from fraud.notify.model import (
    Channel,
    Notification,
    Outcome,
    PermanentFailure,
    Sender,
    SendReport,
)

__all__ = [
    "DEFAULT_LEASE",
    "Channel",
    "Claimed",
    "Notification",
    "PermanentFailure",
    "SendReport",
    "Sender",
    "backlog",
    "backoff",
    "claim",
    "enqueue",
    "mark_failed",
    "mark_sent",
]

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
DEFAULT_LEASE = timedelta(minutes=2)
ERROR_LIMIT = 1000

_INSERT = """
INSERT INTO notifications (dedupe_key, case_id, license_key, channel, template, recipient,
                           payload, next_attempt_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $8)
ON CONFLICT (dedupe_key) DO NOTHING
"""

_CLAIM = """
WITH due AS (
    SELECT id, lease_until IS NOT NULL AS resend FROM notifications
    WHERE status = 'pending' AND channel = $2 AND next_attempt_at <= $1
      AND (lease_until IS NULL OR lease_until <= clock_timestamp())
    ORDER BY next_attempt_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
SET lease_until = clock_timestamp() + $4::float8 * interval '1 second',
    resends = n.resends + due.resend::int
FROM due WHERE n.id = due.id
RETURNING n.id, n.dedupe_key, n.case_id, n.license_key, n.channel, n.template, n.recipient,
          n.payload::text AS payload, n.attempts, n.created_at, n.lease_until, due.resend
"""

_SENT = """
UPDATE notifications SET status = 'sent', sent_at = $2, attempts = attempts + 1,
                         last_error = NULL, lease_until = NULL
WHERE id = $1 AND status = 'pending'
"""

_FAILED = """
UPDATE notifications SET attempts = attempts + 1, last_error = $3, lease_until = NULL,
       status = CASE WHEN $4 THEN 'dead' ELSE 'pending' END,
       next_attempt_at = CASE WHEN $4 THEN next_attempt_at ELSE $5 END
WHERE id = $1 AND status = 'pending' AND lease_until = $2
"""

_BACKLOG = """
SELECT channel, count(*) FROM notifications
WHERE status = 'pending' AND next_attempt_at <= $1
GROUP BY channel
"""


def backoff(failures: int) -> timedelta:
    """Delay after the `failures`-th failed attempt: 30 s, 60 s, 120 s, … capped at 1 h."""
    if failures < 1:
        return BACKOFF_BASE
    return min(BACKOFF_BASE * (1 << min(failures - 1, 20)), BACKOFF_CAP)


async def enqueue(
    conn: asyncpg.Connection,
    *,
    dedupe_key: str,
    channel: Channel,
    template: str,
    recipient: str,
    payload: Mapping[str, Any],
    now: datetime,
    case_id: int | None = None,
    license_key: str | None = None,
) -> bool:
    """Add one message to the outbox, due at once; True when inserted, False when a row with
    this dedupe key already exists (the step ran before). Runs in the caller's transaction."""
    status: str = await conn.execute(
        _INSERT,
        dedupe_key,
        case_id,
        license_key,
        str(Channel(channel)),
        template,
        recipient,
        orjson.dumps(dict(payload)).decode(),
        now,
    )
    return status == "INSERT 0 1"


async def backlog(pool: asyncpg.Pool, now: datetime) -> dict[Channel, int]:
    """Pending rows due at `now`, per channel (a gauge; unconfigured channels pile up here)."""
    counts = dict.fromkeys(Channel, 0)
    for row in await pool.fetch(_BACKLOG, now):
        counts[Channel(row[0])] = int(row[1])
    return counts


@dataclass(frozen=True)
class Claimed:
    """A leased row: the notification, its lease (wall clock) and whether an earlier claim of
    it ended without a record (a re-send: the receiver may already have the message)."""

    notification: Notification
    lease_until: datetime
    resend: bool


async def claim(
    pool: asyncpg.Pool, channel: Channel, now: datetime, limit: int, lease: timedelta
) -> list[Claimed]:
    """Lease up to `limit` rows of `channel` due at `now` for `lease` (wall-clock time)."""
    if limit < 1:
        return []
    rows = await pool.fetch(_CLAIM, now, str(channel), limit, lease.total_seconds())
    return [Claimed(_notification(row), row["lease_until"], row["resend"]) for row in rows]


async def mark_sent(pool: asyncpg.Pool, claimed: Claimed, now: datetime) -> bool:
    status: str = await pool.execute(_SENT, claimed.notification.id, now)
    return status == "UPDATE 1"


async def mark_failed(
    pool: asyncpg.Pool, claimed: Claimed, error: Exception, now: datetime, *, max_attempts: int
) -> Outcome | None:
    """Record a failed attempt while the lease is ours; "dead" or "retried", None when the
    lease had run out (another worker owns the row now)."""
    note = claimed.notification
    failures = note.attempts + 1
    dead = isinstance(error, PermanentFailure) or failures >= max_attempts
    text = f"{type(error).__name__}: {error}"[:ERROR_LIMIT]
    status: str = await pool.execute(
        _FAILED, note.id, claimed.lease_until, text, dead, now + backoff(failures)
    )
    if status != "UPDATE 1":
        return None
    return "dead" if dead else "retried"


def _notification(row: asyncpg.Record) -> Notification:
    payload = row["payload"]
    return Notification(
        id=row["id"],
        dedupe_key=row["dedupe_key"],
        channel=Channel(row["channel"]),
        template=row["template"],
        recipient=row["recipient"],
        payload=orjson.loads(payload) if isinstance(payload, str | bytes) else dict(payload),
        attempts=row["attempts"],
        created_at=row["created_at"],
        case_id=row["case_id"],
        license_key=row["license_key"],
    )
