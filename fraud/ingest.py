"""Durable ingest: the shard streams of activation events → PostgreSQL, exactly once.

- Redis Streams consumer group `ingest` over every shard stream; several workers share it.
- A batch is written in ONE PostgreSQL transaction (events `ON CONFLICT (event_id) DO NOTHING`,
  installations upserted) and acknowledged only after the commit: a crash before the ack means
  redelivery, and the unique event id makes the replay a no-op (at-least-once delivery,
  idempotent writes → exactly one row per acknowledged activation).
- Entries pending on a consumer that died are reclaimed after `min_idle_ms` (longer than the
  slowest normal batch) with XAUTOCLAIM.
- An entry that cannot be written (malformed, rejected by PostgreSQL on its own, or delivered
  more than `max_deliveries` times without being stored, whatever the reason) goes to the
  `dead_letters` table and is acknowledged, so it never blocks the rest.
- Streams are trimmed only below the oldest entry some group has not acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from fraud.ingest_sql import (
    INSERT_EVENTS,
    UPSERT_INSTALLATIONS,
    event_columns,
    installation_columns,
)

log = logging.getLogger(__name__)

GROUP = "ingest"


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 µs more per event
class Event:
    stream: str
    entry_id: bytes
    event_id: str
    op: str
    license_key: str
    fingerprint: str
    hostname: str
    version: str
    ip: str
    at: datetime
    servers_active: int
    servers_allowed: int
    recent_servers: int


DeadEntry = tuple[str, bytes, dict[bytes, bytes], str]


@dataclass
class Batch:
    events: list[Event] = field(default_factory=list)
    dead: list[DeadEntry] = field(default_factory=list)
    raw: dict[tuple[str, bytes], dict[bytes, bytes]] = field(default_factory=dict)
    reclaimed: int = 0

    @property
    def empty(self) -> bool:
        return not self.events and not self.dead


@dataclass
class IngestReport:
    events: list[Event] = field(default_factory=list)
    inserted: int = 0
    dead: int = 0
    reclaimed: int = 0


def parse_entry(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    # Positional and without helpers: this runs once per event on the ingest hot path.
    return Event(
        stream,
        entry_id,
        fields[b"id"].decode(),
        fields[b"op"].decode(),
        fields[b"key"].decode(),
        fields[b"fp"].decode(),
        fields[b"host"].decode(),
        fields[b"ver"].decode(),
        fields[b"ip"].decode(),
        datetime.fromtimestamp(float(fields[b"at"]), UTC),
        int(fields[b"active"]),
        int(fields[b"allowed"]),
        int(fields.get(b"recent", b"0")),
    )


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
        max_deliveries: int = 5,
        cluster: bool = False,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._streams = list(streams)
        self._consumer = consumer
        self._batch_size = batch_size
        self._min_idle_ms = min_idle_ms
        self._max_deliveries = max_deliveries
        self._cluster = cluster
        self._groups_ready = False

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
        """Read (and parse) the next batch. `reclaim` also takes over entries other consumers
        left idle; a caller that stores one batch while fetching the next must not reclaim
        then, or it would take back its own batch in flight."""
        await self.ensure_groups()
        entries = await self._reclaim() if reclaim else []
        batch = Batch(reclaimed=len(entries))
        if entries:
            entries = await self._set_aside_poison(entries, batch)
        entries += await self._read_new()
        for stream, entry_id, fields in entries:
            try:
                batch.events.append(parse_entry(stream, entry_id, fields))
                batch.raw[(stream, entry_id)] = fields
            except (KeyError, ValueError, UnicodeDecodeError, OverflowError) as error:
                # OverflowError: a time stamp beyond what datetime can hold (`at` = 1e20).
                batch.dead.append((stream, entry_id, fields, f"malformed entry: {error!r}"))
        return batch

    async def _read_new(self) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
        found: list[tuple[str, bytes, dict[bytes, bytes]]] = []
        replies: Any
        if self._cluster:
            replies = []
            for stream in self._streams:
                replies += await self._redis.xreadgroup(
                    GROUP, self._consumer, {stream: ">"}, count=self._batch_size
                )
        else:
            replies = await self._redis.xreadgroup(
                GROUP, self._consumer, dict.fromkeys(self._streams, ">"), count=self._batch_size
            )
        for stream, items in replies or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            found += [(name, entry_id, fields) for entry_id, fields in items if fields]
        return found

    async def _set_aside_poison(
        self, entries: list[tuple[str, bytes, dict[bytes, bytes]]], batch: Batch
    ) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
        """Reclaimed entries delivered `max_deliveries` times already failed every worker that
        took them (whatever the reason): they go to the dead letters instead of failing the
        next worker too."""
        counts: dict[tuple[str, bytes], int] = {}
        for stream in {stream for stream, _, _ in entries}:
            for pending in await self._redis.xpending_range(
                stream, GROUP, min="-", max="+", count=10_000, consumername=self._consumer
            ):
                entry = pending["message_id"]
                entry_id = entry if isinstance(entry, bytes) else str(entry).encode()
                counts[(stream, entry_id)] = int(pending["times_delivered"])
        keep = []
        for stream, entry_id, fields in entries:
            delivered = counts.get((stream, entry_id), 0)
            if delivered > self._max_deliveries:
                reason = f"delivered {delivered} times without being stored"
                batch.dead.append((stream, entry_id, fields, reason))
            else:
                keep.append((stream, entry_id, fields))
        return keep

    async def _reclaim(self) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
        found: list[tuple[str, bytes, dict[bytes, bytes]]] = []
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

    async def store(self, batch: Batch) -> IngestReport:
        """Write one batch in one transaction, then acknowledge it (never before the commit)."""
        report = IngestReport(reclaimed=batch.reclaimed)
        events, dead = batch.events, list(batch.dead)
        if not events and not dead:
            return report
        try:
            report.inserted += await self._write(events)
            report.events += events
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            # One bad event must not block the batch: write them one by one to find it.
            for event in events:
                try:
                    report.inserted += await self._write([event])
                    report.events.append(event)
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
                    fields = batch.raw.get((event.stream, event.entry_id), {})
                    dead.append((event.stream, event.entry_id, fields, repr(error)))
        if dead:
            await self._dead_letter(dead)
            report.dead += len(dead)
        await self._ack([(e.stream, e.entry_id) for e in events] + [(d[0], d[1]) for d in dead])
        return report

    async def _write(self, events: list[Event]) -> int:
        if not events:
            return 0
        async with self._pool.acquire() as connection, connection.transaction():
            # The command tag ("INSERT 0 <rows>") counts the new rows; no RETURNING needed.
            status = await connection.execute(INSERT_EVENTS, *event_columns(events))
            await connection.execute(UPSERT_INSTALLATIONS, *installation_columns(events))
            return int(status.rsplit(" ", 1)[-1])

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
            for consumer in await self._redis.xinfo_consumers(stream, GROUP):
                name = consumer["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                idle = int(consumer["idle"])
                if name != self._consumer and not consumer["pending"] and idle >= max_idle_ms:
                    await self._redis.xgroup_delconsumer(stream, GROUP, name)
                    removed += 1
        return removed

    async def _safe_floor(self, stream: str) -> str | None:
        floors: list[tuple[int, int]] = []
        for group in await self._redis.xinfo_groups(stream):
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
            for group in await self._redis.xinfo_groups(stream):
                if group["name"] in (GROUP, GROUP.encode()):
                    waiting += int(group.get("lag") or 0)
                    pending += int(group["pending"])
        return waiting, pending


def _id_tuple(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
