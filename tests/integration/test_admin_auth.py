"""Admin bearer tokens and roles through HTTP (SPEC §6)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from tests.integration.helpers import create_license

Client = TestClient[Any, Any]
PROBLEM = "application/problem+json"


async def issue(admin: Client, headers: dict[str, str], role: str) -> dict[str, Any]:
    response = await admin.post(
        "/admin/v1/tokens", json={"name": f"{role}-bot", "role": role}, headers=headers
    )
    assert response.status == 201, await response.text()
    token: dict[str, Any] = await response.json()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_or_unknown_token_is_401_problem(admin_client: Client) -> None:
    for headers in ({}, bearer("nope"), {"Authorization": "Basic abc"}):
        response = await admin_client.get("/admin/v1/releases", headers=headers)
        assert response.status == 401
        assert response.content_type == PROBLEM
        assert (await response.json())["status"] == 401


async def test_viewer_reads_but_cannot_write(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    license = await create_license(admin_client, admin_headers)
    viewer = bearer((await issue(admin_client, admin_headers, "viewer"))["token"])

    read = await admin_client.get(f"/admin/v1/licenses/{license['key']}", headers=viewer)
    assert read.status == 200
    write = await admin_client.post(
        f"/admin/v1/licenses/{license['key']}/disable", json={"reason": "x"}, headers=viewer
    )
    assert write.status == 403
    assert write.content_type == PROBLEM
    again = await admin_client.get(f"/admin/v1/licenses/{license['key']}", headers=admin_headers)
    assert (await again.json())["status"] == "active"


async def test_reviewer_cannot_issue_tokens(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    reviewer = bearer((await issue(admin_client, admin_headers, "reviewer"))["token"])
    response = await admin_client.post(
        "/admin/v1/tokens", json={"name": "sneaky", "role": "admin"}, headers=reviewer
    )
    assert response.status == 403


async def test_issued_admin_token_works_and_is_the_audit_actor(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    admin = bearer((await issue(admin_client, admin_headers, "admin"))["token"])
    created = await admin_client.post(
        "/admin/v1/customers", json={"name": "Zed", "email": "z@example.com"}, headers=admin
    )
    assert created.status == 201
    customer_id = (await created.json())["id"]
    audit = await admin_client.get(
        "/admin/v1/audit", params={"target": f"customer:{customer_id}"}, headers=admin
    )
    [row] = (await audit.json())["items"]
    assert (row["actor"], row["action"]) == ("admin-bot", "customer.create")


async def test_revoked_token_is_refused(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    issued = await issue(admin_client, admin_headers, "viewer")
    assert (await admin_client.get("/admin/v1/releases", headers=bearer(issued["token"]))).ok

    revoked = await admin_client.delete(f"/admin/v1/tokens/{issued['id']}", headers=admin_headers)
    assert revoked.status == 200
    assert (await revoked.json())["revoked_at"] is not None
    response = await admin_client.get("/admin/v1/releases", headers=bearer(issued["token"]))
    assert response.status == 401


async def test_tokens_are_stored_hashed_and_listed_without_secrets(
    admin_client: Client, admin_headers: dict[str, str], resources: Resources
) -> None:
    issued = await issue(admin_client, admin_headers, "viewer")
    listing = await admin_client.get("/admin/v1/tokens", headers=admin_headers)
    [item] = (await listing.json())["items"]
    assert item["name"] == "viewer-bot"
    assert "token" not in item and "token_hash" not in item
    stored = await resources.pool.fetchval("SELECT token_hash FROM api_tokens")
    assert issued["token"].encode() not in bytes(stored)
    audit = await admin_client.get(
        "/admin/v1/audit", params={"target": f"token:{issued['id']}"}, headers=admin_headers
    )
    assert [row["action"] for row in (await audit.json())["items"]] == ["token.create"]


async def test_bad_role_and_unknown_token_id(
    admin_client: Client, admin_headers: dict[str, str]
) -> None:
    bad = await admin_client.post(
        "/admin/v1/tokens", json={"name": "x", "role": "root"}, headers=admin_headers
    )
    assert bad.status == 400
    assert (await bad.json())["field"] == "role"
    for token_id in ("999", "abc"):
        missing = await admin_client.delete(f"/admin/v1/tokens/{token_id}", headers=admin_headers)
        assert missing.status == 404
        assert missing.content_type == PROBLEM
