"""The activation history's lifecycle: monthly partitions made ahead, old ones dropped whole.

`activation_events` is partitioned by month of `occurred_at` (migration 0005). On every
periodic pass the worker:

- creates the partitions of the current month and the next one (and of any month whose rows
  arrived before its partition, e.g. after the test clock jumped), through the migration's
  `activation_events_prepare`; idempotent, a catalog lookup when there is nothing to do;
- drops every monthly partition that ends before `now - ACTIVATION_EVENTS_RETENTION_DAYS`
  (default 400), and deletes the default partition's rows and the daily roll-up's days before
  the first month kept: history is kept in whole months, at least the retention's days.
  Dropping a partition needs a moment's exclusive lock on the parent table: it waits at most
  `LOCK_WAIT` for it, and a pass that did not get it leaves the drop to the next pass rather
  than hold ingestion up behind a long query.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from activation.config import Settings

log = logging.getLogger(__name__)

LOCK_WAIT = "2s"
_MONTHLY = re.compile(r"^activation_events_(\d{4})_(\d{2})$")

PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'activation_events'::regclass
"""


@dataclass(frozen=True, slots=True)
class RetentionReport:
    created: int = 0
    dropped: tuple[str, ...] = ()


def month_end(name: str) -> datetime | None:
    """The end of a monthly partition's range (exclusive), from its name; None for others."""
    match = _MONTHLY.match(name)
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    following = date(year + month // 12, month % 12 + 1, 1)
    return datetime.combine(following, datetime.min.time(), tzinfo=UTC)


def expired(names: list[str], cutoff: datetime) -> list[str]:
    """Monthly partitions whose every row is older than `cutoff`, oldest first."""
    ends = {name: month_end(name) for name in names}
    return sorted(name for name, end in ends.items() if end is not None and end <= cutoff)


async def run(pool: asyncpg.Pool, now: datetime, settings: Settings) -> RetentionReport:
    """Partitions ahead, then the retention (see the module's docstring)."""
    retention_days = settings.activation_events_retention_days
    created: int = await pool.fetchval("SELECT activation_events_prepare($1)", now)
    if created:
        log.info("created %d activation_events partitions", created)
    cutoff = now - timedelta(days=retention_days)
    names = [row["relname"] for row in await pool.fetch(PARTITIONS)]
    dropped = []
    for name in expired(names, cutoff):
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                await conn.execute(f'DROP TABLE "{name}"')
        except asyncpg.LockNotAvailableError:
            log.warning("activation_events partition %s busy, dropping it next pass", name)
            break
        dropped.append(name)
        log.info(
            "dropped activation_events partition %s (older than %d days)", name, retention_days
        )
    kept_from = cutoff.astimezone(UTC).date().replace(day=1)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM activation_events_default WHERE occurred_at < $1",
            datetime.combine(kept_from, datetime.min.time(), tzinfo=UTC),
        )
        await conn.execute("DELETE FROM activation_daily WHERE day < $1", kept_from)
    return RetentionReport(created=created, dropped=tuple(dropped))
