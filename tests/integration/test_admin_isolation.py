"""Admin reads never starve the activation path (SPEC §5: no request disturbs the answers to
other clients' requests): a 1000-row page of the review queue is one Redis round trip on the
admin's own connections, while activations run beside it in the same process."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from tests.integration.helpers import activation_body, create_customer, create_license

Client = TestClient[Any, Any]
CASES = 1000
ACTIVATIONS = 2000


async def open_cases(resources: Resources, customer_id: int, count: int) -> None:
    """`count` licenses with an open case each, written straight to PostgreSQL (the queue reads
    them from there; how they opened is the worker's business, tested elsewhere)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,
                                     ms_covered_through)
               SELECT 'ISOLA-' || lpad(n::text, 5, '0'), $1, 'smartermail', 'perpetual',
                      'enterprise', DATE '2026-06-01', DATE '2027-05-31'
               FROM generate_series(1, $2) AS n""",
            customer_id,
            count,
        )
        await conn.execute(
            """INSERT INTO fraud_cases (license_key, opened_at, servers_active, servers_allowed)
               SELECT key, now(), 2, 1 FROM licenses WHERE key LIKE 'ISOLA-%'"""
        )


@pytest.mark.no_queue_shedding(
    "2000 activations sent at once by a client in the server's own event loop wait there longer"
    " than MAX_QUEUE_DELAY_MS on a busy machine; what is checked is that the page delays none"
)
async def test_a_1000_row_page_beside_2000_activations_disturbs_none(
    resources: Resources, public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    customer_id = await create_customer(admin_client, admin_headers)
    keys = [
        (await create_license(admin_client, admin_headers, customer_id=customer_id))["key"]
        for _ in range(20)
    ]
    await open_cases(resources, customer_id, CASES)

    refusals: list[str] = []

    async def activation(n: int) -> int:
        body = activation_body(keys[n % len(keys)], f"server-{n % len(keys)}")
        async with public_client.post("/v1/activations", json=body) as response:
            text = await response.text()
            if response.status != 200:
                refusals.append(text)
            return response.status

    async def page() -> tuple[int, int]:
        await asyncio.sleep(0.05)  # while the activations are in flight
        async with admin_client.get(
            "/admin/v1/cases", params={"limit": "1000"}, headers=admin_headers
        ) as response:
            items = (await response.json())["items"] if response.status == 200 else []
            return response.status, len(items)

    pages = [asyncio.create_task(page()) for _ in range(3)]
    statuses = Counter(await asyncio.gather(*(activation(n) for n in range(ACTIVATIONS))))
    answered = await asyncio.gather(*pages)
    assert statuses == {200: ACTIVATIONS}, f"by status: {dict(statuses)}; first: {refusals[:3]}"
    assert answered == [(200, CASES)] * 3, f"pages (status, items): {answered}"


async def test_limit_above_1000_is_refused_naming_limit(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    response = await admin_client.get(
        "/admin/v1/cases", params={"limit": "1001"}, headers=admin_headers
    )
    assert response.status == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "limit" in (await response.json())["detail"]
