"""Durable ingest: the shard streams of activation events → PostgreSQL, exactly once.

- Redis Streams consumer group `ingest` over every shard stream; several workers share it.
- A batch is written in ONE PostgreSQL transaction (events `ON CONFLICT (event_id) DO NOTHING`,
  installations upserted) and acknowledged only after the commit: a crash before the ack means
  redelivery, and the unique event id makes the replay a no-op (at-least-once delivery,
  idempotent writes → exactly one row per acknowledged activation).
- Cases and leak flags a batch opens (`effects`, fraud/case_opening.py) are written in the
  batch's own transaction, so they are never lost between the commit and the acknowledgement.
- Each pass first takes back what this consumer read and did not acknowledge (a pass that failed),
  then entries pending on a consumer that died, after `min_idle_ms` (longer than the slowest
  normal batch) with XAUTOCLAIM, then new entries.
- Only an entry the decoder or PostgreSQL rejects on its own goes to the `dead_letters` table
  (and is acknowledged, so it never blocks the rest): malformed, or refused with a data or
  constraint error when written alone. Anything else (connection lost, timeouts, SQLSTATE classes
  08/53/57, serialization failures, deadlocks, an error that is not the row's) fails the pass
  and nothing is acknowledged: the worker retries with backoff, however long it lasts. How often
  Redis delivered an entry decides nothing: during an outage every retry raises that count.
- A consumer group that vanished (Redis restarted without its data, or the stream was deleted)
  is created again and ingestion goes on; the reset is counted and logged with what can be known
  (the last entry this worker ingested, the new stream's first entry).
- Streams are trimmed only below the oldest entry some group has not acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from fraud.events import Event, parse_entry
from fraud.ingest_sql import (
    INSERT_EVENTS,
    UPSERT_INSTALLATIONS,
    event_columns,
    installation_columns,
)

log = logging.getLogger(__name__)

GROUP = "ingest"


DeadEntry = tuple[str, bytes, dict[bytes, bytes], str]
Entry = tuple[str, bytes, dict[bytes, bytes]]


@dataclass
class Opened:
    """What a batch of events opened in its own transaction: cases (R13), leak flags (R16)."""

    cases: int = 0
    leaks: int = 0


# Writes what a batch of events opens, on the batch's connection inside its transaction.
BatchEffects = Callable[[asyncpg.Connection, list[Event]], Awaitable[Opened]]


@dataclass
class Batch:
    events: list[Event] = field(default_factory=list)
    dead: list[DeadEntry] = field(default_factory=list)
    raw: dict[tuple[str, bytes], dict[bytes, bytes]] = field(default_factory=dict)
    reclaimed: int = 0
    resets: int = 0

    @property
    def empty(self) -> bool:
        return not self.events and not self.dead


@dataclass
class IngestReport:
    events: list[Event] = field(default_factory=list)
    inserted: int = 0
    dead: int = 0
    reclaimed: int = 0
    resets: int = 0
    opened: Opened = field(default_factory=Opened)


# Errors by which PostgreSQL refuses a row for what it holds (SQLSTATE class 22, data exception;
# class 23, integrity constraint violation): written alone and refused again, the entry is a
# dead letter. Every other error is not the row's: the batch is retried, never dead-lettered.
ROW_REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


def is_transient(error: BaseException) -> bool:
    """Whether `error` says PostgreSQL is unreachable or busy for now, not that a row is wrong:
    connection loss and timeouts, SQLSTATE classes 08 (connection), 53 (insufficient
    resources), 57 (operator intervention: shutdown, cancel), 40001 (serialization failure),
    40P01 (deadlock); Redis unreachable. Tells an outage from a bug in the logs; neither is
    dead-lettered."""
    if isinstance(
        error,
        OSError | asyncpg.InterfaceError | redis_errors.ConnectionError | redis_errors.TimeoutError,
    ):
        return True  # TimeoutError, refused connections; ConnectionDoesNotExist is class 08
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        return state[:2] in ("08", "53", "57") or state in ("40001", "40P01")
    return False


class StreamIngest:
    def __init__(
        self,
        redis: Redis,
        pool: asyncpg.Pool,
        streams: Sequence[str],
        consumer: str,
        *,
        batch_size: int = 1000,
        min_idle_ms: int = 30_000,
        cluster: bool = False,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._streams = list(streams)
        self._consumer = consumer
        self._batch_size = batch_size
        self._min_idle_ms = min_idle_ms
        self._cluster = cluster
        self._groups_ready = False
        # The newest entry this worker acknowledged, per stream: what a reset's log can name.
        self._last_acked: dict[str, bytes] = {}

    async def ensure_groups(self) -> None:
        if self._groups_ready:
            return
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
        self._groups_ready = True

    async def run_once(self) -> IngestReport:
        """Reclaim what dead consumers left, then read and store one batch per stream."""
        return await self.store(await self.fetch(reclaim=True))

    async def fetch(self, *, reclaim: bool) -> Batch:
        """Read (and parse) the next batch. `reclaim` also takes back this consumer's own
        unacknowledged entries and those other consumers left idle; a caller that stores one
        batch while fetching the next must not reclaim then, or it would take back its own
        batch in flight. A vanished consumer group is recreated (and counted) on the way."""
        try:
            return await self._fetch(reclaim=reclaim)
        except redis_errors.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
        resets = await self.recreate_lost_groups()
        batch = await self._fetch(reclaim=reclaim)
        batch.resets += resets
        return batch

    async def _fetch(self, *, reclaim: bool) -> Batch:
        await self.ensure_groups()
        entries = (await self._own_pending() + await self._reclaim()) if reclaim else []
        batch = Batch(reclaimed=len(entries))
        entries += await self._read_new()
        for stream, entry_id, fields in entries:
            try:
                batch.events.append(parse_entry(stream, entry_id, fields))
                batch.raw[(stream, entry_id)] = fields
            except (KeyError, ValueError, UnicodeDecodeError, OverflowError) as error:
                # OverflowError: a time stamp beyond what datetime can hold (`at` = 1e20).
                batch.dead.append((stream, entry_id, fields, f"malformed entry: {error!r}"))
        return batch

    async def recreate_lost_groups(self) -> int:
        """Create the consumer group again on every stream that lost it (Redis restarted
        without its data, or the stream was deleted), from the stream's first entry. Returns
        how many streams were reset, and logs what can be known of the gap: entries after
        the last one this worker ingested and before the new stream's first were in Redis and
        no worker stored them."""
        resets = 0
        for stream in self._streams:
            if await self._has_group(stream):
                continue
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
                continue  # another worker recreated it first, and reported it
            first: Any = await self._redis.xrange(stream, count=1)
            last = self._last_acked.get(stream)
            log.error(
                "stream_reset stream=%s: the consumer group %r was gone (Redis restarted "
                "without its data?) and was created again; last entry ingested by this worker: "
                "%s; first entry of the stream now: %s; activations written between them and "
                "not ingested are lost from the activation history",
                stream,
                GROUP,
                last.decode() if last else "none since this worker started",
                _text(first[0][0]) if first else "none yet (empty stream)",
            )
            resets += 1
        self._groups_ready = True
        return resets

    async def _has_group(self, stream: str) -> bool:
        groups = await self._groups_of(stream)
        return any(group["name"] in (GROUP, GROUP.encode()) for group in groups)

    async def _groups_of(self, stream: str) -> list[dict[str, Any]]:
        """XINFO GROUPS, empty for a stream that does not exist (yet, or any more)."""
        try:
            groups: list[dict[str, Any]] = await self._redis.xinfo_groups(stream)
        except redis_errors.ResponseError as error:
            if "no such key" in str(error).lower():
                return []
            raise
        return groups

    async def _read_new(self) -> list[Entry]:
        return await self._read_group(">")

    async def _own_pending(self) -> list[Entry]:
        """What this consumer read before and did not acknowledge (its pass failed): taken back
        at once, not after `min_idle_ms`, so ingestion resumes as soon as PostgreSQL answers."""
        entries = await self._read_group("0")
        deleted = [(stream, entry_id) for stream, entry_id, fields in entries if not fields]
        if deleted:  # no longer in the stream: nothing left to store
            await self._ack(deleted)
        return [entry for entry in entries if entry[2]]

    async def _read_group(self, start: str) -> list[Entry]:
        found: list[Entry] = []
        replies: Any
        if self._cluster:
            replies = []
            for stream in self._streams:
                replies += await self._redis.xreadgroup(
                    GROUP, self._consumer, {stream: start}, count=self._batch_size
                )
        else:
            replies = await self._redis.xreadgroup(
                GROUP, self._consumer, dict.fromkeys(self._streams, start), count=self._batch_size
            )
        for stream, items in replies or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            found += [(name, entry_id, fields or {}) for entry_id, fields in items]
        if start == ">":
            found = [entry for entry in found if entry[2]]
        return found

    async def _reclaim(self) -> list[Entry]:
        found: list[Entry] = []
        replies: list[Any]
        if self._cluster:
            replies = [
                await self._redis.xautoclaim(
                    stream, GROUP, self._consumer, self._min_idle_ms, "0-0", count=self._batch_size
                )
                for stream in self._streams
            ]
        else:
            # One round trip for every stream.
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream in self._streams:
                    pipe.xautoclaim(
                        stream,
                        GROUP,
                        self._consumer,
                        self._min_idle_ms,
                        "0-0",
                        count=self._batch_size,
                    )
                replies = await pipe.execute()
        for stream, reply in zip(self._streams, replies, strict=True):
            found += [(stream, entry_id, fields) for entry_id, fields in reply[1] if fields]
            for deleted in reply[2] if len(reply) > 2 else []:
                await self._redis.xack(stream, GROUP, deleted)
        return found

    async def store(self, batch: Batch, effects: BatchEffects | None = None) -> IngestReport:
        """Write one batch and what it opens (`effects`) in one transaction, then acknowledge
        it (never before the commit). A batch PostgreSQL refuses for a row's content is written
        one event at a time, and only the events refused alone become dead letters; any other
        error propagates with nothing acknowledged (the caller retries)."""
        report = IngestReport(reclaimed=batch.reclaimed, resets=batch.resets)
        events, dead = batch.events, list(batch.dead)
        if not events and not dead:
            return report
        try:
            await self._write(events, effects, report)
        except ROW_REFUSALS as refusal:
            log.warning("a batch of %d events was refused (%r): writing them one by one",
                        len(events), refusal)  # fmt: skip
            for event in events:
                try:
                    await self._write([event], effects, report)
                except ROW_REFUSALS as error:
                    fields = batch.raw.get((event.stream, event.entry_id), {})
                    dead.append((event.stream, event.entry_id, fields, repr(error)))
        if dead:
            await self._dead_letter(dead)
            report.dead += len(dead)
        await self._ack([(e.stream, e.entry_id) for e in events] + [(d[0], d[1]) for d in dead])
        return report

    async def _write(
        self, events: list[Event], effects: BatchEffects | None, report: IngestReport
    ) -> None:
        """One transaction; `report` counts it only once it committed."""
        if not events:
            return
        async with self._pool.acquire() as connection, connection.transaction():
            # The command tag ("INSERT 0 <rows>") counts the new rows; no RETURNING needed.
            status = await connection.execute(INSERT_EVENTS, *event_columns(events))
            await connection.execute(UPSERT_INSTALLATIONS, *installation_columns(events))
            opened = await effects(connection, events) if effects else Opened()
        report.inserted += int(status.rsplit(" ", 1)[-1])
        report.events += events
        report.opened.cases += opened.cases
        report.opened.leaks += opened.leaks

    async def _dead_letter(self, dead: list[tuple[str, bytes, dict[bytes, bytes], str]]) -> None:
        async with self._pool.acquire() as connection:
            await connection.executemany(
                "INSERT INTO dead_letters (stream, entry_id, fields, error) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (stream, entry_id) DO NOTHING",
                [
                    (
                        stream,
                        entry_id.decode(),
                        orjson.dumps(
                            {
                                k.decode(errors="replace"): v.decode(errors="replace")
                                for k, v in fields.items()
                            }
                        ).decode(),
                        error,
                    )
                    for stream, entry_id, fields, error in dead
                ],
            )
        log.warning("dead-lettered %d stream entries", len(dead))

    async def _ack(self, acked: list[tuple[str, bytes]]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id in acked:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            newest = max(ids, key=_id_tuple)
            known = self._last_acked.get(stream)
            if known is None or _id_tuple(newest) > _id_tuple(known):
                self._last_acked[stream] = newest
        if self._cluster:
            for stream, ids in by_stream.items():
                await self._redis.xack(stream, GROUP, *ids)
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, GROUP, *ids)
            await pipe.execute()

    async def trim(self) -> int:
        """Drop entries every group has acknowledged (XTRIM MINID below the oldest pending)."""
        removed = 0
        for stream in self._streams:
            floor = await self._safe_floor(stream)
            if floor is not None:
                removed += int(await self._redis.xtrim(stream, minid=floor, approximate=False))
        return removed

    async def forget_idle_consumers(self, max_idle_ms: int = 3_600_000) -> int:
        """Remove consumers (workers that stopped or died) idle for `max_idle_ms` with nothing
        pending: each worker process joins under its own name, so the group would otherwise
        grow with every restart. A consumer with pending entries stays until they are
        reclaimed."""
        removed = 0
        for stream in self._streams:
            try:
                consumers = await self._redis.xinfo_consumers(stream, GROUP)
            except redis_errors.ResponseError as error:
                if "NOGROUP" in str(error) or "no such key" in str(error).lower():
                    continue  # the next fetch recreates the group
                raise
            for consumer in consumers:
                name = consumer["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                idle = int(consumer["idle"])
                if name != self._consumer and not consumer["pending"] and idle >= max_idle_ms:
                    await self._redis.xgroup_delconsumer(stream, GROUP, name)
                    removed += 1
        return removed

    async def leave(self) -> int:
        """Remove this consumer from the group on every stream where it holds nothing pending
        (`fraud-worker --once` as it exits: each run joins under a name of its own, so the group
        would otherwise gain a consumer per run). Where it still holds entries (its pass failed)
        it stays, and another worker reclaims them. Returns how many streams it left."""
        left = 0
        for stream in self._streams:
            try:
                mine = await self._redis.xpending_range(
                    stream, GROUP, min="-", max="+", count=1, consumername=self._consumer
                )
            except redis_errors.ResponseError as error:
                if "NOGROUP" in str(error) or "no such key" in str(error).lower():
                    continue
                raise
            if not mine:
                await self._redis.xgroup_delconsumer(stream, GROUP, self._consumer)
                left += 1
        return left

    async def _safe_floor(self, stream: str) -> str | None:
        floors: list[tuple[int, int]] = []
        for group in await self._groups_of(stream):
            name = group["name"]
            pending = await self._redis.xpending(stream, name)
            if pending["pending"]:
                floors.append(_id_tuple(pending["min"]))
            else:
                last = _id_tuple(group["last-delivered-id"])
                floors.append((last[0], last[1] + 1))
        if not floors:
            return None
        low = min(floors)
        return f"{low[0]}-{low[1]}"

    async def lag(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acknowledged)."""
        waiting = pending = 0
        for stream in self._streams:
            for group in await self._groups_of(stream):
                if group["name"] in (GROUP, GROUP.encode()):
                    waiting += int(group.get("lag") or 0)
                    pending += int(group["pending"])
        return waiting, pending


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _id_tuple(raw: bytes | str) -> tuple[int, int]:
    text = _text(raw)
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
