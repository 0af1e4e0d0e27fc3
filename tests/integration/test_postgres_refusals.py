"""PostgreSQL up but refusing writes: a database turned read-only (a failover that left the
configured address on a standby, or `default_transaction_read_only` set during maintenance).

Admin writes are an outage then (503 with Retry-After, nothing half-written); activations keep
being answered, cache misses included, because the hot path only reads PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from activation.config import Settings
from activation.runtime import Resources
from tests.integration.helpers import Client, activation_body, create_license


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
        write = await admin_client.post(
            f"/admin/v1/licenses/{key}/disable", json={"reason": "refund"}, headers=admin_headers
        )
        text = await write.text()
        assert write.status == 503, text
        assert write.headers["Retry-After"]
        assert "PostgreSQL" in text

        answer = await public_client.post("/v1/activations", json=activation_body(key))
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["code"] == "VALID"  # the disable did not happen
