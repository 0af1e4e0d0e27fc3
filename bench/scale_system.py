"""The system under `bench/scale.py`: a fresh database and Redis prefix, `activation-server`
and `fraud-worker` processes, and what they hold afterwards (Redis bytes by kind, PostgreSQL
bytes per phone-home)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    VENV_BIN,
    admin_postgres_url,
    bench_redis_url,
    create_database,
    delete_redis_prefix,
    drop_database,
    migrate,
    with_database,
)

TOKEN = "scale-bench-admin-token-0123456789"
WEBHOOK_SECRET = "whsec_c2NhbGUtYmVuY2gtc2VjcmV0LTAxMjM0NTY3ODk="


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class System:
    database_url: str
    redis_url: str
    prefix: str
    env: dict[str, str]
    public: str
    admin: str
    workdir: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def run_once(self) -> tuple[float, dict[str, Any]]:
        """One cron pass in its own process (`scale_once.py`: `fraud-worker --once` timed from
        inside): wall seconds with the process start, and the pass's own report."""
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "python"), str(Path(__file__).with_name("scale_once.py")),
            env=self.env, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"fraud-worker pass failed: {err.decode()[-2000:]}")
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return time.perf_counter() - started, report

    @asynccontextmanager
    async def worker_loop(self) -> AsyncIterator[str]:
        """`fraud-worker` in loop mode; yields its metrics URL."""
        port = free_port()
        log = (self.workdir / "worker.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "fraud-worker"), "--port", str(port), env=self.env, cwd=self.workdir,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            await _wait_http(url, process)
            yield url
        finally:
            process.terminate()
            await process.wait()
            log.close()


async def _wait_http(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if process.returncode is not None:
                raise RuntimeError(f"{url}: process exited {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not answering")


@asynccontextmanager
async def started(extra_env: dict[str, str]) -> AsyncIterator[System]:
    """A fresh database (migrated) and Redis prefix, `activation-server` on free ports; all
    removed afterwards."""
    admin_url = admin_postgres_url()
    redis_url = bench_redis_url()
    name, prefix = f"lic_scale_{secrets.token_hex(4)}", f"scale{secrets.token_hex(4)}"
    database_url = with_database(admin_url, name)
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    public_port, admin_port = free_port(), free_port()
    env = os.environ | {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
        "SIGNING_KEY_FILE": str(workdir / "signing-key.pem"), "DEV": "1",
        "ADMIN_BOOTSTRAP_TOKEN": TOKEN, "TEST_CLOCK": "1",
        "RATE_LIMIT_IP_PER_MINUTE": "0", "RATE_LIMIT_KEY_PER_MINUTE": "0",
        "RATE_LIMIT_NOT_FOUND_PER_MINUTE": "0", "FRAUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAIL_FROM": "licensing@example.com",
    } | extra_env  # fmt: skip
    await create_database(admin_url, name)
    server: asyncio.subprocess.Process | None = None
    try:
        await migrate(database_url, redis_url)
        log = (workdir / "server.log").open("wb")
        server = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "activation-server"), "serve", "--public-port", str(public_port),
            "--admin-port", str(admin_port), env=env, cwd=workdir, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        public, admin = f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{admin_port}"
        await _wait_http(f"{public}/readyz", server)
        yield System(database_url, redis_url, prefix, env, public, admin, workdir)
    finally:
        if server is not None and server.returncode is None:
            server.terminate()
            await server.wait()
        with redis.Redis.from_url(redis_url) as client:
            delete_redis_prefix(client, prefix)
        await drop_database(admin_url, name)


def redis_usage(redis_url: str, prefix: str) -> dict[str, int]:
    """Bytes (MEMORY USAGE) of the prefix's keys: streams apart from the licenses' own data
    (license documents, installation sets and details, counters); stream entries, consumers."""
    usage = {"stream_bytes": 0, "license_bytes": 0, "entries": 0, "consumers": 0, "keys": 0}
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            usage["keys"] += 1
            size = int(client.memory_usage(key, samples=0) or 0)
            if client.type(key) == b"stream":
                usage["stream_bytes"] += size
                usage["entries"] += int(client.xlen(key))
                for group in client.xinfo_groups(key):
                    usage["consumers"] += int(group["consumers"])
            else:
                usage["license_bytes"] += size
    return usage


async def postgres_usage(database_url: str) -> dict[str, Any]:
    """Rows and bytes (indexes included) of the activation history and the installations."""
    conn = await asyncpg.connect(database_url)
    try:
        events = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM activation_events) AS n,
                      coalesce(sum(pg_total_relation_size(inhrelid)), 0) AS bytes
               FROM pg_inherits WHERE inhparent = 'activation_events'::regclass"""
        )
        installations = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM installations) AS n,
                      pg_total_relation_size('installations') AS bytes,
                      (SELECT n_dead_tup FROM pg_stat_user_tables
                       WHERE relname = 'installations') AS dead"""
        )
        database = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {
        "events": events["n"], "event_bytes": events["bytes"],
        "installations": installations["n"], "installation_bytes": installations["bytes"],
        "installation_dead": installations["dead"], "database_bytes": database,
    }  # fmt: skip


async def outcome(database_url: str) -> dict[str, Any]:
    """What the rules did: cases by status and stage, leaks, steps, disabled keys, outbox."""
    conn = await asyncpg.connect(database_url)
    try:
        cases = await conn.fetch(
            "SELECT status, stage, count(*) AS n FROM fraud_cases GROUP BY 1, 2 ORDER BY 1, 2"
        )
        steps = await conn.fetch("SELECT step, count(*) AS n FROM case_steps GROUP BY 1 ORDER BY 1")
        outbox = await conn.fetch(
            "SELECT channel, status, count(*) AS n FROM notifications GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return {
            "cases": {f"{r['status']}/{r['stage']}": r["n"] for r in cases},
            "leaks": await conn.fetchval("SELECT count(*) FROM fraud_cases WHERE leak_suspected"),
            "steps": {r["step"]: r["n"] for r in steps},
            "disabled": await conn.fetchval(
                "SELECT count(*) FROM licenses WHERE status = 'disabled'"
            ),
            "outbox": {f"{r['channel']}/{r['status']}": r["n"] for r in outbox},
        }
    finally:
        await conn.close()


_SAMPLE = re.compile(r"^worker_pass_duration_seconds_(sum|count) ([0-9.e+-]+)$", re.M)


async def pass_totals(metrics_url: str) -> tuple[float, int]:
    """(seconds, passes) the loop worker has reported so far."""
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    found = {kind: float(value) for kind, value in _SAMPLE.findall(text)}
    return found.get("sum", 0.0), int(found.get("count", 0))
