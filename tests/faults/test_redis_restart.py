"""Fault 2 (SPEC §9 "No data lost", §5 "503 when Redis is unreachable"): the Redis of the hot
path and of the event streams killed with SIGKILL under load, then started again.

A redis-server the test owns runs with AOF `appendfsync everysec`, as deploy/ runs it. The real
API (`activation-server`) answers activations at a steady rate and a real `fraud-worker` ingests
them into a PostgreSQL the test owns. Redis is SIGKILLed, left down for a second, and started:

- with its data (the AOF): the API answers only 200, or 503 with Retry-After while Redis is
  away (never a 500, never a dropped connection) and answers 200 again within 5 s; no activation
  answered 200 is missing from PostgreSQL except those answered within the AOF window before the
  kill (`everysec`: up to 2 s of writes when the disk is slow; measured and printed);
- empty (its volume lost): the same for the API, and the worker (the same process, never
  restarted) detects the lost consumer group, reports the gap (`stream_resets_total`, a
  `stream_reset` log line naming the last entry it ingested and the new stream's first) and
  stores every activation answered after the restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from tests.faults.owned import OwnedPostgres, OwnedRedis
from tests.faults.system import (
    Load,
    api_process,
    license_keys,
    prepare_database,
    stored_hostnames,
    worker_process,
)

AOF_WINDOW_S = 2.0  # appendfsync everysec: at most 2 s of writes lost (Redis docs, slow disk)
RECOVER_WITHIN_S = 5.0
DOWN_S = 1.0
DRAIN_WITHIN_S = 30.0
PREFIX = "fault"


async def drain(database: str, wanted: set[str]) -> set[str]:
    """Waits (at most DRAIN_WITHIN_S) until `wanted` is stored; returns what is still missing."""
    deadline = time.monotonic() + DRAIN_WITHIN_S
    missing = wanted - await stored_hostnames(database, wanted)
    while missing and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        missing = missing - await stored_hostnames(database, missing)
    return missing


@dataclass
class Outcome:
    load: Load
    killed_at: float
    restarted_at: float
    missing: set[str]  # answered 200, not in PostgreSQL after the drain
    worker_alive: bool  # the worker started before the kill is still running
    resets: float | None  # its stream_resets_total (None: not exported, or it died)
    logged: list[str]  # its stream_reset log lines


async def kill_and_restart(
    owned_postgres: OwnedPostgres,
    owned_redis: OwnedRedis,
    tmp_path: Path,
    fault_scale: float,
    *,
    keep_data: bool,
) -> Outcome:
    """Runs the load, kills Redis, restarts it, lets the worker drain (see Outcome)."""
    keys = license_keys(60, seed=23)
    await prepare_database(owned_postgres.url, keys)
    database, redis_url = owned_postgres.url, owned_redis.url
    with (
        api_process(database, redis_url, PREFIX, tmp_path) as api,
        worker_process(database, redis_url, PREFIX, tmp_path) as worker,
    ):
        pid = worker.process.pid
        load = Load(api.url, keys, rate=150 * fault_scale)
        loading = asyncio.create_task(load.run())
        await asyncio.sleep(3 * fault_scale)
        await asyncio.to_thread(owned_redis.kill)
        killed_at = time.monotonic()
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(owned_redis.start, keep_data=keep_data)
        restarted_at = time.monotonic()
        await asyncio.sleep(max(RECOVER_WITHIN_S + 1, 4 * fault_scale))
        load.stop()
        await loading
        missing = await drain(database, load.accepted())
        alive = worker.process.poll() is None and worker.process.pid == pid
        resets = await asyncio.to_thread(worker.metric, "stream_resets_total") if alive else None
        logged = [line for line in worker.log.read_text().splitlines() if "stream_reset" in line]
        return Outcome(load, killed_at, restarted_at, missing, alive, resets, logged)


def api_summary(load: Load, killed_at: float, restarted_at: float) -> tuple[str, float, int]:
    """A sentence on the API's answers, the seconds from the restart to the last answer that
    was not 200, and the number of answers that were neither 200 nor 503 with Retry-After."""
    statuses = load.statuses()
    bad = [a for a in load.answers if not (a.status == 200 or (a.status == 503 and a.retry_after))]
    not_ok = [a.answered for a in load.answers if a.status != 200]
    recovered_s = max(not_ok) - restarted_at if not_ok else 0.0
    text = (
        f"answers {dict(statuses)} ({len(bad)} neither 200 nor 503 with Retry-After, "
        f"{statuses.get(500, 0)} × 500), Redis down {restarted_at - killed_at:.1f} s, last "
        f"non-200 answer {recovered_s:.1f} s after the restart"
    )
    return text, recovered_s, len(bad)


async def test_redis_killed_and_restarted_with_its_aof(
    owned_postgres: OwnedPostgres, owned_redis: OwnedRedis, tmp_path: Path, fault_scale: float
) -> None:
    outcome = await kill_and_restart(
        owned_postgres, owned_redis, tmp_path, fault_scale, keep_data=True
    )
    load, killed_at, restarted_at = outcome.load, outcome.killed_at, outcome.restarted_at
    missing, alive = outcome.missing, outcome.worker_alive
    api, recovered_s, bad = api_summary(load, killed_at, restarted_at)
    by_host = {a.hostname: a for a in load.answers}
    ages = sorted(killed_at - by_host[host].answered for host in missing)
    beyond_window = [age for age in ages if age > AOF_WINDOW_S]
    after = [a for a in load.answers if a.status == 200 and a.sent > restarted_at]
    summary = (
        f"{len(load.accepted())} activations answered 200 ({len(after)} after the restart); "
        f"{api}; {len(missing)} answered "
        f"activations missing from PostgreSQL (answered {ages[:5]} s before the kill), "
        f"{len(beyond_window)} of them older than the {AOF_WINDOW_S:.0f} s AOF window"
    )
    print("\n" + summary)
    assert bad == 0, summary
    assert after and recovered_s <= RECOVER_WITHIN_S, summary
    assert not beyond_window, summary
    assert alive, summary


async def test_redis_back_empty_reports_the_gap_and_ingestion_goes_on(
    owned_postgres: OwnedPostgres, owned_redis: OwnedRedis, tmp_path: Path, fault_scale: float
) -> None:
    outcome = await kill_and_restart(
        owned_postgres, owned_redis, tmp_path, fault_scale, keep_data=False
    )
    load, killed_at, restarted_at = outcome.load, outcome.killed_at, outcome.restarted_at
    missing, alive, resets, logged = (
        outcome.missing,
        outcome.worker_alive,
        outcome.resets,
        outcome.logged,
    )
    api, recovered_s, bad = api_summary(load, killed_at, restarted_at)
    after = {a.hostname for a in load.answers if a.status == 200 and a.sent > restarted_at}
    lost_after = missing & after
    summary = (
        f"{len(load.accepted())} activations answered 200 ({len(after)} after the restart); "
        f"{api}; {len(missing) - len(lost_after)} answered before the kill lost with Redis's "
        f"data (the reported gap), {len(lost_after)} answered after the restart missing from "
        f"PostgreSQL; worker still the same process: {alive}; stream_resets_total {resets}; "
        f"{len(logged)} stream_reset log lines, e.g. {logged[:1]}"
    )
    print("\n" + summary)
    assert bad == 0, summary
    assert recovered_s <= RECOVER_WITHIN_S, summary
    assert alive, summary
    assert after and not lost_after, summary
    assert resets is not None and resets >= 1, summary
    assert logged and "last entry ingested by this worker" in logged[0], summary
