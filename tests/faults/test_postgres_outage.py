"""Fault 1 (SPEC §9 "No data lost"): PostgreSQL stopped hard while activations keep arriving.

A PostgreSQL the test owns is stopped with `pg_ctl stop -m immediate` (its processes killed, no
checkpoint) for longer than the reclaim idle × MAX_DELIVERIES, while the real API
(`activation-server`) answers activations from its Redis license cache and a real
`fraud-worker` keeps trying to store them; then it is started again (crash recovery).

The reclaim idle is shortened to 0.5 s (INGEST_MIN_IDLE_MS): every reclaim of a pending entry
raises its delivery count, so an outage of 0.5 s × 5 = 2.5 s here exposes the entries to as
many redeliveries as a 2.5-minute outage does with the production default of 30 s.

Expected: every activation answered 200 is in `activation_events` (counted by the activation's
own hostname, unique per request: missing ones, not rows), 0 dead letters, ingestion resumes
within 10 s of PostgreSQL's return, and the backlog drains (nothing pending in the streams).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis

from fraud.ingest import GROUP
from tests.faults.owned import OwnedPostgres
from tests.faults.system import (
    Load,
    api_process,
    count,
    license_keys,
    prepare_database,
    stored_hostnames,
    worker_process,
)

MIN_IDLE_MS = 500
MAX_DELIVERIES = 5  # redeliveries the outage exposes each pending entry to (none dead-letters)
RESUME_WITHIN_S = 10.0
DRAIN_WITHIN_S = 60.0


async def pending_entries(redis_url: str, prefix: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        total = 0
        async for stream in client.scan_iter(match=f"{prefix}:*"):
            if await client.type(stream) == b"stream":
                for group in await client.xinfo_groups(stream):
                    if group["name"] == GROUP.encode():
                        total += int(group["pending"]) + int(group.get("lag") or 0)
        return total
    finally:
        await client.aclose()


async def test_postgres_stopped_hard_loses_and_dead_letters_nothing(
    owned_postgres: OwnedPostgres,
    shared_redis: tuple[str, str],
    tmp_path: Path,
    fault_scale: float,
) -> None:
    redis_url, prefix = shared_redis
    outage_s = max(6.0, 2.4 * MIN_IDLE_MS / 1000 * MAX_DELIVERIES) * fault_scale
    keys = license_keys(60, seed=17)
    await prepare_database(owned_postgres.url, keys)
    database = owned_postgres.url
    with (
        api_process(database, redis_url, prefix, tmp_path) as api,
        worker_process(
            database, redis_url, prefix, tmp_path, INGEST_MIN_IDLE_MS=str(MIN_IDLE_MS)
        ) as worker,
    ):
        load = Load(api.url, keys, rate=150 * fault_scale)
        loading = asyncio.create_task(load.run())
        await asyncio.sleep(3)  # every key answered (and its license cached) before the outage

        await asyncio.to_thread(owned_postgres.stop, mode="immediate")
        stopped_at = time.monotonic()
        await asyncio.sleep(outage_s)
        during = {a.hostname for a in load.answers if a.status == 200 and a.sent > stopped_at}
        await asyncio.to_thread(owned_postgres.start)
        started_at = time.monotonic()
        while not await stored_hostnames(database, during):
            assert time.monotonic() - started_at < 30, worker.log.read_text()[-3000:]
            await asyncio.sleep(0.1)
        resumed_s = time.monotonic() - started_at

        await asyncio.sleep(2 * fault_scale)
        load.stop()
        await loading
        accepted = load.accepted()
        drain_started = time.monotonic()
        missing = accepted - await stored_hostnames(database, accepted)
        while missing and time.monotonic() - drain_started < DRAIN_WITHIN_S:
            await asyncio.sleep(0.25)
            missing = accepted - await stored_hostnames(database, accepted)
        drained_s = time.monotonic() - drain_started
        dead = await count(database, "SELECT count(*) FROM dead_letters")
        left = await pending_entries(redis_url, prefix)
        worker_alive = worker.process.poll() is None

    summary = (
        f"{len(accepted)} activations answered 200 ({len(during)} during the {outage_s:.1f} s "
        f"outage; answers {dict(load.statuses())}), {len(missing)} missing from PostgreSQL, "
        f"{dead} dead letters, ingestion resumed {resumed_s:.1f} s after the restart, backlog "
        f"drained {drained_s:.1f} s after the load stopped, {left} entries left in the streams"
    )
    print("\n" + summary)
    assert worker_alive, summary
    assert len(during) > 0, summary
    assert dead == 0, summary
    assert not missing, summary
    assert resumed_s <= RESUME_WITHIN_S, summary
    assert left == 0, summary
