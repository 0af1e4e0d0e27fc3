"""PostgreSQL up but refusing writes: a database turned read-only (a failover that left the
configured address on a standby, or `default_transaction_read_only` set during maintenance).

Admin writes are an outage then (503 with Retry-After, nothing half-written); activations keep
being answered, cache misses included, because the hot path only reads PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
from aiohttp import ClientResponse

from activation.config import Settings
from activation.runtime import Resources, open_resources
from activation.store.registry import LICENSE_LOAD_TIMEOUT_S
from fraud.admin_app import create_admin_app
from tests.conftest import _clean
from tests.integration.helpers import Client, activation_body, assert_outage, create_license


@contextlib.asynccontextmanager
async def read_only(settings: Settings, resources: Resources) -> AsyncIterator[None]:
    """The test's database read-only by default for every new session, and the pool's idle
    connections replaced so they are such sessions; undone afterwards."""
    assert settings.database_url is not None
    name = settings.database_url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await resources.pool.expire_connections()
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.close()
        await resources.pool.expire_connections()


@contextlib.asynccontextmanager
async def licenses_locked(database_url: str | None) -> AsyncIterator[None]:
    """`licenses` held under ACCESS EXCLUSIVE by another session, as a migration would: every
    query on it waits until the block ends."""
    assert database_url is not None
    blocker = await asyncpg.connect(database_url)
    try:
        await blocker.execute("BEGIN; LOCK TABLE licenses IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()


async def _outage_after(request: Awaitable[ClientResponse]) -> float:
    """Seconds until `request` was answered as a PostgreSQL outage (`assert_outage`)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await asyncio.wait_for(request, 10)
    waited = loop.time() - started
    await assert_outage(response, "PostgreSQL")
    return waited


async def test_read_only_database_admin_writes_503_activations_still_answered(
    public_client: Client,
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
    settings: Settings,
) -> None:
    created = await create_license(admin_client, admin_headers)
    key = created["key"]
    await resources.store.forget_license(key)  # the next activation is a cache miss
    async with read_only(settings, resources):
        await _outage_after(
            admin_client.post(
                f"/admin/v1/licenses/{key}/disable",
                json={"reason": "refund"},
                headers=admin_headers,
            )
        )

        answer = await public_client.post("/v1/activations", json=activation_body(key))
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["code"] == "VALID"  # the disable did not happen


async def test_stalled_database_cache_miss_is_503_in_bounded_time_hits_unaffected(
    public_client: Client,
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
    settings: Settings,
) -> None:
    """PostgreSQL that does not answer (here: a migration holding an ACCESS EXCLUSIVE lock on
    `licenses`): a cache miss waits at most LICENSE_LOAD_TIMEOUT_S, then 503 with Retry-After
    instead of waiting for as long as the lock is held; cached keys are answered as ever."""
    cached = (await create_license(admin_client, admin_headers))["key"]
    missed = (await create_license(admin_client, admin_headers))["key"]
    assert (await public_client.post("/v1/activations", json=activation_body(cached))).status == 200
    await resources.store.forget_license(missed)
    async with licenses_locked(settings.database_url):
        waited = await _outage_after(
            public_client.post("/v1/activations", json=activation_body(missed))
        )
        assert LICENSE_LOAD_TIMEOUT_S - 0.5 < waited < LICENSE_LOAD_TIMEOUT_S + 2
        hit = await public_client.post("/v1/activations", json=activation_body(cached))
        assert hit.status == 200
    after = await public_client.post("/v1/activations", json=activation_body(missed))
    assert after.status == 200, await after.text()


async def test_stalled_database_admin_request_is_503_after_the_database_timeout(
    settings: Settings, aiohttp_client: Any, admin_headers: dict[str, str]
) -> None:
    """Every other PostgreSQL operation (admin API, console, worker) waits at most
    DATABASE_TIMEOUT_SECONDS, then 503 with Retry-After: an admin write behind a migration's
    table lock does not wait for as long as the lock is held."""
    configured = dataclasses.replace(settings, database_timeout_seconds=1)
    await _clean(configured)
    async with open_resources(configured) as resources:
        admin = await aiohttp_client(create_admin_app(resources))
        key = (await create_license(admin, admin_headers))["key"]
        async with licenses_locked(configured.database_url):
            waited = await _outage_after(
                admin.post(
                    f"/admin/v1/licenses/{key}/disable",
                    json={"reason": "refund"},
                    headers=admin_headers,
                )
            )
            assert 0.5 < waited < 4
        shown = await admin.get(f"/admin/v1/licenses/{key}", headers=admin_headers)
        assert (await shown.json())["status"] == "active"  # nothing half-written
