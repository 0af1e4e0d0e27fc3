"""The fast lane on the system clock: the script's reply goes on where it is parsed, without a
task (api/lane_call.py), and every outcome is answered as the awaiting path answers it —
cached or not, Redis having lost the script, rate limited, unknown key, the connection lost
with the reply pending. `PublicApi.lane_awaited` counts the answers that waited in a task."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from activation.api.app import PublicApi
from activation.config import RateLimits, Settings
from activation.runtime import Resources
from activation.store.lean_redis import LeanScriptClient, ReplyWaiter
from activation.store.redis_store import ACTIVATE_SCRIPT
from tests.conftest import PublicTestServer
from tests.integration.helpers import (
    Client,
    activation_body,
    assert_outage,
    create_license,
    verify_signature,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, test_clock=False, rate_limits=RateLimits(0, key_per_minute=3)
    )


@dataclasses.dataclass
class Lane:
    api: PublicApi
    client: TestClient[Any, Any]
    key: str

    async def activate(self, key: str | None = None, fingerprint: str = "server-a") -> Any:
        body = orjson.dumps(activation_body(key or self.key, fingerprint))
        response = await self.client.post(
            "/v1/activations", data=body, headers={"Content-Type": "application/json"}
        )
        assert self.client.server.web_server.lane_answers > 0  # type: ignore[attr-defined]
        return response


@pytest.fixture
async def lane(
    resources: Resources, aiohttp_client: Any, admin_client: Client, admin_headers: dict[str, str]
) -> AsyncIterator[Lane]:
    api = PublicApi(resources)
    client = await aiohttp_client(PublicTestServer(api))
    created = await create_license(admin_client, admin_headers, max_servers=5)
    first = await client.post("/v1/activations", json=activation_body(created["key"]))
    assert first.status == 200  # the lean connection is up from here on
    api.lane_awaited = 0
    yield Lane(api, client, str(created["key"]))


async def _events(resources: Resources) -> int:
    return sum([await resources.redis.xlen(stream) for stream in resources.layout.streams()])


async def test_a_cached_license_is_answered_from_the_reply_without_a_task(
    lane: Lane, resources: Resources
) -> None:
    events = await _events(resources)
    response = await lane.activate(fingerprint="server-b")
    assert response.status == 200
    body = await response.read()
    verify_signature(
        resources.signer.public_document["public_key"],  # type: ignore[union-attr]
        body,
        response.headers["X-Signature"],
    )
    answer = orjson.loads(body)
    assert (answer["code"], answer["installation"]["servers_active"]) == ("VALID", 2)
    assert lane.api.lane_awaited == 0
    assert await _events(resources) == events + 1


async def test_a_license_not_cached_is_loaded_then_answered(
    lane: Lane, resources: Resources
) -> None:
    await resources.store.forget_license(lane.key)
    misses = resources.metrics.cache_misses.count
    events = await _events(resources)
    response = await lane.activate()
    assert response.status == 200 and (await response.json())["code"] == "VALID"
    assert resources.metrics.cache_misses.count == misses + 1
    assert lane.api.lane_awaited == 1  # PostgreSQL, then the second script call
    assert await _events(resources) == events + 1
    again = await lane.activate()
    assert again.status == 200
    assert lane.api.lane_awaited == 1  # cached again


async def test_noscript_runs_the_call_again_once(lane: Lane, resources: Resources) -> None:
    """Redis lost its scripts (restart, SCRIPT FLUSH): the script did not run, so the call is
    made again through the awaiting path, which reloads it; one event, not two."""
    await resources.redis.script_flush()
    events = await _events(resources)
    response = await lane.activate(fingerprint="server-c")
    assert response.status == 200 and (await response.json())["code"] == "VALID"
    assert lane.api.lane_awaited == 1
    assert await _events(resources) == events + 1


async def test_rate_limited_is_429_with_retry_after(lane: Lane) -> None:
    statuses = [(await lane.activate(fingerprint=f"server-{n}")).status for n in range(2)]
    assert statuses == [200, 200]  # with the fixture's first: 3 this minute, the limit
    limited = await lane.activate(fingerprint="server-9")
    assert limited.status == 429
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    assert lane.api.lane_awaited == 0


async def test_an_unknown_key_is_not_found(lane: Lane) -> None:
    unknown = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"
    first = await lane.activate(unknown)
    assert lane.api.lane_awaited == 1  # looked up in PostgreSQL, remembered as unknown
    second = await lane.activate(unknown)
    for response in (first, second):
        assert response.status == 200
        assert (await response.json())["code"] == "NOT_FOUND"
    assert lane.api.lane_awaited == 1  # the negative cache answered


class _DropsOnce(LeanScriptClient):
    """The connection drops right after the call is queued, with its reply pending."""

    dropped = False

    def send_nowait(self, arity: int, packed: bytes, waiter: ReplyWaiter) -> bool:
        sent = super().send_nowait(arity, packed, waiter)
        if sent and not self.dropped:
            self.dropped = True
            assert self._protocol is not None
            self._protocol.abort()
        return sent


async def test_the_connection_lost_with_the_reply_pending_is_503(
    lane: Lane, resources: Resources, settings: Settings
) -> None:
    hot = resources.store.hot_client
    assert settings.redis_url is not None
    dropping = _DropsOnce(settings.redis_url, ACTIVATE_SCRIPT)
    await dropping.call("PING")  # connected, the script loaded
    resources.store.use_hot_client(dropping)
    try:
        lost = await lane.activate(fingerprint="server-lost")
        await assert_outage(lost, "Redis")
        assert dropping.dropped
        again = await lane.activate(fingerprint="server-lost")  # reconnects
        assert again.status == 200
    finally:
        resources.store.use_hot_client(hot)
        await dropping.aclose()
