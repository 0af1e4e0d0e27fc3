"""M&S through HTTP (R2–R5) with the seed dates: purchased 2018-09-01."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from tests.integration.helpers import create_license, set_clock

Client = TestClient[Any, Any]
Headers = dict[str, str]


async def seed(admin: Client, headers: Headers, **fields: Any) -> str:
    created = await create_license(admin, headers, purchased_on="2018-09-01", **fields)
    assert created["ms_covered_through"] == "2019-08-31"  # R2
    key: str = created["key"]
    return key


async def quote(admin: Client, headers: Headers, key: str, on: str) -> dict[str, Any]:
    response = await admin.get(
        f"/admin/v1/licenses/{key}/ms-quote", params={"on": on}, headers=headers
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_quotes(admin_client: Client, admin_headers: Headers) -> None:
    key = await seed(admin_client, admin_headers)
    early = await quote(admin_client, admin_headers, key, "2019-06-30")
    assert (early["kind"], early["first_allowed_on"]) == ("too_early", "2019-07-01")
    assert early["price_ratio"] is None
    renewal = await quote(admin_client, admin_headers, key, "2019-07-01")
    assert renewal["kind"] == "renewal"
    assert (renewal["price_ratio"], renewal["covered_through_after"]) == (0.5, "2020-08-31")
    late = await quote(admin_client, admin_headers, key, "2019-11-01")
    assert late["kind"] == "reinstatement"
    assert (late["price_ratio"], late["covered_through_after"]) == (0.8, "2020-10-31")


@pytest.mark.moves_clock
async def test_quote_defaults_to_the_clock_and_needs_ms(
    admin_client: Client, admin_headers: Headers
) -> None:
    key = await seed(admin_client, admin_headers)
    await set_clock(admin_client, admin_headers, "2019-08-15T12:00:00Z")
    response = await admin_client.get(f"/admin/v1/licenses/{key}/ms-quote", headers=admin_headers)
    assert (await response.json())["kind"] == "renewal"
    lease = (await create_license(admin_client, admin_headers, kind="lease"))["key"]
    refused = await admin_client.get(f"/admin/v1/licenses/{lease}/ms-quote", headers=admin_headers)
    assert refused.status == 422
    bad = await admin_client.get(
        f"/admin/v1/licenses/{key}/ms-quote", params={"on": "2019-13-01"}, headers=admin_headers
    )
    assert bad.status == 400 and (await bad.json())["field"] == "on"


async def test_renewal_too_early_is_409_naming_the_date(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    key = await seed(admin_client, admin_headers)
    response = await admin_client.post(
        f"/admin/v1/licenses/{key}/ms-renewals", json={"on": "2019-06-30"}, headers=admin_headers
    )
    assert response.status == 409
    problem = await response.json()
    assert problem["first_allowed_on"] == "2019-07-01"
    assert "2019-07-01" in problem["detail"]
    assert await resources.pool.fetchval("SELECT count(*) FROM ms_transactions") == 1


async def test_renewal_extends_from_the_current_end(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    key = await seed(admin_client, admin_headers)
    response = await admin_client.post(
        f"/admin/v1/licenses/{key}/ms-renewals", json={"on": "2019-07-01"}, headers=admin_headers
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["kind"], body["ms_covered_through"]) == ("renewal", "2020-08-31")
    read = await admin_client.get(f"/admin/v1/licenses/{key}", headers=admin_headers)
    license = await read.json()
    assert license["ms_covered_through"] == "2020-08-31"
    [purchase, renewal] = license["ms_transactions"]
    assert purchase["kind"] == "purchase"
    assert (renewal["kind"], renewal["price_ratio"]) == ("renewal", 0.5)
    assert renewal["covered_through_before"] == "2019-08-31"
    cached = await resources.redis.hget(resources.layout.for_license(key, 0).license, "doc")
    assert isinstance(cached, bytes)
    assert b'"ms_covered_through":"2020-08-31"' in cached


@pytest.mark.moves_clock
async def test_reinstatement_runs_from_its_date(
    admin_client: Client, admin_headers: Headers
) -> None:
    key = await seed(admin_client, admin_headers)
    await set_clock(admin_client, admin_headers, "2019-11-01T09:00:00Z")
    response = await admin_client.post(
        f"/admin/v1/licenses/{key}/ms-renewals", headers=admin_headers
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["kind"], body["price_ratio"]) == ("reinstatement", 0.8)
    assert body["ms_covered_through"] == "2020-10-31"
    assert body["license"]["ms_status"] == "protected"


@pytest.mark.moves_clock
async def test_ms_status(admin_client: Client, admin_headers: Headers) -> None:
    key = await seed(admin_client, admin_headers)
    for now, status in (
        ("2019-01-01T00:00:00Z", "protected"),
        ("2019-08-01T00:00:00Z", "expiring_soon"),
        ("2019-09-01T00:00:00Z", "expired"),
    ):
        await set_clock(admin_client, admin_headers, now)
        read = await admin_client.get(f"/admin/v1/licenses/{key}", headers=admin_headers)
        assert (await read.json())["ms_status"] == status, now


@pytest.mark.moves_clock
async def test_auto_renew_cancel_window(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    key = await seed(admin_client, admin_headers)
    url = f"/admin/v1/licenses/{key}/auto-renew"
    on = await admin_client.put(url, json={"enabled": True}, headers=admin_headers)
    assert on.status == 200 and (await on.json())["auto_renew"] is True

    await set_clock(admin_client, admin_headers, "2019-08-17T08:00:00Z")  # 14 days before
    refused = await admin_client.put(url, json={"enabled": False}, headers=admin_headers)
    assert refused.status == 409
    assert await resources.pool.fetchval("SELECT auto_renew FROM licenses") is True

    await set_clock(admin_client, admin_headers, "2019-08-16T08:00:00Z")  # 15 days before
    allowed = await admin_client.put(url, json={"enabled": False}, headers=admin_headers)
    assert allowed.status == 200 and (await allowed.json())["auto_renew"] is False
    bad = await admin_client.put(url, json={"enabled": "no"}, headers=admin_headers)
    assert bad.status == 400

    free = (await create_license(admin_client, admin_headers, kind="free", edition="free"))["key"]
    none = await admin_client.put(
        f"/admin/v1/licenses/{free}/auto-renew", json={"enabled": True}, headers=admin_headers
    )
    assert none.status == 422


async def test_test_clock_is_404_when_disabled(
    admin_client: Client, admin_headers: Headers
) -> None:
    """Production's default: there is no clock to read or move."""
    read = await admin_client.get("/admin/v1/test-clock", headers=admin_headers)
    moved = await admin_client.post(
        "/admin/v1/test-clock", json={"advance_seconds": 60}, headers=admin_headers
    )
    for response in (read, moved):
        assert response.status == 404
        assert response.content_type == "application/problem+json"
