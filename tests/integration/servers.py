"""A real `activation-server` process for the tests that need one (test_openapi_fuzz.py,
test_metrics.py): its environment, start, readiness, stop, plain HTTP calls with the bootstrap
admin token, and the cleanup of the database and of its Redis prefix afterwards.

All of it is synchronous: the fixtures using it run outside the tests' event loop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from activation.api.keyring import write_private_key
from tests import debian
from tests.conftest import BOOTSTRAP_TOKEN, TABLES, _drop_prefix
from tests.integration.receivers import free_port

SERVER = Path(sys.executable).parent / "activation-server"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    public: str
    admin: str


def server_env(
    database_url: str, redis_url: str, prefix: str, workdir: Path, **extra: str
) -> dict[str, str]:
    """This process's environment plus what `activation-server serve` needs in production: the
    services, the bootstrap admin token and a signing key in `workdir` (made as an operator
    makes one, unless it is there). Everything else is production's default; `extra` changes it
    (e.g. TEST_CLOCK="1" for a test that moves time)."""
    signing_key = workdir / "signing-key.pem"
    if not signing_key.exists():
        write_private_key(signing_key)
    return (
        os.environ
        | {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "SIGNING_KEY_FILE": str(signing_key),
            "ADMIN_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        }
        | extra
    )


def spawn(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """`command` in `cwd`, stdout and stderr into the file `log`."""
    with log.open("wb") as output:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """One request with the bootstrap admin token (and `body` as JSON); status and raw body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def truncate(database_url: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        await connection.close()

    asyncio.run(run())


def drop_prefix(redis_url: str, prefix: str) -> None:
    _drop_prefix(redis_url, prefix)


def wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    until: Callable[[], bool] = lambda: True,
) -> None:
    """Until `url/readyz` answers 200 and `until()` holds; fails with the log if the process
    exits or START_TIMEOUT passes first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"activation-server exited {process.returncode}:\n{log.read_text()}")
        try:
            ready = call("GET", f"{url}/readyz")[0] == 200
        except OSError:
            ready = False
        if ready and until():
            return
        time.sleep(0.1)
    pytest.fail(f"activation-server not ready after {START_TIMEOUT}s:\n{log.read_text()}")


@contextmanager
def serving(
    env: dict[str, str],
    workdir: Path,
    *options: str,
    until: Callable[[], bool] = lambda: True,
    stop_timeout: float = 10.0,
) -> Iterator[Server]:
    """`activation-server serve *options` on two free ports with `env` (see server_env), run
    in `workdir` and logging to `workdir/server.log`, on an emptied database, once ready (see
    wait_ready). Afterwards it is stopped, its Redis prefix dropped and the database emptied."""
    database_url, redis_url = env["DATABASE_URL"], env["REDIS_URL"]
    truncate(database_url)
    public_port, admin_port = free_port(), free_port()
    command = [
        str(SERVER), "serve", *options,
        "--public-port", str(public_port), "--admin-port", str(admin_port),
    ]  # fmt: skip
    log = workdir / "server.log"
    process = spawn(command, env, workdir, log)
    server = Server(f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{admin_port}")
    try:
        wait_ready(process, server.public, log, until)
        yield server
    finally:
        stop(process, stop_timeout)
        drop_prefix(redis_url, env["REDIS_PREFIX"])
        truncate(database_url)


def redis_server_binary() -> str:
    """The machine's redis-server: Debian's, installed with apt-get when missing
    (tests/debian.py), so the tests that start their own are never skipped."""
    return debian.redis_server()


def redis_server_has_tls() -> bool:
    """Whether `redis_server_binary()` knows the TLS directives: one without them refuses
    `tls-port` as a bad directive; one with them gets as far as failing to load the files."""
    refused = subprocess.run(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--tls-port",
            "1",
            "--tls-cert-file",
            "/nonexistent",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return "Bad directive" not in refused.stdout + refused.stderr


@contextmanager
def own_redis_server(directory: Path, *options: str, port: int | None = None) -> Iterator[int]:
    """A throwaway redis-server on a free loopback port (`port` for a TLS one whose plain port
    `options` switch off): its port, until the block ends. No persistence."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            *("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)),
            *(options or ("--port", str(port))),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
