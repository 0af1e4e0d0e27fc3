"""Admin hardening through HTTP (SPEC §6): wrong tokens are throttled per client address on
the admin API and the console login alike (one count, kept in Redis, the TRUSTED_PROXIES rule
of the public API), and moves of the test clock are audited."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from activation.admin.auth_failures import BLOCK_SECONDS, FAILURES_ALLOWED
from activation.client_address import parse_trusted
from activation.config import Settings
from activation.runtime import Resources, open_resources
from fraud.admin_app import create_admin_app
from tests.conftest import BOOTSTRAP_TOKEN
from tests.integration.helpers import Client
from tests.integration.test_console import csrf_of

PROBLEM = "application/problem+json"


@contextlib.asynccontextmanager
async def admin_api(settings: Settings, aiohttp_client: Any) -> AsyncIterator[Client]:
    """An admin app of its own (as another process would serve it) on `settings`."""
    async with open_resources(settings) as resources:
        yield await aiohttp_client(create_admin_app(resources))


def bearer(token: str, forwarded_for: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


async def guess(client: Client, times: int, forwarded_for: str | None = None) -> list[int]:
    answers = []
    for n in range(times):
        headers = bearer(f"guess-{n}", forwarded_for)
        answers.append((await client.get("/admin/v1/releases", headers=headers)).status)
    return answers


async def test_wrong_bearer_tokens_are_throttled_per_address(
    admin_client: Client, settings: Settings, resources: Resources, aiohttp_client: Any
) -> None:
    """After 10 wrong tokens from one address even the right token is refused with a 429
    problem and Retry-After, on every process of the deployment (another admin app on the
    same Redis), and the console's login from that address too."""
    assert await guess(admin_client, FAILURES_ALLOWED) == [401] * FAILURES_ALLOWED
    no_token = await admin_client.get("/admin/v1/releases")
    assert no_token.status == 401  # not a guess: not counted, and still told what is missing
    refused = await admin_client.get("/admin/v1/releases", headers=bearer(BOOTSTRAP_TOKEN))
    assert refused.status == 429
    assert refused.content_type == PROBLEM
    assert 1 <= int(refused.headers["Retry-After"]) <= BLOCK_SECONDS
    assert (await refused.json())["status"] == 429
    async with admin_api(settings, aiohttp_client) as other_process:
        elsewhere = await other_process.get("/admin/v1/releases", headers=bearer(BOOTSTRAP_TOKEN))
        assert elsewhere.status == 429
    form = await admin_client.get("/console/login")
    login = await admin_client.post(
        "/console/login",
        data={"csrf": csrf_of(await form.text()), "token": BOOTSTRAP_TOKEN},
        allow_redirects=False,
    )
    assert login.status == 429
    assert login.content_type == "text/html"
    assert "Too many failed logins" in await login.text()


async def test_console_login_failures_count_for_the_admin_api(admin_client: Client) -> None:
    for _ in range(FAILURES_ALLOWED):
        form = await admin_client.get("/console/login")
        response = await admin_client.post(
            "/console/login", data={"csrf": csrf_of(await form.text()), "token": "guess"}
        )
        assert response.status == 401
    refused = await admin_client.get("/admin/v1/releases", headers=bearer(BOOTSTRAP_TOKEN))
    assert refused.status == 429


async def test_throttling_follows_the_trusted_proxy_rule(
    settings: Settings, resources: Resources, aiohttp_client: Any
) -> None:
    """Behind a trusted proxy each forwarded client has its own count; from an untrusted peer
    a forged X-Forwarded-For changes nothing."""
    behind_proxy = dataclasses.replace(settings, trusted_proxies=parse_trusted("127.0.0.1/32"))
    async with admin_api(behind_proxy, aiohttp_client) as client:
        assert await guess(client, FAILURES_ALLOWED, "198.51.100.1") == [401] * FAILURES_ALLOWED
        blocked = await client.get(
            "/admin/v1/releases", headers=bearer(BOOTSTRAP_TOKEN, "198.51.100.1")
        )
        other = await client.get(
            "/admin/v1/releases", headers=bearer(BOOTSTRAP_TOKEN, "198.51.100.2")
        )
        assert (blocked.status, other.status) == (429, 200)
    untrusted = dataclasses.replace(settings, trusted_proxies=parse_trusted("10.0.0.0/8"))
    async with admin_api(untrusted, aiohttp_client) as client:
        forged = [(await guess(client, 1, f"203.0.113.{n}"))[0] for n in range(FAILURES_ALLOWED)]
        assert forged == [401] * FAILURES_ALLOWED
        still = await client.get(
            "/admin/v1/releases", headers=bearer(BOOTSTRAP_TOKEN, "203.0.113.200")
        )
        assert still.status == 429


@pytest.mark.moves_clock
async def test_test_clock_moves_are_audited(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """Who moved the deployment's clock, from when to when (both ways of moving it)."""
    url = "/admin/v1/test-clock"
    set_to = await admin_client.post(
        url, json={"now": "2030-01-01T00:00:00Z"}, headers=admin_headers
    )
    assert set_to.status == 200
    advanced = await admin_client.post(url, json={"advance_seconds": 86_400}, headers=admin_headers)
    assert advanced.status == 200
    audit = await admin_client.get("/admin/v1/audit?target=test-clock", headers=admin_headers)
    rows = (await audit.json())["items"]
    assert [(row["actor"], row["action"]) for row in rows] == [("bootstrap", "test_clock.move")] * 2
    newest, oldest = rows
    assert oldest["after"]["now"].startswith("2030-01-01T00:00:0")
    assert newest["before"]["now"].startswith("2030-01-01T00:00:")
    moved = _moment(newest["after"]["now"]) - _moment(newest["before"]["now"])
    assert 86_400 <= moved.total_seconds() < 86_400 + 5, moved


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
