"""The worker crash test (SPEC §9 "No data lost"): activations keep coming while a real
`fraud-worker` process is killed with SIGKILL in the middle of its ingest, again and again.

Design:
- Each cycle starts `.venv/bin/fraud-worker` (a subprocess, its own consumer `<host>-<pid>`)
  with a small batch (INGEST_BATCH_SIZE=5 entries per stream per read, so a burst takes several
  batches) and a short reclaim idle (INGEST_MIN_IDLE_MS=200), and at the same time records a
  burst of activations through the real activation script (`store.activate`, which is what the
  API calls; an event counts as acknowledged when the script answered OK).
- As soon as the worker has committed its first rows of the cycle, it is SIGKILLed after a
  random 0-30 ms, with most of the burst still to go. Right after each kill the test reads the
  entries pending on the dead consumer (XPENDING): those were read but not acknowledged, i.e.
  the kill landed inside a batch. Cycles repeat (at least `KILLS`) until such a kill was seen.
- Finally a worker runs to the end (SIGTERM, graceful), and an in-process pass with min-idle 0
  checks that nothing is left.

Evidence: every acknowledged event id is in PostgreSQL exactly once (0 lost, 0 duplicated),
the entries in flight at the kills are among them, and no entry is pending any more: a dead
consumer never acknowledges, so each of those entries was redelivered (XAUTOCLAIM) to a later
consumer. The workers' own `reclaimed=N` log lines count the redeliveries too.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from activation.runtime import Resources
from activation.store.redis_store import Recorded
from fraud.ingest import GROUP, StreamIngest
from tests.faults.workers import worker_env
from tests.integration.helpers import (
    activation_requests,
    insert_licenses,
    license_keys,
    pending_total,
)

WORKER = Path(sys.executable).parent / "fraud-worker"
LICENSES = 150
BURST = 750  # activations per cycle
KILLS = 4  # at least this many SIGKILLs
MAX_CYCLES = 10
BATCH_SIZE = 5  # per stream and read: up to 80 entries a batch over 16 streams
MIN_IDLE_MS = 200


@dataclass
class CrashLog:
    acknowledged: list[str] = field(default_factory=list)
    kills: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)  # event id -> times delivered
    kills_mid_batch: int = 0
    logs: list[Path] = field(default_factory=list)


async def seed_licenses(resources: Resources, keys: list[str]) -> None:
    async with resources.pool.acquire() as connection, connection.transaction():
        await insert_licenses(connection, keys, "ops@crash.test", 2)


async def produce(resources: Resources, keys: list[str], count: int, into: list[str]) -> None:
    """`count` activations (two servers per license, within its limit) in concurrent chunks."""
    for _ in range(0, count, 50):
        requests = activation_requests(keys, 50)
        outcomes = await asyncio.gather(
            *(resources.store.activate(request, datetime.now(UTC)) for request in requests)
        )
        for request, outcome in zip(requests, outcomes, strict=True):
            assert isinstance(outcome, Recorded), outcome
            into.append(request.event_id)


def start_worker(resources: Resources, workdir: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = worker_env(
        resources.settings,
        workdir,
        INGEST_BATCH_SIZE=str(BATCH_SIZE),
        INGEST_MIN_IDLE_MS=str(MIN_IDLE_MS),
    )
    # The working directory is empty: no `.env` file is read.
    return subprocess.Popen(
        [str(WORKER), "--port", "0"], cwd=workdir, env=env, stdout=log, stderr=log
    )


def consumer_name(process: subprocess.Popen[bytes]) -> str:
    return f"{socket.gethostname()}-{process.pid}"


async def stored_count(resources: Resources) -> int:
    count: int = await resources.pool.fetchval("SELECT count(*) FROM activation_events")
    return count


async def wait_for_ingest(
    resources: Resources, process: subprocess.Popen[bytes], since: int, within: float = 15.0
) -> None:
    """Until the worker has committed rows beyond `since` (it is now working through a burst)."""
    deadline = time.monotonic() + within
    while await stored_count(resources) <= since:
        assert process.poll() is None, "the worker exited on its own"
        assert time.monotonic() < deadline, "the worker ingested nothing"
        await asyncio.sleep(0.002)


async def in_flight_of(resources: Resources, consumer: str) -> dict[str, int]:
    """Event id -> times delivered, of the entries read but not acknowledged by `consumer`."""
    found: dict[str, int] = {}
    for stream in resources.layout.streams():
        pending = await resources.redis.xpending_range(
            stream, GROUP, min="-", max="+", count=10_000, consumername=consumer
        )
        for entry in pending:
            entries = await resources.redis.xrange(stream, entry["message_id"], entry["message_id"])
            for _, fields in entries:
                found[fields[b"id"].decode()] = int(entry["times_delivered"])
    return found


def logged_reclaims(logs: list[Path]) -> int:
    return sum(
        int(match) for log in logs for match in re.findall(r"reclaimed=(\d+)", log.read_text())
    )


async def crash_cycles(
    resources: Resources, keys: list[str], workdir: Path, crash: CrashLog
) -> None:
    for cycle in range(MAX_CYCLES):
        if crash.kills >= KILLS and crash.kills_mid_batch > 0:
            return
        log_path = workdir / f"worker-{cycle}.log"
        crash.logs.append(log_path)
        with log_path.open("wb") as log:
            process = start_worker(resources, workdir, log)
            try:
                before = await stored_count(resources)
                producing = asyncio.create_task(produce(resources, keys, BURST, crash.acknowledged))
                await wait_for_ingest(resources, process, before)
                await asyncio.sleep(random.uniform(0.0, 0.03))
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                await producing
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        crash.kills += 1
        in_flight = await in_flight_of(resources, consumer_name(process))
        crash.in_flight.update(in_flight)
        crash.kills_mid_batch += bool(in_flight)


async def clean_run(resources: Resources, workdir: Path, crash: CrashLog) -> None:
    """A worker that is left alone drains everything (redeliveries included), then SIGTERM."""
    log_path = workdir / "worker-final.log"
    crash.logs.append(log_path)
    with log_path.open("wb") as log:
        process = start_worker(resources, workdir, log)
        try:
            deadline = time.monotonic() + 20
            while (
                await stored_count(resources) < len(set(crash.acknowledged))
                or await pending_total(resources) > 0
            ):
                assert process.poll() is None, log_path.read_text()
                if time.monotonic() > deadline:
                    break  # the in-process pass below shows what is missing
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


async def test_sigkilled_worker_loses_and_duplicates_nothing(
    resources: Resources, tmp_path: Path
) -> None:
    started = time.monotonic()
    keys = license_keys(LICENSES, random.Random(20260105))
    await seed_licenses(resources, keys)
    crash = CrashLog()

    await crash_cycles(resources, keys, tmp_path, crash)
    await clean_run(resources, tmp_path, crash)
    final = StreamIngest(
        resources.redis, resources.pool, resources.layout.streams(), "final", min_idle_ms=0
    )
    leftovers = await final.run_once()

    acknowledged = set(crash.acknowledged)
    rows = await resources.pool.fetch("SELECT event_id FROM activation_events")
    stored = [row["event_id"] for row in rows]
    redelivered = logged_reclaims(crash.logs) + leftovers.reclaimed
    print(
        f"\n{len(acknowledged)} acknowledged activations, {len(stored)} rows, "
        f"{crash.kills} SIGKILLs ({crash.kills_mid_batch} mid-batch, "
        f"{len(crash.in_flight)} entries in flight at the kills, "
        f"max times delivered {max(crash.in_flight.values(), default=0)}), "
        f"{redelivered} redeliveries logged, final pass {leftovers.inserted} inserted / "
        f"{leftovers.reclaimed} reclaimed, {time.monotonic() - started:.1f} s"
    )

    assert len(acknowledged) == len(crash.acknowledged) >= KILLS * BURST
    assert crash.kills >= KILLS
    # 0 lost, 0 duplicated: exactly one row per acknowledged activation, and no other row.
    assert len(stored) == len(set(stored)) == len(acknowledged)
    assert set(stored) == acknowledged
    # The kills landed inside batches, and those entries were redelivered and stored once.
    assert crash.kills_mid_batch > 0
    assert crash.in_flight
    assert set(crash.in_flight) <= set(stored)
    assert await pending_total(resources) == 0
    assert redelivered > 0
    # The clean worker did the catching up; the last pass found nothing left behind.
    assert (leftovers.inserted, len(leftovers.events)) == (0, 0)
    assert await resources.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    installations = await resources.pool.fetchval("SELECT count(*) FROM installations")
    servers = await resources.pool.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT license_key, fingerprint FROM activation_events) s"
    )
    assert installations == servers
