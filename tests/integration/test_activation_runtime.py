"""Signatures, rate limits, Redis outages and the cache (SPEC §5, §9; R16, R17)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import RawTestServer, TestClient
from cryptography.exceptions import InvalidSignature

from activation.config import RateLimits, Settings
from activation.runtime import Resources, open_resources, public_api
from activation.store.redis_store import ActivationRequest, Recorded
from activation.web.problems import RETRY_AFTER_SECONDS
from tests.integration.helpers import (
    Client,
    activate,
    activation_body,
    create_license,
    verify_signature,
)


async def test_answers_are_signed_with_the_published_key(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    created = await create_license(admin_client, admin_headers)
    published = await (await public_client.get("/v1/signing-key")).json()
    assert published["algorithm"] == "ed25519"
    assert "BEGIN PUBLIC KEY" in published["pem"]
    for key in (created["key"], "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"):
        response = await public_client.post("/v1/activations", json=activation_body(key))
        body = await response.read()
        verify_signature(published["public_key"], body, response.headers["X-Signature"])
        with pytest.raises(InvalidSignature):
            verify_signature(
                published["public_key"],
                body.replace(b'"valid":', b'"valid" :'),
                response.headers["X-Signature"],
            )


async def test_postgres_is_read_only_on_cache_misses(
    public_client: Client,
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
) -> None:
    created = await create_license(admin_client, admin_headers)
    await resources.store.forget_license(created["key"])
    before = resources.registry.queries
    for n in range(20):
        await activate(public_client, created["key"], f"server-{n % 2}")
    assert resources.registry.queries - before == 1
    for _ in range(10):
        await activate(public_client, "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ")
    assert resources.registry.queries - before == 2  # the unknown key is negatively cached


async def test_admin_write_through_updates_the_cache(
    public_client: Client,
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
) -> None:
    """A key activated as unknown becomes known as soon as the license is imported."""
    key = "KNOWN-LATER-IMPRT-EDKEY-22222"
    assert (await activate(public_client, key))["code"] == "NOT_FOUND"
    await create_license(admin_client, admin_headers, key=key)
    assert (await activate(public_client, key))["code"] == "VALID"


@pytest.fixture
def limited_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        rate_limits=RateLimits(ip_per_minute=0, key_per_minute=3, not_found_per_minute=4),
    )


async def _client(settings: Settings, aiohttp_client: Any) -> tuple[Any, Any]:
    context = open_resources(settings)
    resources = await context.__aenter__()
    client = await aiohttp_client(RawTestServer(public_api(resources).handle))
    return client, context


async def test_rate_limits_per_key_and_unknown_keys(
    limited_settings: Settings,
    aiohttp_client: Any,
    admin_client: Client,
    admin_headers: dict[str, str],
) -> None:
    created = await create_license(admin_client, admin_headers)
    client, context = await _client(limited_settings, aiohttp_client)
    try:
        statuses = []
        for _ in range(5):
            response = await client.post("/v1/activations", json=activation_body(created["key"]))
            statuses.append(response.status)
        assert statuses == [200, 200, 200, 429, 429]
        assert int(response.headers["Retry-After"]) >= 1
        assert response.content_type == "application/problem+json"
        unknown = []
        for n in range(6):
            body = activation_body(f"UNKNO-WNKEY-FLOOD-{n:05d}-22222")
            unknown.append((await client.post("/v1/activations", json=body)).status)
        assert unknown == [200, 200, 200, 200, 429, 429]
    finally:
        await context.__aexit__(None, None, None)


async def test_rate_limit_per_client_address(settings: Settings, aiohttp_client: Any) -> None:
    limited = dataclasses.replace(settings, rate_limits=RateLimits(ip_per_minute=2))
    client, context = await _client(limited, aiohttp_client)
    try:
        body = activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ")
        statuses = [(await client.post("/v1/activations", json=body)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
    finally:
        await context.__aexit__(None, None, None)


async def test_redis_down_is_503_with_retry_after(settings: Settings, resources: Resources) -> None:
    unreachable = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with (
        open_resources(unreachable) as broken,
        TestClient(RawTestServer(public_api(broken).handle)) as client,
    ):
        response = await client.post(
            "/v1/activations", json=activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ")
        )
        assert response.status == 503
        low, high = RETRY_AFTER_SECONDS
        assert low <= int(response.headers["Retry-After"]) <= high
        assert response.content_type == "application/problem+json"
        assert (await client.get("/readyz")).status == 503


async def test_disable_is_seen_by_every_process_R17(
    settings: Settings,
    admin_client: Client,
    admin_headers: dict[str, str],
    public_client: Client,
) -> None:
    """A second, independent API process (own pools, own caches) answers DISABLED at once."""
    created = await create_license(admin_client, admin_headers)
    async with (
        open_resources(settings) as other,
        TestClient(RawTestServer(public_api(other).handle)) as second,
    ):
        for client in (public_client, second):
            assert (await activate(client, created["key"]))["code"] == "VALID"
        response = await admin_client.post(
            f"/admin/v1/licenses/{created['key']}/disable",
            json={"reason": "fraud"},
            headers=admin_headers,
        )
        assert response.status == 200
        for client in (public_client, second):
            answer = orjson.loads(
                await (
                    await client.post("/v1/activations", json=activation_body(created["key"]))
                ).read()
            )
            assert answer["code"] == "DISABLED"


async def test_leak_counter_counts_distinct_recent_servers_R16(
    public_client: Client,
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
) -> None:
    """The script reports the distinct servers of the last 24 h and puts it in the event."""
    created = await create_license(admin_client, admin_headers)
    for n in range(6):
        await activate(public_client, created["key"], f"leaked-{n}")
    now = await resources.clock.now()
    request = ActivationRequest(
        created["key"], "leaked-6", "leaked-6.example.com", "16.3.6989", "127.0.0.1", "event-7"
    )
    outcome = await resources.store.activate(request, now)
    assert isinstance(outcome, Recorded)
    assert (outcome.seen_recently, outcome.servers_active) == (7, 7)
    stream = resources.layout.for_license(created["key"], 0).stream
    last = (await resources.redis.xrevrange(stream, count=1))[0][1]
    assert (last[b"id"], last[b"recent"], last[b"fp"]) == (b"event-7", b"7", b"leaked-6")
    installations = await resources.store.installations(created["key"])
    assert {row["hostname"] for row in installations} == {
        f"leaked-{n}.example.com" for n in range(7)
    }


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (op, fingerprint, hours after the first step) ..., then (seen_recently, active)
        ([("a", "one", 0)], (1, 1)),
        ([("a", "one", 0), ("a", "one", 30)], (1, 1)),
        ([("a", "old", 0), ("a", "new", 30)], (1, 2)),
        ([("a", "old", 0), ("a", "new", 1)], (2, 2)),
        ([("a", "old", 0), ("a", "new", 30), ("d", "new", 31)], (0, 1)),
    ],
)
async def test_recent_servers_R16_against_the_active_ones_R11(
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
    steps: list[tuple[str, str, int]],
    expected: tuple[int, int],
) -> None:
    """The leak window (24 h) counts fewer servers than the active window (7 days) when a
    server went quiet for a day; a key with one server just recorded has seen exactly one."""
    created = await create_license(admin_client, admin_headers)
    start = await resources.clock.now()
    outcome: object = None
    for n, (op, fingerprint, hours) in enumerate(steps):
        request = ActivationRequest(
            created["key"], fingerprint, f"{fingerprint}.example.com", "16.3.6989", "127.0.0.1",
            f"event-{n}",
        )  # fmt: skip
        at = start + timedelta(hours=hours)
        store = resources.store
        outcome = await (store.activate if op == "a" else store.deactivate)(request, at)
    assert isinstance(outcome, Recorded)
    assert (outcome.seen_recently, outcome.servers_active) == expected


# (fingerprint, days after the first step; W = the active window), then the active servers.
_STALE_STEPS = {
    "the oldest server goes stale after W": (
        [("a", 0), ("b", 2), ("a", 4), ("b", "W+3"), ("b", "W+4.5")],
        [1, 2, 2, 2, 1],
    ),
    "a server back after W counts again, alone": ([("a", 0), ("a", "W+1")], [1, 1]),
    "the bound is lowered by a clock set back": (
        [("a", 10), ("b", 0), ("a", 5), ("a", "W+1")],
        [1, 2, 2, 1],
    ),
}


@pytest.mark.parametrize(("steps", "expected"), list(_STALE_STEPS.values()), ids=list(_STALE_STEPS))
async def test_silent_servers_stop_counting_after_the_active_window_R11(
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
    steps: list[tuple[str, int | str]],
    expected: list[int],
) -> None:
    """The script skips its search for stale servers until the license's `purge_due` (the
    oldest server's last call plus the window, activate.lua): the active count is exact at
    every step all the same, and the bound follows the oldest server."""
    created = await create_license(admin_client, admin_headers, max_servers=5)
    window = resources.settings.active_window_days
    start = await resources.clock.now()
    counted = []
    for n, (fingerprint, day) in enumerate(steps):
        days = float(day) if isinstance(day, int) else window + float(str(day)[2:])
        request = ActivationRequest(
            created["key"], fingerprint, f"{fingerprint}.example.com", "16.3.6989", "127.0.0.1",
            f"event-{n}",
        )  # fmt: skip
        outcome = await resources.store.activate(request, start + timedelta(days=days))
        assert isinstance(outcome, Recorded)
        counted.append(outcome.servers_active)
    assert counted == expected
    seen = await resources.redis.zrange(
        resources.layout.for_license(created["key"], 0).installations, 0, 0, withscores=True
    )
    due = await resources.redis.hget(
        resources.layout.for_license(created["key"], 0).license, "purge_due"
    )
    assert due is not None and float(due) <= seen[0][1] + window * 86_400
