"""Replaying dead letters (`fraud-worker replay-dead-letters`): after the cause is fixed (a
license imported late, a constraint relaxed, a decoder bug fixed), the stream entries kept in
`dead_letters` are ingested as if they had just arrived.

- Each entry is written in its own transaction together with what it opens (cases, leak flags)
  and the removal of its dead-letter row: a replay is idempotent (events `ON CONFLICT DO
  NOTHING`), and running it twice, or alongside a worker, stores each event once.
- An entry still refused (malformed, or refused by PostgreSQL on its own) stays, with the new
  error; an outage stops the replay with nothing half-done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
import orjson

from fraud.events import parse_entry
from fraud.ingest import ROW_REFUSALS, BatchEffects
from fraud.ingest_sql import (
    INSERT_EVENTS,
    UPSERT_INSTALLATIONS,
    event_columns,
    installation_columns,
)

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    replayed: int = 0  # dead letters ingested and removed
    inserted: int = 0  # of which new rows in activation_events (the rest were stored already)
    still_failing: int = 0  # kept, with the error of this attempt
    cases_opened: int = 0


async def replay_dead_letters(
    pool: asyncpg.Pool, effects: BatchEffects | None = None, *, chunk: int = 500
) -> ReplayReport:
    """Ingest every dead letter that can be stored now; remove those (see the module doc)."""
    report = ReplayReport()
    after = 0
    while True:
        rows = await pool.fetch(
            "SELECT id, stream, entry_id, fields FROM dead_letters WHERE id > $1"
            " ORDER BY id LIMIT $2",
            after,
            chunk,
        )
        if not rows:
            return report
        for row in rows:
            await _replay_one(pool, row, effects, report)
        after = rows[-1]["id"]


async def _replay_one(
    pool: asyncpg.Pool, row: asyncpg.Record, effects: BatchEffects | None, report: ReplayReport
) -> None:
    try:
        stored = orjson.loads(row["fields"])
        fields = {str(k).encode(): str(v).encode() for k, v in stored.items()}
        event = parse_entry(row["stream"], row["entry_id"].encode(), fields)
    except (KeyError, ValueError, UnicodeDecodeError, OverflowError, AttributeError) as error:
        await _still_failing(pool, row["id"], f"malformed entry: {error!r}", report)
        return
    try:
        async with pool.acquire() as connection, connection.transaction():
            status = await connection.execute(INSERT_EVENTS, *event_columns([event]))
            await connection.execute(UPSERT_INSTALLATIONS, *installation_columns([event]))
            opened = await effects(connection, [event]) if effects else None
            await connection.execute("DELETE FROM dead_letters WHERE id = $1", row["id"])
    except ROW_REFUSALS as error:
        await _still_failing(pool, row["id"], repr(error), report)
        return
    report.replayed += 1
    report.inserted += int(status.rsplit(" ", 1)[-1])
    report.cases_opened += opened.cases if opened else 0


async def _still_failing(pool: asyncpg.Pool, row_id: int, error: str, report: ReplayReport) -> None:
    await pool.execute("UPDATE dead_letters SET error = $2 WHERE id = $1", row_id, error)
    report.still_failing += 1
    log.warning("dead letter %d still refused: %s", row_id, error)
