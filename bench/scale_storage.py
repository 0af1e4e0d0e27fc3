"""PostgreSQL at scale: bytes per phone-home, installation rows rewritten in place, dashboard p50.

    .venv/bin/python bench/scale_storage.py [--installations 22500] [--days 10]
                                            [--calls-per-day 1] [--events 1000000]
                                            [--fillfactor N]

In a fresh database `lic_sbench_<random>` (migrated with `activation-server migrate`):

1. **Phone-homes.** `--installations` servers (one license each) phone home
   `--calls-per-day` times a day (at random moments) for `--days` days; the events go through
   the ingest's own statements (`fraud.ingest_sql`: the event insert and the installations
   upsert) in batches of 1000, one transaction each, as the worker writes them. After each
   day: `installations` size, live and dead tuples, updates and HOT updates
   (pg_stat_user_tables; autovacuum runs as the server is configured); at the end the bytes
   per event and per installation, indexes included.
   `--fillfactor` overrides the installations table's fill factor before the run.
2. **Dashboard.** `activation_events` filled to `--events` rows over 45 days with
   generate_series; then the console dashboard's figures (`fraud.console.dashboard.figures`)
   and, for comparison, the per-day count straight from the events (what a dashboard without
   the roll-up does) are timed 30 times each; p50 and p90 printed.

Drops the database in every case. BENCH_POSTGRES_URL: admin connection (default
postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    admin_postgres_url,
    create_database,
    drop_database,
    migrate,
    with_database,
)

from fraud.console.dashboard import figures  # noqa: E402
from fraud.ingest_sql import INSERT_EVENTS, UPSERT_INSTALLATIONS  # noqa: E402

START = datetime(2026, 10, 20, tzinfo=UTC)
BATCH = 1000
SCAN_PER_DAY = """SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
FROM activation_events WHERE kind = 'activation' AND occurred_at >= $1 AND occurred_at <= $2
GROUP BY day"""


async def table_stats(conn: asyncpg.Connection, table: str) -> dict[str, Any]:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await asyncio.sleep(1.2)  # the statistics are shared at most once a second
    row = await conn.fetchrow(
        """SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,
                  pg_relation_size(relid) AS heap, pg_total_relation_size(relid) AS total
           FROM pg_stat_user_tables WHERE relname = $1""",
        table,
    )
    return dict(row)


async def events_bytes(conn: asyncpg.Connection) -> tuple[int, int]:
    """(rows, bytes with indexes) of activation_events over all its partitions."""
    row = await conn.fetchrow(
        """SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) AS total,
                  (SELECT count(*) FROM activation_events) AS n
           FROM pg_inherits WHERE inhparent = 'activation_events'::regclass"""
    )
    return row["n"], row["total"]


def day_events(servers: int, day: int, per_day: int, rng: random.Random) -> list[tuple[int, float]]:
    """(server, epoch seconds) of one day's phone-homes, in time order."""
    base = (START + timedelta(days=day)).timestamp()
    calls = [
        (server, base + rng.uniform(0, 86_400)) for server in range(servers) for _ in range(per_day)
    ]
    return sorted(calls, key=lambda call: call[1])


async def phone_homes(conn: asyncpg.Connection, servers: int, days: int, per_day: int) -> None:
    await conn.execute(
        """INSERT INTO customers (id, name, email) VALUES (1, 'Bench', 'bench@example.com');
           INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on)
           SELECT 'SCALE-' || n, 1, 'smartermail', 'perpetual', 'enterprise', '2026-01-01'
           FROM generate_series(0, $1 - 1) AS n""".replace("$1", str(servers))
    )
    rng = random.Random(7)
    print(
        f"phone-homes: {servers:,} servers, {per_day} a day each for {days} days, "
        f"batches of {BATCH}"
    )
    print("  day  events/s  installations: heap MB  live  dead  updated  HOT  autovacuums")
    for day in range(days):
        await conn.execute("SELECT activation_events_prepare($1)", START + timedelta(days=day + 1))
        calls = day_events(servers, day, per_day, rng)
        started = time.perf_counter()
        for offset in range(0, len(calls), BATCH):
            await store_batch(conn, calls[offset : offset + BATCH], day)
        rate = len(calls) / (time.perf_counter() - started)
        stats = await table_stats(conn, "installations")
        print(
            f"  {day + 1:>3}  {rate:>8,.0f}  {stats['heap'] / 2**20:>21.2f}  "
            f"{stats['n_live_tup']:>5}  {stats['n_dead_tup']:>5}  {stats['n_tup_upd']:>7}  "
            f"{stats['n_tup_hot_upd']:>5}  {stats['autovacuum_count']:>11}"
        )
    rows, total = await events_bytes(conn)
    stats = await table_stats(conn, "installations")
    print(
        f"  activation_events: {rows:,} rows, {total / 2**20:,.1f} MiB with indexes = "
        f"{total / max(rows, 1):,.0f} B per phone-home"
    )
    print(
        f"  installations: {stats['n_live_tup']:,} rows, {stats['total'] / 2**20:,.2f} MiB "
        f"with indexes = {stats['total'] / max(stats['n_live_tup'], 1):,.0f} B per installation"
    )


async def store_batch(conn: asyncpg.Connection, calls: list[tuple[int, float]], day: int) -> None:
    """One batch as `fraud.ingest.StreamIngest.store` writes it."""
    n = len(calls)
    async with conn.transaction():
        await conn.execute(
            INSERT_EVENTS, [f"{day}-{server}-{secrets.token_hex(4)}" for server, _ in calls],
            [f"SCALE-{server}" for server, _ in calls], ["activation"] * n,
            [f"{server:064x}" for server, _ in calls],
            [f"mail{server}.example.com" for server, _ in calls], ["198.51.100.7"] * n,
            ["16.3.6989"] * n, [stamp for _, stamp in calls],
        )  # fmt: skip
        # One row per server and batch, first and last call, as `installation_columns` makes.
        seen: dict[int, tuple[float, float]] = {}
        for server, stamp in calls:
            first, last = seen.get(server, (stamp, stamp))
            seen[server] = (min(first, stamp), max(last, stamp))
        order = sorted(seen, key=lambda server: (f"SCALE-{server}", f"{server:064x}"))
        await conn.execute(
            UPSERT_INSTALLATIONS,
            [f"SCALE-{s}" for s in order], [f"{s:064x}" for s in order],
            [f"mail{s}.example.com" for s in order], ["198.51.100.7"] * len(order),
            ["16.3.6989"] * len(order), [seen[s][0] for s in order], [seen[s][1] for s in order],
            [None] * len(order),
        )  # fmt: skip


async def dashboard(conn: asyncpg.Connection, events: int) -> None:
    await conn.execute("TRUNCATE activation_events")
    for month in range(3):
        await conn.execute(
            "SELECT activation_events_prepare($1)", START + timedelta(days=31 * month)
        )
    started = time.perf_counter()
    await conn.execute(
        f"""INSERT INTO activation_events (event_id, license_key, kind, fingerprint, hostname,
                ip, version, occurred_at)
            SELECT md5(n::text), 'SCALE-' || (n % 22500), 'activation', md5((n % 22500)::text),
                   'mail' || (n % 22500) || '.example.com', '198.51.100.7', '16.3.6989',
                   $1::timestamptz + (n::float8 / {events}) * interval '45 days'
            FROM generate_series(1, {events}) AS n""",
        START,
    )
    await conn.execute("ANALYZE activation_events")
    seeded = time.perf_counter() - started
    print(f"dashboard: {events:,} events over 45 days, seeded in {seeded:.0f} s")
    now = START + timedelta(days=45)
    first = datetime.combine((now - timedelta(days=13)).date(), datetime.min.time(), tzinfo=UTC)

    async def timed(label: str, run: Any) -> None:
        samples = []
        for _ in range(30):
            started = time.perf_counter()
            await run()
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        print(f"  {label}: p50 {statistics.median(samples):.2f} ms, p90 {samples[26]:.2f} ms")

    await timed("dashboard figures (roll-up)", lambda: figures(conn, now))
    await timed("per-day count from the events", lambda: conn.fetch(SCAN_PER_DAY, first, now))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--installations", type=int, default=22_500)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--calls-per-day", type=int, default=1)
    parser.add_argument("--fillfactor", type=int, default=None)
    args = parser.parse_args()
    admin_url = admin_postgres_url()
    name = f"lic_sbench_{secrets.token_hex(4)}"
    database_url = with_database(admin_url, name)
    await create_database(admin_url, name)
    try:
        await migrate(database_url, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        conn = await asyncpg.connect(database_url)
        try:
            if args.fillfactor is not None:
                await conn.execute(
                    f"ALTER TABLE installations SET (fillfactor = {args.fillfactor})"
                )
            if args.days > 0:
                await phone_homes(conn, args.installations, args.days, args.calls_per_day)
            if args.events > 0:
                await dashboard(conn, args.events)
        finally:
            await conn.close()
    finally:
        await drop_database(admin_url, name)


if __name__ == "__main__":
    asyncio.run(main())
