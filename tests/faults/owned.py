"""Servers a fault test owns, so it may stop, kill and restart them: a PostgreSQL cluster made
with Debian's `initdb` and run with `pg_ctl`, and a `redis-server` with AOF `appendfsync
everysec` (as deploy/ runs it). Both listen on a free port of 127.0.0.1 and keep their data in a
directory of their own; `url` is what DATABASE_URL / REDIS_URL take.

    with OwnedPostgres.running() as postgres:   # initdb + start; stopped and removed after
        postgres.stop(mode="immediate")          # a crash: no shutdown checkpoint
        postgres.start()                         # crash recovery, same data, same port
    with OwnedRedis.running() as redis:
        redis.kill()                             # SIGKILL
        redis.start(keep_data=False)             # back empty (a lost volume)
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.debian import postgres_bin, redis_server

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


class OwnedPostgres:
    """A PostgreSQL cluster of the test's own. initdb and the server refuse to run as root, so
    under root they run as the `postgres` user Debian's package creates. `fsync=off`: a test
    stops the server (even with `-m immediate`, a crash of the server process), never the
    machine, and the operating system keeps what was written."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self.bin = postgres_bin()
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[OwnedPostgres]:
        directory = Path(tempfile.mkdtemp(prefix="owned-postgres-"))
        server = cls(directory)
        try:
            server.init()
            server.start()
            yield server
        finally:
            server.stop(mode="immediate", missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)

    def init(self) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
            "-E", "UTF8", "--locale", "C",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(int(START_TIMEOUT_S)), "-o", options, "start",
        )  # fmt: skip

    def stop(self, *, mode: str = "fast", missing_ok: bool = False) -> None:
        """`pg_ctl stop -m mode`: `immediate` kills the server processes (no checkpoint; the
        next start recovers from the WAL), `fast` disconnects clients and shuts down."""
        if missing_ok and not (self.data / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=not missing_ok)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        result = subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            user=self._user,
            cwd=self.directory,
        )
        if check and result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log[-3000:]}"
            )


class OwnedRedis:
    """A redis-server of the test's own, with AOF (`appendfsync everysec`), RDB snapshots off
    and `noeviction`, as deploy/docker-compose.yml runs it."""

    def __init__(self, directory: Path, *, appendfsync: str = "everysec") -> None:
        self.directory = directory
        self.port = free_port()
        self.appendfsync = appendfsync
        self.binary = redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    @contextmanager
    def running(cls, directory: Path | None = None) -> Iterator[OwnedRedis]:
        own = directory or Path(tempfile.mkdtemp(prefix="owned-redis-"))
        own.mkdir(parents=True, exist_ok=True)
        server = cls(own)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            if directory is None:
                shutil.rmtree(own, ignore_errors=True)

    def start(self, *, keep_data: bool = True) -> None:
        """Start on the same port and directory; `keep_data=False` removes the AOF first
        (Redis comes back empty, as after a lost volume)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        if not keep_data:
            shutil.rmtree(self.directory / "appendonlydir", ignore_errors=True)
            (self.directory / "dump.rdb").unlink(missing_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory)),
                *("--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", ""),
                *("--maxmemory-policy", "noeviction"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start:\n{(self.directory / 'redis.log').read_text()}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF write beyond what the server wrote already."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
