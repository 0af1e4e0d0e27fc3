"""Customers, licenses, imports, releases, the audit log and the test clock through HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from activation.admin import imports
from activation.runtime import Resources
from tests.integration.helpers import create_customer, create_license

Client = TestClient[Any, Any]
Headers = dict[str, str]
PROBLEM = "application/problem+json"
KEY = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"


async def license_count(resources: Resources) -> int:
    count: int = await resources.pool.fetchval("SELECT count(*) FROM licenses")
    return count


async def audit_actions(admin: Client, headers: Headers, target: str) -> list[str]:
    response = await admin.get("/admin/v1/audit", params={"target": target}, headers=headers)
    return [row["action"] for row in (await response.json())["items"]]


async def test_create_perpetual_license(admin_client: Client, admin_headers: Headers) -> None:
    created = await create_license(
        admin_client, admin_headers, purchased_on="2018-09-01", addons=["eas", "MAPI"],
        limits={"mailboxes": 250},
    )  # fmt: skip
    assert created["key"].count("-") == 4 and len(created["key"]) == 29
    assert created["ms_covered_through"] == "2019-08-31"
    assert created["status"] == "active"
    assert created["max_servers"] == 1
    assert created["addons"] == ["eas", "mapi"]
    assert created["limits"] == {"mailboxes": 250}
    assert [t["kind"] for t in created["ms_transactions"]] == ["purchase"]
    assert created["installations"] == [] and created["case"] is None
    read = await admin_client.get(f"/admin/v1/licenses/{created['key']}", headers=admin_headers)
    assert (await read.json())["ms_covered_through"] == "2019-08-31"
    assert await audit_actions(admin_client, admin_headers, f"license:{created['key']}") == [
        "license.create"
    ]


async def test_defaults_per_kind(admin_client: Client, admin_headers: Headers) -> None:
    failover = await create_license(admin_client, admin_headers, failover=True)
    assert failover["max_servers"] == 2
    lease = await create_license(admin_client, admin_headers, kind="lease")
    assert lease["ms_covered_through"] is None and lease["ms_status"] == "none"
    assert lease["ms_transactions"] == []
    free = await create_license(admin_client, admin_headers, kind="free", edition="free")
    assert free["ms_covered_through"] is None


async def test_import_a_given_key(admin_client: Client, admin_headers: Headers) -> None:
    created = await create_license(admin_client, admin_headers, key=KEY.lower())
    assert created["key"] == KEY
    customer_id = created["customer_id"]
    again = await admin_client.post(
        "/admin/v1/licenses",
        json={"customer_id": customer_id, "product": "smartermail", "kind": "perpetual",
              "edition": "enterprise", "purchased_on": "2020-01-01", "key": KEY},
        headers=admin_headers,
    )  # fmt: skip
    assert again.status == 409
    assert again.content_type == PROBLEM


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"customer_id": 999_999}, 422, "customer_id"),
        ({"kind": "free", "edition": "free", "addons": ["eas"]}, 422, "addons"),
        ({"addons": ["teleport"]}, 422, "addons"),
        ({"kind": "forever"}, 400, "kind"),
        ({"purchased_on": "yesterday"}, 400, "purchased_on"),
        ({"max_servers": "2"}, 400, "max_servers"),
        ({"max_servers": 0}, 400, "max_servers"),
        ({"failover": "yes"}, 400, "failover"),
        ({"limits": {"mailboxes": -1}}, 400, "limits"),
        ({"key": "NOT-A-KEY"}, 400, "key"),
        ({"product": None}, 400, "product"),
    ],
)
async def test_bad_license_input_is_a_problem_and_stores_nothing(
    admin_client: Client,
    admin_headers: Headers,
    resources: Resources,
    fields: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body: dict[str, Any] = {
        "customer_id": await create_customer(admin_client, admin_headers),
        "product": "smartermail", "kind": "perpetual", "edition": "enterprise",
        "purchased_on": "2026-06-01", "failover": False,
    }  # fmt: skip
    body.update(fields)
    response = await admin_client.post("/admin/v1/licenses", json=body, headers=admin_headers)
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    assert (await response.json())["field"] == field
    assert await license_count(resources) == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_bodies(admin_client: Client, admin_headers: Headers, raw: bytes) -> None:
    response = await admin_client.post("/admin/v1/licenses", data=raw, headers=admin_headers)
    assert response.status == 400
    assert response.content_type == PROBLEM


async def test_unknown_things_are_404_problems(
    admin_client: Client, admin_headers: Headers
) -> None:
    for path in ("/admin/v1/licenses/" + KEY, "/admin/v1/customers/42", "/admin/v1/nothing"):
        response = await admin_client.get(path, headers=admin_headers)
        assert response.status == 404, path
        assert response.content_type == PROBLEM
    wrong_method = await admin_client.patch("/admin/v1/releases", headers=admin_headers)
    assert wrong_method.status == 405
    assert wrong_method.content_type == PROBLEM


async def test_disable_and_enable_write_through_to_redis(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    key = (await create_license(admin_client, admin_headers))["key"]
    cache_key = resources.layout.for_license(key, 0).license

    disabled = await admin_client.post(
        f"/admin/v1/licenses/{key}/disable", json={"reason": "chargeback"}, headers=admin_headers
    )
    assert disabled.status == 200
    body = await disabled.json()
    assert (body["status"], body["disabled_reason"]) == ("disabled", "chargeback")
    assert body["disabled_at"].endswith("Z")
    assert await resources.redis.hget(cache_key, "status") == b"disabled"

    enabled = await admin_client.post(f"/admin/v1/licenses/{key}/enable", headers=admin_headers)
    assert (await enabled.json())["status"] == "active"
    assert await resources.redis.hget(cache_key, "status") == b"active"
    response = await admin_client.get(
        "/admin/v1/audit", params={"target": f"license:{key}"}, headers=admin_headers
    )
    items = (await response.json())["items"]
    assert [row["action"] for row in items] == [
        "license.enable", "license.disable", "license.create",
    ]  # fmt: skip
    assert items[1]["before"]["status"] == "active"
    assert items[1]["after"]["status"] == "disabled"


async def test_disable_needs_a_reason(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    key = (await create_license(admin_client, admin_headers))["key"]
    response = await admin_client.post(
        f"/admin/v1/licenses/{key}/disable", json={}, headers=admin_headers
    )
    assert response.status == 400
    assert await resources.pool.fetchval("SELECT status FROM licenses") == "active"


async def test_addons(admin_client: Client, admin_headers: Headers, resources: Resources) -> None:
    key = (await create_license(admin_client, admin_headers))["key"]
    added = await admin_client.post(
        f"/admin/v1/licenses/{key}/addons", json={"name": "ews"}, headers=admin_headers
    )
    assert added.status == 201
    assert (await added.json())["addons"] == ["ews"]
    cached = await resources.redis.hget(resources.layout.for_license(key, 0).license, "doc")
    assert isinstance(cached, bytes)
    assert b'"ews"' in cached
    twice = await admin_client.post(
        f"/admin/v1/licenses/{key}/addons", json={"name": "ews"}, headers=admin_headers
    )
    assert twice.status == 409
    removed = await admin_client.delete(
        f"/admin/v1/licenses/{key}/addons/ews", headers=admin_headers
    )
    assert (await removed.json())["addons"] == []
    gone = await admin_client.delete(f"/admin/v1/licenses/{key}/addons/ews", headers=admin_headers)
    assert gone.status == 404

    free = (await create_license(admin_client, admin_headers, kind="free", edition="free"))["key"]
    refused = await admin_client.post(
        f"/admin/v1/licenses/{free}/addons", json={"name": "eas"}, headers=admin_headers
    )
    assert refused.status == 422
    assert await resources.pool.fetchval("SELECT count(*) FROM license_addons") == 0


async def test_customer_with_its_licenses(admin_client: Client, admin_headers: Headers) -> None:
    customer_id = await create_customer(admin_client, admin_headers, "Globex")
    key = (await create_license(admin_client, admin_headers, customer_id=customer_id))["key"]
    response = await admin_client.get(f"/admin/v1/customers/{customer_id}", headers=admin_headers)
    body = await response.json()
    assert body["name"] == "Globex"
    assert [license["key"] for license in body["licenses"]] == [key]
    for not_an_id in ("%C2%B2", "x", "9" * 19):  # '²': str.isdigit() accepts it, int() does not
        missing = await admin_client.get(f"/admin/v1/customers/{not_an_id}", headers=admin_headers)
        assert missing.status == 404, not_an_id
        assert missing.content_type == "application/problem+json"
    bad = await admin_client.post(
        "/admin/v1/customers", json={"name": "X", "email": "not-an-address"}, headers=admin_headers
    )
    assert bad.status == 400 and (await bad.json())["field"] == "email"


async def test_import_json_reports_failed_rows(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    customer_id = await create_customer(admin_client, admin_headers)
    row = {"customer_id": customer_id, "product": "smartermail", "kind": "perpetual",
           "edition": "professional", "purchased_on": "2020-05-01", "key": KEY}  # fmt: skip
    rows = [
        row,
        row | {"key": "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "ms_covered_through": "2027-04-30"},
        row,  # duplicate key
        row | {"key": "AAAAA-BBBBB-CCCCC-DDDDD-FFFFF", "customer_id": 999_999},
        row | {"key": None},
        "not an object",
    ]
    response = await admin_client.post(
        "/admin/v1/licenses/import", json={"licenses": rows}, headers=admin_headers
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["imported"] == 2
    assert [failure["row"] for failure in body["failed"]] == [3, 4, 5, 6]
    assert "customer_id" in body["failed"][1]["detail"]
    assert await license_count(resources) == 2
    covered = await resources.pool.fetchval(
        "SELECT ms_covered_through FROM licenses WHERE key = 'AAAAA-BBBBB-CCCCC-DDDDD-EEEEE'"
    )
    assert covered.isoformat() == "2027-04-30"
    assert await resources.redis.exists(resources.layout.for_license(KEY, 0).license)


async def test_import_csv(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    customer_id = await create_customer(admin_client, admin_headers)
    csv_text = (
        "key,customer_id,product,kind,edition,purchased_on,failover,addons,limits\n"
        f"{KEY},{customer_id},smartermail,perpetual,enterprise,2019-01-15,true,eas;mapi,"
        "mailboxes=100;domains=5\n"
        f"AAAAA-BBBBB-CCCCC-DDDDD-EEEEE,{customer_id},smartermail,free,free,2019-01-15,no,,\n"
        f"AAAAA-BBBBB-CCCCC-DDDDD-FFFFF,x{customer_id},smartermail,free,free,2019-01-15,,,\n"
    )
    response = await admin_client.post(
        "/admin/v1/licenses/import",
        data=csv_text.encode(),
        headers=admin_headers | {"Content-Type": "text/csv"},
    )
    body = await response.json()
    assert body["imported"] == 2, body
    assert [(f["row"], f["key"]) for f in body["failed"]] == [(3, "AAAAA-BBBBB-CCCCC-DDDDD-FFFFF")]
    read = await admin_client.get(f"/admin/v1/licenses/{KEY}", headers=admin_headers)
    license = await read.json()
    assert (license["max_servers"], license["addons"]) == (2, ["eas", "mapi"])
    assert license["limits"] == {"mailboxes": 100, "domains": 5}
    assert license["ms_covered_through"] == "2020-01-14"


async def test_releases(admin_client: Client, admin_headers: Headers, resources: Resources) -> None:
    body = {"product": "smartermail", "version": "16.3.6989", "released_on": "2019-02-01"}
    created = await admin_client.post("/admin/v1/releases", json=body, headers=admin_headers)
    assert created.status == 201
    assert [str(r.version) for r in resources.releases.for_product("smartermail")] == ["16.3.6989"]
    duplicate = await admin_client.post("/admin/v1/releases", json=body, headers=admin_headers)
    assert duplicate.status == 409
    bad = await admin_client.post(
        "/admin/v1/releases", json=body | {"version": "16.3"}, headers=admin_headers
    )
    assert bad.status == 400 and (await bad.json())["field"] == "version"
    listing = await admin_client.get(
        "/admin/v1/releases", params={"product": "smartermail"}, headers=admin_headers
    )
    assert [r["version"] for r in (await listing.json())["items"]] == ["16.3.6989"]
    release_id = (await created.json())["id"]
    assert await audit_actions(admin_client, admin_headers, f"release:{release_id}") == [
        "release.create"
    ]


@pytest.mark.moves_clock
async def test_test_clock(admin_client: Client, admin_headers: Headers) -> None:
    moved = await admin_client.post(
        "/admin/v1/test-clock", json={"now": "2030-01-01T00:00:00Z"}, headers=admin_headers
    )
    assert (await moved.json())["now"].startswith("2030-01-01T00:00:0")
    advanced = await admin_client.post(
        "/admin/v1/test-clock", json={"advance_seconds": 86_400}, headers=admin_headers
    )
    assert (await advanced.json())["now"].startswith("2030-01-02")
    read = await admin_client.get("/admin/v1/test-clock", headers=admin_headers)
    assert (await read.json())["now"].endswith("Z")
    bad = await admin_client.post(
        "/admin/v1/test-clock", json={"advance_seconds": "soon"}, headers=admin_headers
    )
    assert bad.status == 400


@pytest.mark.moves_clock
async def test_test_clock_stays_within_the_years_now_may_be_set_to(
    admin_client: Client, admin_headers: Headers
) -> None:
    """Steps of advance_seconds add up: they may not carry the clock past LAST_YEAR (2999),
    where date arithmetic would end in 500s."""
    url = "/admin/v1/test-clock"
    end = {"now": "2999-06-01T00:00:00Z"}
    assert (await admin_client.post(url, json=end, headers=admin_headers)).status == 200
    year = {"advance_seconds": 365 * 86_400}
    refused = await admin_client.post(url, json=year, headers=admin_headers)
    assert refused.status == 400 and (await refused.json())["field"] == "advance_seconds"
    back = {"advance_seconds": -86_400}
    moved = await admin_client.post(url, json=back, headers=admin_headers)
    assert (await moved.json())["now"].startswith("2999-05-31")
    late = {"now": "3000-01-01T00:00:00Z"}
    assert (await admin_client.post(url, json=late, headers=admin_headers)).status == 400


async def test_hostile_input_is_4xx(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    customer = await admin_client.post(
        "/admin/v1/customers", json={"name": "a\x00b", "email": "a@b.c"}, headers=admin_headers
    )
    assert customer.status == 400
    far = await create_customer(admin_client, admin_headers)
    future = await admin_client.post(
        "/admin/v1/licenses",
        json={"customer_id": far, "product": "smartermail", "kind": "perpetual",
              "edition": "enterprise", "purchased_on": "9999-12-31"},
        headers=admin_headers,
    )  # fmt: skip
    assert future.status == 400
    for path in ("/admin/v1/licenses/%00", "/admin/v1/licenses/" + "A" * 5000):
        response = await admin_client.get(path, headers=admin_headers)
        assert response.status == 404
    audit = await admin_client.get(
        "/admin/v1/audit", params={"target": "x\x00", "limit": "5"}, headers=admin_headers
    )
    assert audit.status == 400
    csv_nul = await admin_client.post(
        "/admin/v1/licenses/import",
        data=b"key,product\n\x00,\x00\n",
        headers=admin_headers | {"Content-Type": "text/csv"},
    )
    assert csv_nul.status in (200, 400)
    assert await license_count(resources) == 0


async def test_an_import_is_at_most_max_rows(
    admin_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    csv_text = "key,product\n" + "x,y\n" * (imports.MAX_ROWS + 1)
    response = await admin_client.post(
        "/admin/v1/licenses/import",
        data=csv_text.encode(),
        headers=admin_headers | {"Content-Type": "text/csv"},
    )
    assert response.status == 400, await response.text()
    assert "at most 100,000 rows" in (await response.json())["detail"]
    assert await resources.pool.fetchval("SELECT count(*) FROM licenses") == 0


async def test_an_import_hands_the_event_loop_back_between_rows(resources: Resources) -> None:
    """The public API shares the admin app's event loop: rows that fail validation (which never
    await the database) must not keep it for the whole import."""
    rows: list[Mapping[str, Any]] = [{"product": "x"}] * (20 * imports.YIELD_EVERY)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)  # the counter is running
    turns = 0
    async with resources.pool.acquire() as conn, conn.transaction():
        imported, failed = await imports.import_all(
            conn, rows, csv_input=False, who="test", at=datetime.now(UTC)
        )
    counter.cancel()
    assert (len(imported), len(failed)) == (0, len(rows))
    assert turns >= 19  # the loop came back at least once every YIELD_EVERY rows
