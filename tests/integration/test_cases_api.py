"""The fraud team's cases API through HTTP (SPEC §6, §10; R12, R15, R16, R17): the queue, a
case's page, and every action with its roles, audit row and timeline row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.integration.helpers import activate, advance_clock, create_license, set_clock

Client = TestClient[Any, Any]
Headers = dict[str, str]
# Every case opens at START, so its deadlines are known dates; some tests step past them.
pytestmark = pytest.mark.moves_clock
PROBLEM = "application/problem+json"
DAY = 86_400
START = "2026-11-23T12:00:00Z"


def near(value: str | None, days: float) -> bool:
    """`value` is START + `days` (the test clock keeps running in real time after it is set)."""
    assert value is not None
    expected = datetime.fromisoformat(START) + timedelta(days=days)
    return abs(datetime.fromisoformat(value) - expected) < timedelta(minutes=1)


async def run_worker(resources: Resources) -> None:
    await Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics()).run_once()


async def open_case(
    admin: Client, public: Client, headers: Headers, resources: Resources, *servers: str
) -> tuple[int, str]:
    """A license used from two (or more) servers, and the worker's pass that opens its case."""
    created = await create_license(admin, headers, purchased_on="2026-09-01")
    key: str = created["key"]
    answers = [await activate(public, key, fp) for fp in servers or ("server-a", "server-b")]
    assert [a["code"] for a in answers[:2]] == ["VALID", "GRACE"]
    await run_worker(resources)
    case_id: int = await resources.pool.fetchval(
        "SELECT id FROM fraud_cases WHERE license_key = $1 AND status = 'open'", key
    )
    return case_id, key


async def token(admin: Client, headers: Headers, role: str) -> Headers:
    response = await admin.post(
        "/admin/v1/tokens", json={"name": f"{role}-1", "role": role}, headers=headers
    )
    assert response.status == 201, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def act(
    admin: Client, headers: Headers, case_id: int, status: int = 200, **body: Any
) -> dict[str, Any]:
    response = await admin.post(f"/admin/v1/cases/{case_id}/actions", json=body, headers=headers)
    assert response.status == status, await response.text()
    if status != 200:
        assert response.content_type == PROBLEM
    answer: dict[str, Any] = await response.json()
    return answer


async def listing(admin: Client, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    response = await admin.get("/admin/v1/cases", params=params, headers=headers)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def audit_actions(admin: Client, headers: Headers, target: str) -> list[str]:
    response = await admin.get("/admin/v1/audit", params={"target": target}, headers=headers)
    return [row["action"] for row in (await response.json())["items"]]


async def summary_fields(resources: Resources, key: str) -> dict[bytes, bytes]:
    lic = resources.layout.for_license(key, 0).license
    fields = await resources.redis.hgetall(lic)
    return {
        k: v for k, v in fields.items() if k in (b"stage", b"grace_ends", b"disable_at", b"over")
    }


@pytest.fixture
async def case(
    admin_client: Client, public_client: Client, admin_headers: Headers, resources: Resources
) -> tuple[int, str]:
    await set_clock(admin_client, admin_headers, START)
    return await open_case(admin_client, public_client, admin_headers, resources)


async def test_queue_item_and_case_page(
    admin_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, key = case
    viewer = await token(admin_client, admin_headers, "viewer")
    [item] = await listing(admin_client, viewer)
    assert item["id"] == case_id and item["license_key"] == key
    assert (item["stage"], item["status"], item["on_hold"]) == ("grace", "open", False)
    assert item["severity"] == "normal"
    assert near(item["opened_at"], 0)
    assert near(item["grace_ends_at"], 30) and item["grace_ends_at"] == item["next_deadline"]
    assert near(item["disable_at"], 44)
    assert sorted(s["hostname"] for s in item["servers"]) == [
        "server-a.example.com",
        "server-b.example.com",
    ]
    assert await listing(admin_client, viewer, status="resolved") == []
    assert [i["id"] for i in await listing(admin_client, viewer, status="all")] == [case_id]
    for q in ("server-b.EXAMPLE", key[:11].lower(), "acme@example"):
        assert [i["id"] for i in await listing(admin_client, viewer, q=q)] == [case_id], q
    assert await listing(admin_client, viewer, q="nowhere.example.org") == []
    assert await listing(admin_client, viewer, stage="overdue") == []
    assert len(await listing(admin_client, viewer, severity="normal", stage="grace")) == 1
    for bad in (
        {"status": "closed"},
        {"stage": "x"},
        {"limit": "0"},
        {"limit": "²"},  # str.isdigit() accepts it, int() does not
        {"offset": "-1"},
        {"offset": "²"},
        {"offset": "9" * 5000},  # int() refuses more than 4,300 digits
    ):
        response = await admin_client.get("/admin/v1/cases", params=bad, headers=viewer)
        assert response.status == 400, bad
        assert (await response.json())["field"] == next(iter(bad))

    response = await admin_client.get(f"/admin/v1/cases/{case_id}", headers=viewer)
    assert response.status == 200
    page = await response.json()
    assert page["servers"] == item["servers"]
    assert page["license"]["key"] == key
    assert page["license"]["customer"]["email"] == "acme@example.com"
    assert page["license"]["customer"]["phone"] == "+1 555 0100"
    assert [(e["kind"], e["actor"]) for e in page["timeline"]] == [("opened", "fraud-worker")]
    assert page["notifications"] == [] and page["steps"] == [] and page["phone_task"] is None
    for missing in ("999999", "abc"):
        response = await admin_client.get(f"/admin/v1/cases/{missing}", headers=viewer)
        assert response.status == 404 and response.content_type == PROBLEM
    assert (await admin_client.get("/admin/v1/cases")).status == 401


async def test_license_shows_its_open_case(
    admin_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, key = case
    response = await admin_client.get(f"/admin/v1/licenses/{key}", headers=admin_headers)
    shown = (await response.json())["case"]
    assert shown["id"] == case_id and shown["stage"] == "grace"
    assert near(shown["grace_ends_at"], 30) and len(shown["servers"]) == 2
    await act(admin_client, admin_headers, case_id, action="resolve")
    response = await admin_client.get(f"/admin/v1/licenses/{key}", headers=admin_headers)
    assert (await response.json())["case"] is None


async def test_queue_order_severity_then_deadline_then_pages(
    admin_client: Client, public_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    await set_clock(admin_client, admin_headers, START)
    first, _ = await open_case(admin_client, public_client, admin_headers, resources)
    await advance_clock(admin_client, admin_headers, DAY)
    second, _ = await open_case(admin_client, public_client, admin_headers, resources)
    await advance_clock(admin_client, admin_headers, DAY)
    leak_servers = tuple(f"leak-{n}" for n in range(7))  # R16: > 5 servers in 24 h
    leaked, _ = await open_case(
        admin_client, public_client, admin_headers, resources, *leak_servers
    )
    items = await listing(admin_client, admin_headers)
    assert [i["id"] for i in items] == [leaked, first, second]
    assert items[0]["severity"] == "high" and items[0]["leak_suspected"] is True
    await act(admin_client, admin_headers, first, action="extend", days=7)
    assert [i["id"] for i in await listing(admin_client, admin_headers)] == [leaked, second, first]
    page = await listing(admin_client, admin_headers, limit=1, offset=1)
    assert [i["id"] for i in page] == [second]
    assert [i["id"] for i in await listing(admin_client, admin_headers, severity="high")] == [
        leaked
    ]


async def test_disable_then_enable_R15_R17(
    admin_client: Client, public_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, key = case
    reviewer = await token(admin_client, admin_headers, "reviewer")
    page = await act(admin_client, reviewer, case_id, action="disable", note="confirmed resale")
    assert (page["stage"], page["status"]) == ("disabled", "open")
    assert page["license"]["status"] == "disabled"
    assert "confirmed resale" in page["license"]["disabled_reason"]
    for fingerprint in ("server-a", "server-b", "server-c"):
        answer = await activate(public_client, key, fingerprint)
        assert (answer["valid"], answer["code"]) == (False, "DISABLED")
    await act(admin_client, reviewer, case_id, 409, action="disable")
    await act(admin_client, reviewer, case_id, 409, action="hold")
    await act(admin_client, reviewer, case_id, 409, action="resolve")

    page = await act(admin_client, reviewer, case_id, action="enable", note="customer paid")
    assert (page["stage"], page["status"]) == ("resolved", "resolved")
    assert page["resolved_by"] == "reviewer-1" and page["license"]["status"] == "active"
    response = await public_client.post(
        "/v1/deactivations", json={"license_key": key, "fingerprint": "server-b"}
    )
    assert response.status == 200, await response.text()
    response = await public_client.post(
        "/v1/deactivations", json={"license_key": key, "fingerprint": "server-c"}
    )
    assert response.status == 200, await response.text()
    answer = await activate(public_client, key, "server-a")
    assert (answer["valid"], answer["code"]) == (True, "VALID")
    assert await audit_actions(admin_client, admin_headers, f"case:{case_id}") == [
        "case.enable",
        "case.disable",
    ]
    assert await audit_actions(admin_client, admin_headers, f"license:{key}") == [
        "license.enable",
        "license.disable",
        "license.create",
    ]
    kinds = [(e["kind"], e["actor"]) for e in page["timeline"]]
    assert kinds == [
        ("opened", "fraud-worker"),
        ("disable", "reviewer-1"),
        ("enable", "reviewer-1"),
    ]
    assert page["timeline"][-1]["data"] == {"note": "customer paid"}


async def test_grant_exception_resolves_R12(
    admin_client: Client,
    public_client: Client,
    admin_headers: Headers,
    resources: Resources,
    case: tuple[int, str],
) -> None:
    case_id, key = case
    await act(admin_client, admin_headers, case_id, 422, action="grant_exception")
    await act(admin_client, admin_headers, case_id, 422, action="grant_exception", max_servers=0)
    page = await act(admin_client, admin_headers, case_id, action="grant_exception", max_servers=2)
    assert (page["status"], page["servers_allowed"]) == ("resolved", 2)
    assert page["license"]["exception_max_servers"] == 2
    assert await summary_fields(resources, key) == {}
    for fingerprint in ("server-a", "server-b"):
        answer = await activate(public_client, key, fingerprint)
        assert answer["code"] == "VALID"
        assert answer["installation"]["servers_allowed"] == 2
    assert await audit_actions(admin_client, admin_headers, f"case:{case_id}") == [
        "case.grant_exception"
    ]


async def test_grant_exception_below_the_servers_keeps_the_case_open(
    admin_client: Client, public_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    await set_clock(admin_client, admin_headers, START)
    case_id, key = await open_case(
        admin_client, public_client, admin_headers, resources, "a", "b", "c"
    )
    page = await act(admin_client, admin_headers, case_id, action="grant_exception", max_servers=2)
    assert (page["status"], page["stage"], page["servers_allowed"]) == ("open", "grace", 2)
    assert (await activate(public_client, key, "a"))["installation"]["servers_allowed"] == 2


async def test_hold_and_release_move_the_deadlines(
    admin_client: Client, public_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, key = case
    page = await act(admin_client, admin_headers, case_id, action="hold", note="calling them")
    assert page["on_hold"] is True and near(page["hold_started_at"], 0)
    await act(admin_client, admin_headers, case_id, 409, action="hold")
    await advance_clock(admin_client, admin_headers, 2 * DAY)
    page = await act(admin_client, admin_headers, case_id, action="release_hold")
    assert page["on_hold"] is False and page["hold_started_at"] is None
    assert abs(page["extension_seconds"] - 2 * DAY) < 60
    assert near(page["grace_ends_at"], 32)
    await act(admin_client, admin_headers, case_id, 409, action="release_hold")
    answer = await activate(public_client, key, "server-a")
    assert answer["code"] == "GRACE"
    assert answer["installation"]["grace_ends_at"] == page["grace_ends_at"].split(".")[0] + "Z"


async def test_extend_moves_grace_end_R15(
    admin_client: Client, public_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, key = case
    for days in (None, 0, 366):
        problem = await act(admin_client, admin_headers, case_id, 422, action="extend", days=days)
        assert problem["field"] == "days"
    problem = await act(admin_client, admin_headers, case_id, 400, action="extend", days="7")
    assert problem["field"] == "days"
    page = await act(admin_client, admin_headers, case_id, action="extend", days=7)
    assert near(page["grace_ends_at"], 37) and near(page["disable_at"], 51)
    assert page["extension_seconds"] == 7 * DAY
    answer = await activate(public_client, key, "server-b")
    assert answer["code"] == "GRACE" and near(answer["installation"]["grace_ends_at"], 37)
    assert [e["kind"] for e in page["timeline"]] == ["opened", "extend"]
    assert await audit_actions(admin_client, admin_headers, f"case:{case_id}") == ["case.extend"]


async def test_resolve_clears_the_redis_summary(
    admin_client: Client, admin_headers: Headers, resources: Resources, case: tuple[int, str]
) -> None:
    case_id, key = case
    fields = await summary_fields(resources, key)
    assert fields[b"stage"] == b"grace" and b"over" in fields
    page = await act(admin_client, admin_headers, case_id, action="resolve", note="migrated")
    assert (page["stage"], page["status"], page["resolved_by"]) == (
        "resolved",
        "resolved",
        "bootstrap",
    )
    assert page["resolution"] == "resolved by the fraud team: migrated"
    assert page["grace_ends_at"] is None and page["disable_at"] is None
    assert await summary_fields(resources, key) == {}
    await act(admin_client, admin_headers, case_id, 409, action="resolve")
    await act(admin_client, admin_headers, case_id, 409, action="extend", days=3)
    # A call can still be logged on a resolved case; the Redis summary stays untouched.
    await act(admin_client, admin_headers, case_id, action="log_call", note="thanked them")
    assert await summary_fields(resources, key) == {}
    assert [i["id"] for i in await listing(admin_client, admin_headers, status="resolved")] == [
        case_id
    ]
    assert await listing(admin_client, admin_headers) == []


async def test_roles_and_bad_requests(
    admin_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, _ = case
    viewer = await token(admin_client, admin_headers, "viewer")
    reviewer = await token(admin_client, admin_headers, "reviewer")
    problem = await act(admin_client, viewer, case_id, 403, action="hold")
    assert "reviewer" in problem["detail"]
    response = await admin_client.post(f"/admin/v1/cases/{case_id}/actions", json={})
    assert response.status == 401
    problem = await act(admin_client, reviewer, case_id, 422, action="teleport")
    assert problem["field"] == "action"
    assert (await act(admin_client, reviewer, case_id, 400))["field"] == "action"
    assert (await act(admin_client, reviewer, case_id, 400, action=7))["field"] == "action"
    problem = await act(admin_client, reviewer, case_id, 422, action="log_call")
    assert problem["field"] == "note"
    await act(admin_client, reviewer, 999_999, 404, action="hold")
    response = await admin_client.post(
        f"/admin/v1/cases/{case_id}/actions", data=b"[1]", headers=reviewer
    )
    assert response.status == 400
    assert await audit_actions(admin_client, admin_headers, f"case:{case_id}") == []


async def test_each_action_one_audit_row_and_one_timeline_row(
    admin_client: Client, admin_headers: Headers, case: tuple[int, str]
) -> None:
    case_id, _ = case
    reviewer = await token(admin_client, admin_headers, "reviewer")
    actions: list[dict[str, Any]] = [
        {"action": "hold"},
        {"action": "release_hold"},
        {"action": "extend", "days": 3},
        {"action": "log_call", "note": "left a voicemail"},
        {"action": "resolve"},
    ]
    for body in actions:
        await act(admin_client, reviewer, case_id, **body)
    names = [f"case.{body['action']}" for body in actions]
    assert await audit_actions(admin_client, admin_headers, f"case:{case_id}") == names[::-1]
    response = await admin_client.get(
        "/admin/v1/audit", params={"target": f"case:{case_id}"}, headers=admin_headers
    )
    extend = next(r for r in (await response.json())["items"] if r["action"] == "case.extend")
    assert extend["actor"] == "reviewer-1"
    assert extend["after"]["extension_seconds"] - extend["before"]["extension_seconds"] == 3 * DAY
    page = await (await admin_client.get(f"/admin/v1/cases/{case_id}", headers=reviewer)).json()
    timeline = [(e["kind"], e["actor"]) for e in page["timeline"]]
    assert timeline == [("opened", "fraud-worker")] + [
        (body["action"], "reviewer-1") for body in actions
    ]
    assert "left a voicemail" in page["timeline"][4]["note"]


async def test_log_call_completes_the_phone_task(
    admin_client: Client,
    public_client: Client,
    admin_headers: Headers,
    resources: Resources,
    case: tuple[int, str],
) -> None:
    case_id, key = case
    await advance_clock(admin_client, admin_headers, 29 * DAY)
    for fingerprint in ("server-a", "server-b"):  # both stay active (R11)
        assert (await activate(public_client, key, fingerprint))["code"] == "GRACE"
    await advance_clock(admin_client, admin_headers, DAY)
    await run_worker(resources)  # day 30: OVERDUE, e-mail and webhook queued, phone task
    page = await (
        await admin_client.get(f"/admin/v1/cases/{case_id}", headers=admin_headers)
    ).json()
    assert page["stage"] == "overdue" and near(page["next_deadline"], 44)
    assert page["phone_task"]["status"] == "open"
    assert [s["step"] for s in page["steps"]] == ["grace_over"]
    assert sorted(n["channel"] for n in page["notifications"]) == ["email", "webhook"]
    assert {n["status"] for n in page["notifications"]} == {"pending"}
    page = await act(admin_client, admin_headers, case_id, action="log_call", note="will migrate")
    assert page["phone_task"]["status"] == "done"
    assert page["phone_task"]["outcome"] == "will migrate"
    assert page["stage"] == "overdue" and page["status"] == "open"
