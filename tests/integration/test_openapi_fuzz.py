"""Fuzz the running server from its own OpenAPI document (`GET /openapi.json`) with schemathesis.

One real `activation-server` process (both ports) is started for the module on the test
database and a Redis prefix of its own, seeded through the admin API with SPEC §5's example key
(the document's examples name it, so the explicit examples reach a real license). Every
operation then gets a bounded, reproducible set of generated requests, valid and invalid, and
every answer must be no 5xx and conform to the document: documented status code, content type,
headers and body schema.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from activation.api.openapi import EXAMPLE_KEY, openapi_document
from tests.conftest import BOOTSTRAP_TOKEN, TABLES

AUTH = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    public: str
    admin: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=AUTH)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"activation-server exited {process.returncode}:\n{log.read_text()}")
        try:
            if _call("GET", f"{url}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"activation-server not ready after {START_TIMEOUT}s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _truncate(database_url: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        await connection.close()

    asyncio.run(run())


def _drop_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


def _seed(server: Server) -> None:
    """Customer 1 holding the example key, a release, a server using it, and token 1."""
    admin = f"{server.admin}/admin/v1"
    customer = {"name": "Acme", "email": "ops@acme.example", "phone": "+1 555 0100"}
    assert _call("POST", f"{admin}/customers", customer)[0] == 201
    license = {
        "customer_id": 1, "product": "smartermail", "kind": "perpetual",
        "edition": "enterprise", "purchased_on": "2026-01-15", "key": EXAMPLE_KEY,
        "addons": ["eas"], "limits": {"mailboxes": 250},
    }  # fmt: skip
    assert _call("POST", f"{admin}/licenses", license)[0] == 201
    release = {"product": "smartermail", "version": "16.3.6989", "released_on": "2026-01-10"}
    assert _call("POST", f"{admin}/releases", release)[0] == 201
    assert _call("POST", f"{admin}/tokens", {"name": "fuzz", "role": "viewer"})[0] == 201
    activation = {
        "license_key": EXAMPLE_KEY, "fingerprint": "server-a", "product": "smartermail",
        "version": "16.3.6989", "hostname": "mail1.example.com",
    }  # fmt: skip
    status, answer = _call("POST", f"{server.public}/v1/activations", activation)
    assert status == 200 and answer["code"] == "VALID", answer


@pytest.fixture(scope="module")
def server(
    database_url: str, server_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real `activation-server` on two free ports; stopped (SIGTERM, then kill) after."""
    _truncate(database_url)
    workdir = tmp_path_factory.mktemp("fuzz-server")  # no stray .env is read from here
    prefix = f"fuzz{secrets.token_hex(4)}"
    public_port, admin_port = _free_port(), _free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "REDIS_URL": server_urls[1],
        "REDIS_PREFIX": prefix,
        "SIGNING_KEY_FILE": str(workdir / "signing-key.pem"),
        "DEV": "1",
        "ADMIN_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "TEST_CLOCK": "1",
        "RATE_LIMIT_IP_PER_MINUTE": "0",
        "RATE_LIMIT_KEY_PER_MINUTE": "0",
        "RATE_LIMIT_NOT_FOUND_PER_MINUTE": "0",
    }
    command = [
        str(Path(sys.executable).parent / "activation-server"), "serve",
        "--public-port", str(public_port), "--admin-port", str(admin_port),
    ]  # fmt: skip
    log = workdir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT
        )
    urls = Server(f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{admin_port}")
    try:
        _wait_ready(process, urls.public, log)
        _seed(urls)
        yield urls
    finally:
        _stop(process)
        _drop_prefix(server_urls[1], prefix)
        _truncate(database_url)


# Built from the dict the server serves (`test_both_ports_serve_the_document` checks that), so
# pytest can collect one test per operation before the server runs.
# POST /admin/v1/test-clock is left out: it moves the deployment's time.
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(
    method="POST", path="/admin/v1/test-clock"
)
# Every request carries the bootstrap admin token: requests without one all end in the same 401,
# so generating the Authorization header would only spend the examples (test_admin_auth covers it).
schema.config.update(headers=AUTH)
schema.config.generation.update(with_security_parameters=False)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_fuzz_the_running_server(case: schemathesis.Case[Any], server: Server) -> None:
    base_url = server.admin if case.path.startswith("/admin/") else server.public
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)


def test_both_ports_serve_the_document(server: Server) -> None:
    for url in (server.public, server.admin):
        status, document = _call("GET", f"{url}/openapi.json")
        assert status == 200
        assert document == openapi_document()
