"""Worker ingest throughput: activation events/s from the Redis shard streams into PostgreSQL.

    .venv/bin/python bench/worker_bench.py [--events 200000] [--licenses 10000]
                                           [--batch-size 1000] [--modes ingest,worker]

Creates a fresh database `lic_wbench_<random>` (migrated with `activation-server migrate`),
inserts `--licenses` perpetual licenses in one statement (5% of them with a second server and
`max_servers` 2, so no event is over its limit), and pre-fills the 16 shard streams of a fresh
Redis prefix with `--events` phone-home events in exactly the format activate.lua writes
(fields id, op, key, fp, host, ver, ip, at, active, allowed, recent; one license, one stream).
Then, per mode, one consumer drains the streams and the wall time is measured:

- `ingest`: `StreamIngest.run_once()` in a loop (read, one PostgreSQL transaction, XACK).
- `worker`: `Worker.drain_streams()`, the real worker's loop (the same plus case opening and
  metrics per batch, and the next batch read and parsed while PostgreSQL commits the current
  one; batch latency is the store step). Before it, the group is rewound and the tables are
  emptied, so both modes ingest the same entries.

`--batch-size` is StreamIngest's: entries per stream per read, so one batch holds up to
16 x batch-size entries. Prints events/s, batches and per-batch latency; writes
build/worker_bench.json. Drops the database and deletes the Redis keys of its prefix in every
case. Environment: BENCH_POSTGRES_URL (admin connection, default
postgresql://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL (default REDIS_URL or
redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (bench/ is on sys.path when run as a script)
from common import (  # noqa: E402
    KEY_ALPHABET,
    admin_postgres_url,
    bench_redis_url,
    delete_redis_prefix,
    drop_database,
    migrate,
    with_database,
)

from activation.config import Settings  # noqa: E402
from activation.runtime import open_resources  # noqa: E402
from activation.store.keys import KeyLayout  # noqa: E402
from fraud.escalation import ladder_from_settings  # noqa: E402
from fraud.ingest import GROUP, StreamIngest  # noqa: E402
from fraud.worker import PassReport, Worker  # noqa: E402
from metrics import WorkerMetrics  # noqa: E402

BUILD = ROOT / "build"
SHARDS = 16
SECOND_SERVER_SHARE = 0.05
TARGET_EVENTS_PER_SECOND = 20_000


def say(message: str) -> None:
    print(f"[worker-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- fixture


def make_licenses(count: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    """(key, fingerprints) per license; a few run a second server."""
    licenses = []
    for _ in range(count):
        key = "-".join("".join(rng.choices(KEY_ALPHABET, k=5)) for _ in range(5))
        servers = [f"srv-{secrets.token_hex(6)}"]
        if rng.random() < SECOND_SERVER_SHARE:
            servers.append(f"srv-{secrets.token_hex(6)}")
        licenses.append((key, servers))
    return licenses


async def create_database(admin_url: str, redis_url: str, name: str) -> str:
    await common.create_database(admin_url, name)
    url = with_database(admin_url, name)
    await migrate(url, redis_url)
    return url


async def seed(database_url: str, licenses: list[tuple[str, list[str]]]) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        async with connection.transaction():
            customer = await connection.fetchval(
                "INSERT INTO customers (name, email) VALUES ('Bench Hosting', 'ops@bench.test')"
                " RETURNING id"
            )
            await connection.execute(
                """
                INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,
                                      max_servers)
                SELECT k, $3, 'smartermail', 'perpetual', 'enterprise', $4, n
                FROM unnest($1::text[], $2::int[]) AS t (k, n)
                """,
                [key for key, _ in licenses],
                [len(servers) for _, servers in licenses],
                customer,
                date(2026, 1, 5),
            )
    finally:
        await connection.close()


def prefill(
    client: redis.Redis,
    layout: KeyLayout,
    licenses: list[tuple[str, list[str]]],
    events: int,
    rng: random.Random,
) -> None:
    """`events` stream entries, field for field what activate.lua XADDs."""
    start = datetime.now(UTC).timestamp() - events / 1000
    pipe = client.pipeline(transaction=False)
    for n in range(events):
        key, servers = licenses[rng.randrange(len(licenses))]
        fingerprint = rng.choice(servers)
        pipe.xadd(
            layout.for_license(key, 0).stream,
            {
                "id": os.urandom(16).hex(),
                "op": "a",
                "key": key,
                "fp": fingerprint,
                "host": f"{fingerprint}.mail.example.com",
                "ver": "16.3.6989",
                "ip": f"198.51.{n % 250}.{n % 200 + 1}",
                "at": repr(start + n / 1000),
                "active": len(servers),
                "allowed": len(servers),
                "recent": len(servers),
            },
        )
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


# --------------------------------------------------------------------------- measuring


def summary(
    mode: str, expected: int, stored: int, seconds: float, latencies: list[float], sizes: list[int]
) -> dict[str, Any]:
    ordered = sorted(latencies) or [0.0]

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000

    return {
        "mode": mode,
        "events": expected,
        "rows_stored": stored,
        "seconds": round(seconds, 3),
        "events_per_second": round(stored / seconds) if seconds else 0,
        "batches": len(latencies),
        "events_per_batch_mean": round(statistics.fmean(sizes)) if sizes else 0,
        "batch_ms_p50": round(pct(0.50), 2),
        "batch_ms_p95": round(pct(0.95), 2),
        "batch_ms_max": round(pct(1.0), 2),
        "batch_ms_mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0,
    }


async def run_ingest(
    settings: Settings, layout: KeyLayout, batch_size: int
) -> tuple[float, list[float], list[int]]:
    assert settings.database_url is not None and settings.redis_url is not None
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        ingest = StreamIngest(client, pool, layout.streams(), "bench", batch_size=batch_size)
        await ingest.ensure_groups()
        latencies: list[float] = []
        sizes: list[int] = []
        started = time.perf_counter()
        while True:
            before = time.perf_counter()
            report = await ingest.run_once()
            if not report.events and not report.dead:
                break
            latencies.append(time.perf_counter() - before)
            sizes.append(len(report.events) + report.dead)
        return time.perf_counter() - started, latencies, sizes
    finally:
        await client.aclose()
        await pool.close()


async def run_worker(settings: Settings, batch_size: int) -> tuple[float, list[float], list[int]]:
    ladder = ladder_from_settings(settings.grace_days, None)
    async with open_resources(settings, signing=False) as resources:
        worker = Worker(resources, ladder, {}, WorkerMetrics(), batch_size=batch_size)
        latencies: list[float] = []
        sizes: list[int] = []
        original = worker.ingest.store

        async def timed(batch: Any, effects: Any = None) -> Any:
            before = time.perf_counter()
            report = await original(batch, effects)
            if report.events or report.dead:
                latencies.append(time.perf_counter() - before)
                sizes.append(len(report.events) + report.dead)
            return report

        worker.ingest.store = timed  # type: ignore[method-assign]
        started = time.perf_counter()
        await worker.drain_streams(PassReport())
        return time.perf_counter() - started, latencies, sizes


async def rewind(client: redis.Redis, layout: KeyLayout, database_url: str) -> None:
    for stream in layout.streams():
        client.xgroup_setid(stream, GROUP, "0")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("TRUNCATE activation_events, installations, fraud_cases CASCADE")
    finally:
        await connection.close()


async def stored_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM activation_events")
        return count
    finally:
        await connection.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    admin_url = admin_postgres_url()
    redis_url = bench_redis_url()
    name = f"lic_wbench_{secrets.token_hex(4)}"
    prefix = f"wbench{secrets.token_hex(4)}"
    layout = KeyLayout(prefix, SHARDS, cluster=False)
    client = redis.Redis.from_url(redis_url)
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    try:
        say(f"creating database {name}")
        database_url = await create_database(admin_url, redis_url, name)
        licenses = make_licenses(args.licenses, rng)
        await seed(database_url, licenses)
        say(f"seeded {len(licenses)} licenses; pre-filling {args.events} events ({prefix})")
        started = time.perf_counter()
        prefill(client, layout, licenses, args.events, rng)
        say(f"pre-filled in {time.perf_counter() - started:.1f} s")
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=prefix,
            stream_shards=SHARDS,
            hot_redis_client="redis-py",
        )
        for index, mode in enumerate(args.modes):
            if index:
                await rewind(client, layout, database_url)
            say(f"draining with one consumer, mode {mode}, batch size {args.batch_size}")
            if mode == "ingest":
                seconds, latencies, sizes = await run_ingest(settings, layout, args.batch_size)
            else:
                seconds, latencies, sizes = await run_worker(settings, args.batch_size)
            stored = await stored_rows(database_url)
            result = summary(mode, args.events, stored, seconds, latencies, sizes)
            results.append(result)
            say(
                f"{mode}: {result['events_per_second']:,} events/s "
                f"({stored} rows in {seconds:.2f} s, {result['batches']} batches of "
                f"~{result['events_per_batch_mean']} events, batch p50 "
                f"{result['batch_ms_p50']} ms / p95 {result['batch_ms_p95']} ms / max "
                f"{result['batch_ms_max']} ms)"
            )
            if stored != args.events:
                raise RuntimeError(f"{mode}: stored {stored} rows, expected {args.events}")
    finally:
        removed = delete_redis_prefix(client, prefix)
        client.close()
        await drop_database(admin_url, name)
        say(f"dropped {name}, deleted {removed} Redis keys")
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "config": {
            "events": args.events,
            "licenses": args.licenses,
            "batch_size_per_stream": args.batch_size,
            "streams": SHARDS,
        },
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--licenses", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--modes", default="ingest,worker")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("ingest", "worker") for m in args.modes) or not args.modes:
        parser.error("--modes takes ingest and/or worker")
    if min(args.events, args.licenses, args.batch_size) < 1:
        parser.error("--events, --licenses and --batch-size need positive values")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as fraud-worker runs
        report = runner.run(bench(args))
    BUILD.mkdir(exist_ok=True)
    (BUILD / "worker_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    best = max(r["events_per_second"] for r in report["results"])
    verdict = "meets" if best >= TARGET_EVENTS_PER_SECOND else "misses"
    say(
        f"wrote build/worker_bench.json; {verdict} the {TARGET_EVENTS_PER_SECOND:,} events/s target"
    )


if __name__ == "__main__":
    main()
