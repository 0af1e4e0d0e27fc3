"""Each license reaches the Redis cache once per change (R17 stays met): an admin write puts
the document and marks that row version synced, so the worker's sweep does not write it again;
a change made outside the admin API is still swept."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from fraud.cache_sync import CacheSync
from tests.integration.helpers import create_customer, create_license

Client = TestClient[Any, Any]


async def unsynced(resources: Resources) -> list[str]:
    rows = await resources.pool.fetch("SELECT key FROM licenses WHERE NOT cache_synced")
    return sorted(row["key"] for row in rows)


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
