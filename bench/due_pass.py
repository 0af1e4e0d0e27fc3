"""An ordinary day's worker pass with many open cases and none due.

    .venv/bin/python bench/due_pass.py [--cases 1800] [--disabled-share 0.9] [--repeat 5]

Creates a fresh database `lic_duebench_<random>` (migrated with `activation-server migrate`)
and Redis prefix; `--cases` licenses, each with an open fraud case and two servers seen today
(so none falls back within its limit): a `--disabled-share` of the cases are in stage
disabled (their keys disabled by the ladder), the others in grace with their next check days
away. Then it times, median of `--repeat`:

- `pass`: `Worker.run_once()`, the whole pass `fraud-worker --once` runs (empty streams,
  the cache sweep, the cases due, M&S duties, retention, gauges, sending);
- `cases due`: `CaseRunner.evaluate_due(now)` alone, and how many cases it evaluated;
- `due, nothing to do`: every case not disabled made due, its servers still phoning home (the
  day a case's window check comes round): read, judged and rescheduled in bulk;
- `every open case`: every open case evaluated in full, each in its own locked transaction,
  what a pass costs when it evaluates each open case.

Drops the database and deletes the Redis keys of its prefix in every case. Environment:
BENCH_POSTGRES_URL (admin connection, default postgresql://postgres@127.0.0.1:5432/postgres),
BENCH_REDIS_URL (default REDIS_URL or redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

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
)

from activation.config import Settings  # noqa: E402
from activation.runtime import open_resources  # noqa: E402
from activation.store.keys import KeyLayout  # noqa: E402
from fraud.escalation import ladder_from_settings  # noqa: E402
from fraud.worker import Worker  # noqa: E402
from metrics import WorkerMetrics  # noqa: E402

SHARDS = 16


def say(message: str) -> None:
    print(f"[due-pass {time.strftime('%H:%M:%S')}] {message}", flush=True)


def keys(count: int) -> list[str]:
    return [
        "-".join("".join(secrets.choice(KEY_ALPHABET) for _ in range(5)) for _ in range(5))
        for _ in range(count)
    ]


async def seed(database_url: str, licenses: list[str], disabled: int, now: datetime) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        async with connection.transaction():
            customer = await connection.fetchval(
                "INSERT INTO customers (name, email) VALUES ('Bench Hosting', 'ops@bench.test')"
                " RETURNING id"
            )
            await connection.execute(
                """INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,
                                         max_servers, status)
                   SELECT k, $2, 'smartermail', 'perpetual', 'enterprise', $3, 1,
                          CASE WHEN n <= $4 THEN 'disabled' ELSE 'active' END
                   FROM unnest($1::text[]) WITH ORDINALITY AS t (k, n)""",
                licenses,
                customer,
                date(2026, 1, 5),
                disabled,
            )
            # Disabled cases ran the whole ladder 44 days ago at most; grace cases opened
            # ten days ago, their next check three days away.
            await connection.execute(
                """INSERT INTO fraud_cases (license_key, opened_at, stage, servers_active,
                                            servers_allowed, next_check_at)
                   SELECT k,
                          CASE WHEN n <= $2 THEN $3::timestamptz - interval '50 days'
                               ELSE $3::timestamptz - interval '10 days' END,
                          CASE WHEN n <= $2 THEN 'disabled' ELSE 'grace' END, 2, 1,
                          CASE WHEN n <= $2 THEN NULL
                               ELSE $3::timestamptz + interval '3 days' END
                   FROM unnest($1::text[]) WITH ORDINALITY AS t (k, n)""",
                licenses,
                disabled,
                now,
            )
            await connection.execute(
                """INSERT INTO case_steps (case_id, step, ran_at)
                   SELECT c.id, s, c.opened_at + interval '44 days'
                   FROM fraud_cases c, unnest(ARRAY['grace_over', 'reminder', 'disable']) AS s
                   WHERE c.stage = 'disabled'"""
            )
    finally:
        await connection.close()


def servers_seen(client: redis.Redis, layout: KeyLayout, licenses: list[str], at: float) -> None:
    pipe = client.pipeline(transaction=False)
    for key in licenses:
        pipe.zadd(layout.for_license(key, 0).installations, {"server-a": at, "server-b": at})
    pipe.execute()


async def timed(repeat: int, run: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    """Median seconds of `repeat` runs, and what the last run counted."""
    seconds, counted = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        counted = await run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), counted


async def measure(settings: Settings, repeat: int) -> None:
    ladder = ladder_from_settings(settings.grace_days, None)
    async with open_resources(settings, signing=False) as resources:
        worker = Worker(resources, ladder, {}, WorkerMetrics())
        for _ in range(5):  # the cache sweep writes the seeded licenses first
            await worker.run_once()
        open_cases = await resources.pool.fetchval(
            "SELECT count(*) FROM fraud_cases WHERE status = 'open'"
        )

        async def whole_pass() -> int:
            return (await worker.run_once()).cases.evaluated

        async def cases_due() -> int:
            return (await worker.cases.evaluate_due(await resources.clock.now())).evaluated

        async def due_with_nothing_to_do() -> int:
            await resources.pool.execute(
                """UPDATE fraud_cases SET next_check_at = now() - interval '1 second'
                   WHERE status = 'open' AND stage <> 'disabled'"""
            )
            return await cases_due()

        async def every_open_case() -> int:
            await resources.pool.execute(
                "UPDATE fraud_cases SET next_check_at = '-infinity' WHERE status = 'open'"
            )
            return await cases_due()

        seconds, evaluated = await timed(repeat, whole_pass)
        say(f"pass: {seconds:.3f} s with {open_cases} open cases, {evaluated} evaluated")
        seconds, evaluated = await timed(repeat, cases_due)
        say(f"cases due: {seconds:.3f} s, {evaluated} evaluated")
        seconds, evaluated = await timed(repeat, due_with_nothing_to_do)
        say(f"due, nothing to do (servers phoned home): {seconds:.3f} s, {evaluated} evaluated")
        seconds, evaluated = await timed(max(1, repeat // 2), every_open_case)
        per_case = seconds / evaluated * 1000 if evaluated else 0.0
        say(f"every open case: {seconds:.3f} s, {evaluated} evaluated ({per_case:.2f} ms each)")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1800)
    parser.add_argument("--disabled-share", type=float, default=0.9)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    admin_url = admin_postgres_url()
    redis_url = bench_redis_url()
    name = f"lic_duebench_{secrets.token_hex(4)}"
    prefix = f"duebench{secrets.token_hex(4)}"
    layout = KeyLayout(prefix, SHARDS, cluster=False)
    client = redis.Redis.from_url(redis_url)
    try:
        await common.create_database(admin_url, name)
        database_url = common.with_database(admin_url, name)
        await migrate(database_url, redis_url)
        licenses = keys(args.cases)
        now = datetime.now(UTC)
        disabled = round(args.cases * args.disabled_share)
        await seed(database_url, licenses, disabled, now)
        servers_seen(client, layout, licenses, (now - timedelta(hours=1)).timestamp())
        say(f"seeded {args.cases} open cases ({disabled} disabled) in {name}, prefix {prefix}")
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=prefix,
            stream_shards=SHARDS,
        )
        await measure(settings, args.repeat)
    finally:
        delete_redis_prefix(client, prefix)
        client.close()
        await drop_database(admin_url, name)


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
