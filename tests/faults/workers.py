"""Real `fraud-worker` processes for the fault tests: start, SIGKILL, restart, graceful stop,
their /healthz and /metrics, the failed passes their logs report; and the seeding of licenses
with open cases (rows as the case opener writes them, servers in the Redis installations set).

`FAULT_SCALE` (default 1) multiplies the tests' sizes for longer runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from activation.config import Settings
from activation.runtime import Resources
from activation.store.redis_store import Recorded
from tests.integration.helpers import activation_requests, insert_licenses
from tests.integration.receivers import SECRET, free_port

WORKER = Path(sys.executable).parent / "fraud-worker"
PASS_FAILED = "worker pass failed"


def fault_scale() -> int:
    return max(1, int(os.environ.get("FAULT_SCALE", "1")))


def worker_env(settings: Settings, workdir: Path, **extra: str) -> dict[str, str]:
    """What a worker of this test needs: its database, Redis prefix and, when the test moves
    time, the shared test clock."""
    assert settings.database_url is not None and settings.redis_url is not None
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "STREAM_SHARDS": str(settings.stream_shards),
        "TEST_CLOCK": "1" if settings.test_clock else "0",
        "FRAUD_WEBHOOK_SECRET": SECRET,
        "MAIL_FROM": "licensing@fault.test",
    } | extra


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> int:
        """The /healthz status, 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics by name and labels, e.g. `notifications_total{...}`."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples


@dataclass
class Fleet:
    """Worker processes of one test; every process it started ends with the test."""

    env: dict[str, str]
    workdir: Path
    options: tuple[str, ...] = ()
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self) -> WorkerProcess:
        port = free_port()
        log = self.workdir / f"worker-{len(self.started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(WORKER), "--port", str(port), *self.options],
                cwd=self.workdir,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, port, log)
        self.started.append(worker)
        return worker

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.process.poll() is None]

    def wait_healthy(self, worker: WorkerProcess, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while worker.healthz() != 200:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited {worker.process.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not healthy after {within}s:\n{self.logs()}")
            time.sleep(0.1)

    def kill(self, worker: WorkerProcess) -> None:
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)

    def terminate(self, worker: WorkerProcess, grace: float) -> float:
        """SIGTERM, then SIGKILL after `grace` seconds; the seconds the process took to exit
        (more than `grace` when it had to be killed)."""
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
            return grace + 0.001
        return time.monotonic() - started

    def close(self) -> None:
        for worker in self.running:
            worker.process.kill()
            worker.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(w.log.read_text(errors="replace") for w in self.started)

    def failed_passes(self) -> int:
        return self.logs().count(PASS_FAILED)

    def tracebacks(self) -> int:
        return self.logs().count("Traceback")


async def seed_licenses(
    resources: Resources, keys: list[str], email: str, max_servers: int = 1
) -> None:
    """One customer, `keys` licenses of `max_servers` servers."""
    async with resources.pool.acquire() as connection, connection.transaction():
        await insert_licenses(connection, keys, email, max_servers)


async def open_cases(resources: Resources, keys: list[str], opened_at: datetime) -> None:
    """An open case per key, as the case opener writes it (two servers, one allowed, the
    grace ending 30 days later), nothing run yet."""
    await resources.pool.execute(
        """INSERT INTO fraud_cases (license_key, opened_at, servers_active, servers_allowed,
               next_due_at)
           SELECT k, $2::timestamptz, 2, 1, $2::timestamptz + interval '30 days'
           FROM unnest($1::text[]) AS k""",
        keys,
        opened_at,
    )


async def servers_seen(resources: Resources, keys: list[str], at: datetime) -> None:
    """Two servers of every key seen at `at` (what two phone-homes leave in Redis)."""
    async with resources.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            installations = resources.layout.for_license(key, 0).installations
            pipe.zadd(installations, {"server-a": at.timestamp(), "server-b": at.timestamp()})
        await pipe.execute()


DAY = timedelta(days=1)


class HungServer:
    """Accepts connections on a port and never answers (a mail server or webhook receiver
    that hangs); `close` drops the connections it holds."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", self.port)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()


async def produce_activations(
    resources: Resources, keys: list[str], count: int, clock_now: datetime
) -> list[str]:
    """`count` activations within the keys' limits (two servers each, two allowed), through
    the activation script the API calls; the event ids recorded."""
    requests = activation_requests(keys, count)
    outcomes = await asyncio.gather(*(resources.store.activate(r, clock_now) for r in requests))
    return [r.event_id for r, o in zip(requests, outcomes, strict=True) if isinstance(o, Recorded)]
