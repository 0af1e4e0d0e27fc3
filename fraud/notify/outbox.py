"""The notification outbox (SPEC §7): rows are written in the caller's transaction and sent
later, at least once, by `send_due`.

Dedupe keys (the caller builds them; one row per key, ever):
- case escalation steps: ``case:{case_id}:{step}:{channel}``, e.g. ``case:17:day30:email``;
- M&S reminders: ``ms:{license_key}:{covered_through}:{offset}:email``, e.g.
  ``ms:ABCDE-…:2027-08-31:30:email`` (offset = days before the lapse, 0 on the day it lapses).
The key also yields the e-mail Message-ID and the webhook-id, so every retry of one message
carries the same id and the receiver can drop duplicates.

Sending (`send_due`):
1. Claim: one short statement picks due rows (`FOR UPDATE SKIP LOCKED`) and moves their
   `next_attempt_at` to ``now + lease``. No row lock is held while sending; other workers skip
   the rows because they are no longer due. A worker that dies mid-send leaves the row to be
   claimed again after the lease (at-least-once).
2. Send: each channel in its own task with bounded concurrency, so a slow or failing channel
   never delays or blocks the other.
3. Record: success → `sent`, `sent_at = now`; failure → `attempts + 1`, `last_error`, and
   `next_attempt_at = now + backoff(attempts)`, or `dead` once `max_attempts` are used (or at
   once on `PermanentFailure`). A failure is recorded only while this worker still holds the
   lease, so a worker that overran its lease cannot reschedule a row another worker is sending.

Rows of a channel with no configured sender (e.g. no FRAUD_WEBHOOK_URL) are not claimed: they
stay pending and go out once the channel is configured. Use `backlog` to watch them. A
deployment that does not want a channel at all should not enqueue rows for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from fraud.notify.model import Channel, Notification, PermanentFailure, Sender, SendReport

__all__ = [
    "DEFAULT_LEASE",
    "Channel",
    "Notification",
    "PermanentFailure",
    "SendReport",
    "Sender",
    "backlog",
    "backoff",
    "enqueue",
    "send_due",
]

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
DEFAULT_LEASE = timedelta(minutes=5)
ERROR_LIMIT = 1000

_INSERT = """
INSERT INTO notifications (dedupe_key, case_id, license_key, channel, template, recipient,
                           payload, next_attempt_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $8)
ON CONFLICT (dedupe_key) DO NOTHING
"""

_CLAIM = """
WITH due AS (
    SELECT id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= $1 AND channel = ANY($2::text[])
    ORDER BY next_attempt_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET next_attempt_at = $4
FROM due WHERE n.id = due.id
RETURNING n.id, n.dedupe_key, n.case_id, n.license_key, n.channel, n.template, n.recipient,
          n.payload::text AS payload, n.attempts, n.created_at
"""

_SENT = """
UPDATE notifications SET status = 'sent', sent_at = $2, attempts = attempts + 1,
                         last_error = NULL
WHERE id = $1 AND status = 'pending'
"""

_FAILED = """
UPDATE notifications SET attempts = attempts + 1, last_error = $3,
       status = CASE WHEN $4 THEN 'dead' ELSE 'pending' END,
       next_attempt_at = CASE WHEN $4 THEN next_attempt_at ELSE $5 END
WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2
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


async def send_due(
    pool: asyncpg.Pool,
    senders: Mapping[Channel, Sender],
    now: datetime,
    *,
    batch: int = 50,
    max_attempts: int = 8,
    lease: timedelta = DEFAULT_LEASE,
    concurrency: int = 8,
) -> SendReport:
    """Send up to `batch` due messages once each; never raises for a failed delivery.

    `lease` must exceed the time one pass can take (batch / concurrency × the slowest send's
    timeout); after it a claimed but unrecorded row becomes due again.
    """
    report = SendReport()
    if not senders or batch < 1:
        return report
    lease_until = now + lease
    rows = await pool.fetch(_CLAIM, now, [str(c) for c in senders], batch, lease_until)
    by_channel: dict[Channel, list[Notification]] = {}
    for row in rows:
        note = _notification(row)
        by_channel.setdefault(note.channel, []).append(note)
    outbox = _Pass(pool, now, lease_until, max_attempts, report)
    await asyncio.gather(
        *(
            outbox.run_channel(senders[channel], notes, concurrency)
            for channel, notes in by_channel.items()
        )
    )
    return report


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


class _Pass:
    def __init__(
        self,
        pool: asyncpg.Pool,
        now: datetime,
        lease_until: datetime,
        max_attempts: int,
        report: SendReport,
    ) -> None:
        self._pool = pool
        self._now = now
        self._lease_until = lease_until
        self._max_attempts = max_attempts
        self._report = report

    async def run_channel(
        self, sender: Sender, notes: list[Notification], concurrency: int
    ) -> None:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(note: Notification) -> None:
            async with gate:
                await self._deliver(sender, note)

        await asyncio.gather(*(one(note) for note in notes))

    async def _deliver(self, sender: Sender, note: Notification) -> None:
        try:
            await sender.send(note)
        except Exception as exc:  # any delivery failure is recorded, never raised
            await self._failed(note, exc)
        else:
            status: str = await self._pool.execute(_SENT, note.id, self._now)
            if status == "UPDATE 1":
                self._report.count(note.channel, "sent")

    async def _failed(self, note: Notification, exc: Exception) -> None:
        failures = note.attempts + 1
        dead = isinstance(exc, PermanentFailure) or failures >= self._max_attempts
        error = f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]
        status: str = await self._pool.execute(
            _FAILED,
            note.id,
            self._lease_until,
            error,
            dead,
            self._now + backoff(failures),
        )
        if status == "UPDATE 1":
            self._report.count(note.channel, "dead" if dead else "retried")
