"""Rate limits by client address behind a load balancer, through HTTP (SPEC §10:
TRUSTED_PROXIES, X-Forwarded-For, IPv6 per /64) and the unknown-key limit, which counts only
real NOT_FOUND answers and never refuses a key that exists (SPEC §5, §10)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activation.client_address import parse_trusted
from activation.clock import RedisTestClock
from activation.config import RateLimits, Settings
from activation.runtime import Resources, open_resources, public_api
from tests.conftest import PublicTestServer
from tests.integration.helpers import Client, activation_body, create_license

# The clock is set into a minute so the per-minute counters do not roll over mid-test.
pytestmark = pytest.mark.moves_clock
LOCAL_PROXY = parse_trusted("127.0.0.1/32, ::1/128")


@contextlib.asynccontextmanager
async def served_public_api(settings: Settings, aiohttp_client: Any) -> AsyncIterator[Client]:
    """The public API as `activation-server` serves it, on `settings`, its clock set to five
    seconds into a minute: per-minute counters do not roll over during the test."""
    async with open_resources(settings) as resources:
        clock = resources.clock
        assert isinstance(clock, RedisTestClock)
        soon = datetime.now(UTC).replace(second=5, microsecond=0) + timedelta(minutes=1)
        await clock.set(soon)
        yield await aiohttp_client(PublicTestServer(public_api(resources)))


async def statuses(client: Client, key: str, forwarded: Sequence[str | None]) -> list[int]:
    """The status of one activation of `key` per entry: with that X-Forwarded-For, or none."""
    answers = []
    for value in forwarded:
        headers = {} if value is None else {"X-Forwarded-For": value}
        response = await client.post("/v1/activations", json=activation_body(key), headers=headers)
        answers.append(response.status)
    return answers


def limited(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, rate_limits=RateLimits(ip_per_minute=2), **changes)


KEY = "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"


async def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: Settings, resources: Resources, aiohttp_client: Any
) -> None:
    """The peer (127.0.0.1) is not a trusted proxy: a client naming another address each time
    is still counted as itself and limited after 2."""
    untrusted = limited(settings, trusted_proxies=parse_trusted("10.0.0.0/8"))
    async with served_public_api(untrusted, aiohttp_client) as client:
        forged = ["198.51.100.1", "198.51.100.2", "10.0.0.1", "198.51.100.3"]
        got = await statuses(client, KEY, forged)
        assert got == [200, 200, 429, 429], got


async def test_two_clients_behind_a_trusted_proxy_get_limits_of_their_own(
    settings: Settings, resources: Resources, aiohttp_client: Any
) -> None:
    behind_proxy = limited(settings, trusted_proxies=LOCAL_PROXY)
    async with served_public_api(behind_proxy, aiohttp_client) as client:
        first = await statuses(client, KEY, ["198.51.100.1"] * 3)
        # the right-most untrusted address is the client; what it wrote to the left is not
        second = await statuses(
            client, KEY, ["198.51.100.1, 198.51.100.2", "203.0.113.9, 198.51.100.2"]
        )
        proxy_itself = await statuses(client, KEY, [None, None, None])
        assert (first, second, proxy_itself) == (
            [200, 200, 429],
            [200, 200],
            [200, 200, 429],
        )


async def test_ipv6_clients_in_one_64_share_a_limit(
    settings: Settings,
    resources: Resources,
    aiohttp_client: Any,
    admin_client: Client,
    admin_headers: dict[str, str],
) -> None:
    key = (await create_license(admin_client, admin_headers))["key"]
    behind_proxy = limited(settings, trusted_proxies=LOCAL_PROXY)
    async with served_public_api(behind_proxy, aiohttp_client) as client:
        one_64 = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::3"]
        shared = await statuses(client, key, one_64)
        next_64 = await statuses(client, key, ["2001:db8:1:3::1"])
        mapped = await statuses(
            client, key, ["::ffff:198.51.100.1", "198.51.100.1", "198.51.100.1:4444"]
        )
        assert (shared, next_64, mapped) == ([200, 200, 429], [200], [200, 200, 429])
    # the installation keeps the client's whole address; only the limit counts the /64
    recorded = await resources.store.installations(key)
    assert [row["ip"] for row in recorded] == ["198.51.100.1"]


async def test_unknown_key_limit_never_refuses_a_key_that_exists(
    settings: Settings,
    resources: Resources,
    aiohttp_client: Any,
    admin_client: Client,
    admin_headers: dict[str, str],
) -> None:
    """30 unknown keys from one address use up its unknown-key limit (the default); a real key
    whose cache entry is cold still answers 200 with its decision from that address, while
    more unknown keys, new or negatively cached, answer 429."""
    key = (await create_license(admin_client, admin_headers))["key"]
    await resources.store.forget_license(key)
    assert settings.rate_limits.not_found_per_minute == 30  # production's default
    async with served_public_api(settings, aiohttp_client) as client:
        unknown = [f"UNKNO-WNKEY-FLOOD-{n:05d}-22222" for n in range(31)]
        codes = []
        for value in unknown:
            response = await client.post("/v1/activations", json=activation_body(value))
            codes.append((await response.json())["code"] if response.status == 200 else 429)
        assert codes == ["NOT_FOUND"] * 30 + [429], codes
        response = await client.post("/v1/activations", json=activation_body(key))
        assert response.status == 200, await response.text()
        assert (await response.json())["code"] == "VALID"
        again = await client.post("/v1/activations", json=activation_body(key))
        assert (await again.json())["code"] == "VALID"
        beyond = await statuses(client, unknown[0], [None])  # negatively cached by now
        fresh = await statuses(client, "UNKNO-WNKEY-FRESH-00000-22222", [None])
        assert (beyond, fresh) == ([429], [429])
