"""Each license reaches the Redis cache once per change (R17 stays met): an admin write, the
worker's auto-renewal and `activation-server rebuild-cache` put the document and mark that row
version synced, so the worker's sweep does not write it again; a change made outside them is
still swept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from activation.config import Settings
from activation.runtime import Resources
from fraud.cache_sync import CacheSync
from fraud.ms_duties import MsDuties
from tests.integration.helpers import create_customer, create_license, insert_licenses
from tests.integration.servers import SERVER, server_env

Client = TestClient[Any, Any]


async def unsynced(resources: Resources) -> list[str]:
    rows = await resources.pool.fetch("SELECT key FROM licenses WHERE NOT cache_synced")
    return sorted(row["key"] for row in rows)


async def cached_doc(resources: Resources, key: str) -> dict[str, Any]:
    """The license document the Redis cache holds for `key`."""
    doc = await resources.redis.hget(resources.layout.for_license(key, 0).license, "doc")
    assert isinstance(doc, bytes), f"no cached document for {key}"
    cached: dict[str, Any] = orjson.loads(doc)
    return cached


async def test_created_imported_and_changed_licenses_are_written_once_R17(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    sweep = CacheSync(resources.pool, resources.store)
    customer_id = await create_customer(admin_client, admin_headers)
    created = await create_license(admin_client, admin_headers, customer_id=customer_id)
    imported = [f"IMPRT-{n:05d}-AAAAA-BBBBB-CCCCC" for n in range(3)]
    response = await admin_client.post(
        "/admin/v1/licenses/import",
        json={
            "licenses": [
                {"key": key, "customer_id": customer_id, "product": "smartermail",
                 "kind": "perpetual", "edition": "enterprise", "purchased_on": "2026-06-01",
                 "addons": ["eas"]}
                for key in imported
            ]
        },
        headers=admin_headers,
    )  # fmt: skip
    assert response.status == 200, await response.text()
    response = await admin_client.post(
        f"/admin/v1/licenses/{created['key']}/disable",
        json={"reason": "test"},
        headers=admin_headers,
    )
    assert response.status == 200, await response.text()
    assert await unsynced(resources) == []
    assert await sweep.run_once() == 0, "the sweep wrote licenses the admin API had written"

    await resources.pool.execute(
        "UPDATE licenses SET auto_renew = true WHERE key = $1", imported[0]
    )  # outside the admin API: only the sweep can carry it to Redis
    assert await unsynced(resources) == [imported[0]]
    assert await sweep.run_once() == 1
    assert await unsynced(resources) == []


async def test_an_auto_renewal_is_written_once_R5_R17(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    sweep = CacheSync(resources.pool, resources.store)
    created = await create_license(
        admin_client, admin_headers, purchased_on="2026-06-01", auto_renew=True
    )
    key = created["key"]
    assert created["ms_covered_through"] == "2027-05-31"
    assert await unsynced(resources) == []

    duties = MsDuties(resources.pool, resources.store)
    report = await duties.run(datetime(2027, 5, 31, 9, tzinfo=UTC))  # the last covered day
    assert report.renewals == 1
    assert (await cached_doc(resources, key))["ms_covered_through"] == "2028-05-31"
    assert await unsynced(resources) == []
    assert await sweep.run_once() == 0, "the sweep wrote the renewal the worker had written"


async def test_rebuild_cache_writes_each_license_once_R17(
    resources: Resources, settings: Settings, tmp_path: Path
) -> None:
    keys = [f"REBLD-{n:05d}-AAAAA-BBBBB-CCCCC" for n in range(3)]
    async with resources.pool.acquire() as connection:
        await insert_licenses(connection, keys, "ops@rebuild.test", 2)
    assert await unsynced(resources) == keys  # written outside the admin API

    assert settings.database_url is not None and settings.redis_url is not None
    env = server_env(settings.database_url, settings.redis_url, settings.redis_prefix, tmp_path)
    command = await asyncio.create_subprocess_exec(
        str(SERVER),
        "rebuild-cache",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await command.communicate()
    assert command.returncode == 0, output.decode()
    assert b"rebuilt the Redis cache of 3 licenses" in output
    for key in keys:
        assert (await cached_doc(resources, key))["key"] == key
    assert await unsynced(resources) == []
    assert await CacheSync(resources.pool, resources.store).run_once() == 0, (
        "the sweep wrote licenses rebuild-cache had written"
    )
