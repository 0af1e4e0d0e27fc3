"""The product's own processes for the fault tests, against any PostgreSQL and Redis (owned or
shared): `activation-server serve` and `fraud-worker`, started as an operator would, plus an
activation load that records every answer and the answered activations' identities.

Each activation of the load carries a unique hostname (`load-<n>.example`): the API does not
return its event id, and the hostname is stored with the event in `activation_events`, so an
answered activation missing from PostgreSQL is found by it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from activation.store.migrate import migrate
from tests.faults.owned import free_port
from tests.integration import helpers
from tests.integration.helpers import insert_licenses
from tests.integration.servers import server_env, spawn, stop, wait_ready

BIN = Path(sys.executable).parent


def scale() -> float:
    """FAULT_SCALE (default 1): multiplies the fault tests' sizes and durations."""
    return float(os.environ.get("FAULT_SCALE", "1") or 1)


async def prepare_database(url: str, keys: list[str]) -> None:
    """Migrations, then a customer with `keys` as perpetual licenses of two servers each."""
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
        await insert_licenses(connection, keys, "ops@fault.test", 2)
    finally:
        await connection.close()


def license_keys(count: int, seed: int) -> list[str]:
    """`count` license keys, the same for the same `seed`."""
    return helpers.license_keys(count, random.Random(seed))


@dataclass(frozen=True)
class Api:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@contextmanager
def api_process(
    database_url: str, redis_url: str, prefix: str, workdir: Path, **extra: str
) -> Iterator[Api]:
    """`activation-server serve --processes 1` on free ports, with production's settings."""
    env = server_env(database_url, redis_url, prefix, workdir, **extra)
    public, admin = free_port(), free_port()
    log = workdir / "api.log"
    command = [
        str(BIN / "activation-server"), "serve", "--processes", "1",
        "--public-port", str(public), "--admin-port", str(admin),
    ]  # fmt: skip
    process = spawn(command, env, workdir, log)
    api = Api(process, f"http://127.0.0.1:{public}", log)
    try:
        wait_ready(process, api.url, log)
        yield api
    finally:
        stop(process)


@dataclass(frozen=True)
class WorkerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled sample on the worker's /metrics (None: not exported)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(f"{name} "):
                    return float(line.split()[1])
        return None


@contextmanager
def worker_process(
    database_url: str, redis_url: str, prefix: str, workdir: Path, **extra: str
) -> Iterator[WorkerProcess]:
    """`fraud-worker` with health and metrics on a free port; SIGTERM (then SIGKILL) after."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "TEST_CLOCK": "0",
    } | extra
    log = workdir / "worker.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(BIN / "fraud-worker"), "--port", str(port)],
            cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = WorkerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"fraud-worker exited:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{worker.url}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"fraud-worker not up:\n{log.read_text()}"
                time.sleep(0.1)
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Answer:
    hostname: str
    status: int  # 0: no HTTP answer at all (connection refused or reset)
    retry_after: bool
    sent: float  # time.monotonic()
    answered: float


@dataclass
class Load:
    """Activations of `keys` (server-a/server-b: within the limit) through the real API at
    about `rate` per second, until `stop()`; every answer is kept."""

    url: str
    keys: list[str]
    rate: float
    concurrency: int = 8
    answers: list[Answer] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _counter: int = 0

    def accepted(self) -> set[str]:
        """Hostnames of the activations answered 200 (acknowledged to their client)."""
        return {answer.hostname for answer in self.answers if answer.status == 200}

    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(self._client(session, n) for n in range(self.concurrency)))

    async def _client(self, session: aiohttp.ClientSession, number: int) -> None:
        interval = self.concurrency / self.rate
        next_at = time.monotonic() + interval * number / self.concurrency
        while not self._stopping.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - interval)
            self._counter += 1
            hostname = f"load-{self._counter}.example"
            key = self.keys[self._counter % len(self.keys)]
            body = {
                "license_key": key,
                "fingerprint": "server-a" if self._counter % 3 else "server-b",
                "hostname": hostname,
                "product": "smartermail",
                "version": "16.3.6989",
                "nonce": "c0ffee42",
            }
            sent = time.monotonic()
            try:
                async with session.post(f"{self.url}/v1/activations", json=body) as response:
                    await response.read()
                    status, retry_after = response.status, "Retry-After" in response.headers
            except (aiohttp.ClientError, TimeoutError):
                status, retry_after = 0, False
            self.answers.append(Answer(hostname, status, retry_after, sent, time.monotonic()))


async def stored_hostnames(database_url: str, hostnames: set[str]) -> set[str]:
    """Which of `hostnames` have their event in `activation_events`."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT hostname FROM activation_events WHERE hostname = ANY($1::text[])",
            list(hostnames),
        )
    finally:
        await connection.close()
    return {row["hostname"] for row in rows}


async def count(database_url: str, query: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        value: int = await connection.fetchval(query)
    finally:
        await connection.close()
    return value
