"""Offline license files (SPEC §5, "Offline activation"): issued through the admin API and
the console, checked by the product with its pinned key alone (`verify_file`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from activation.runtime import Resources
from activation_client.client import verify_file
from activation_client.licensefile import parse
from activation_client.verify import PinnedKeys
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.integration.client_support import Client
from tests.integration.helpers import (
    HOSTILE_VALUES,
    WRONG_TYPES,
    activate,
    advance_clock,
    create_license,
    verify_signature,
)
from tests.integration.test_console import csrf_of, login, new_token

Headers = dict[str, str]


def _iso(moment: datetime) -> str:
    """`moment` as the answers write it: UTC to the second, with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order(fingerprint: str = "airgap-1", **fields: Any) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint, "hostname": f"{fingerprint}.example.com",
        "product": "smartermail", "version": "16.3.6989", "days": 90,
    } | fields  # fmt: skip


async def issue(
    admin: Client, headers: Headers, key: str, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = await admin.post(f"/admin/v1/licenses/{key}/offline-files", json=body,
                                headers=headers)  # fmt: skip
    answer: dict[str, Any] = await response.json()
    assert response.status == status, answer
    return answer


async def _key(admin: Client, headers: Headers, **fields: Any) -> str:
    key: str = (await create_license(admin, headers, **fields))["key"]
    return key


async def test_a_file_is_the_signed_answer_of_now_valid_for_its_days(
    admin_client: Client, public_client: Client, admin_headers: Headers
) -> None:
    key = await _key(admin_client, admin_headers)
    before = datetime.now(UTC).replace(microsecond=0)
    issued = await issue(admin_client, admin_headers, key, order(days=90))
    after = datetime.now(UTC)
    signing = await (await public_client.get("/v1/signing-keys")).json()
    current = signing["keys"][0]
    body = base64.b64decode(issued["body"])
    verify_signature(current["public_key"], body, issued["signature"])
    assert issued["key_id"] == current["id"]
    answer = orjson.loads(body)
    assert (answer["valid"], answer["code"], answer["offline"]) == (True, "VALID", True)
    assert answer["installation"]["fingerprint"] == "airgap-1"
    now = datetime.fromisoformat(answer["issued_at"])
    assert before <= now <= after, (before, answer["issued_at"], after)
    assert answer["valid_until"] == _iso(now + timedelta(days=90))
    file = parse(issued["file"])
    assert (file.body, file.signature, file.key_id) == (body, issued["signature"], current["id"])

    keys = PinnedKeys.from_base64([current["public_key"]])
    email = (
        f"Hello,\r\n\r\nyour license:\r\n\r\n{issued['file'].replace(chr(10), chr(13) + chr(10))}"
    )
    assert verify_file(email, keys, "airgap-1", now + timedelta(days=89)).exit_code == 0
    assert verify_file(issued["file"], keys, None, now).exit_code == 0
    assert verify_file(issued["file"], keys, "other-server", now).exit_code == 1
    assert verify_file(issued["file"], keys, "airgap-1", now + timedelta(days=90)).exit_code == 1
    tampered = issued["file"].replace("Key-Id: ", "Key-Id: 0", 1)
    assert verify_file(tampered, keys, "airgap-1", now).exit_code == 2
    lines = issued["file"].splitlines()
    lines[4] = lines[4][:10] + ("A" if lines[4][10] != "A" else "B") + lines[4][11:]
    assert verify_file("\n".join(lines), keys, "airgap-1", now).exit_code == 2


@pytest.mark.parametrize("days", [0, 401, -1, None, "30", 1.5, True])
async def test_days_must_be_1_to_400(
    admin_client: Client, admin_headers: Headers, days: Any
) -> None:
    key = await _key(admin_client, admin_headers)
    body = order() | {"days": days}
    if days is None:
        del body["days"]
    problem = await issue(admin_client, admin_headers, key, body, 400)
    assert "days" in problem["detail"]


async def test_bad_fields_unknown_and_disabled_keys(
    admin_client: Client, admin_headers: Headers
) -> None:
    key = await _key(admin_client, admin_headers)
    for field, value in (("fingerprint", "a b"), ("version", "16"), ("product", "X"),
                         ("confirm_over_limit", "yes")):  # fmt: skip
        problem = await issue(admin_client, admin_headers, key, order() | {field: value}, 400)
        assert field in problem["detail"], problem
    await issue(admin_client, admin_headers, "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", order(), 404)
    await admin_client.post(f"/admin/v1/licenses/{key}/disable", json={"reason": "fraud"},
                            headers=admin_headers)  # fmt: skip
    problem = await issue(admin_client, admin_headers, key, order(), 409)
    assert "disabled" in problem["detail"]


async def test_reviewers_issue_files_viewers_do_not(
    admin_client: Client, admin_headers: Headers
) -> None:
    key = await _key(admin_client, admin_headers)
    viewer = {"Authorization": f"Bearer {await new_token(admin_client, admin_headers, 'viewer')}"}
    reviewer = {
        "Authorization": f"Bearer {await new_token(admin_client, admin_headers, 'reviewer')}"
    }
    await issue(admin_client, viewer, key, order(), 403)
    await issue(admin_client, reviewer, key, order(), 201)
    audit = await (await admin_client.get(f"/admin/v1/audit?target=license:{key}",
                                          headers=admin_headers)).json()  # fmt: skip
    rows = [row for row in audit["items"] if row["action"] == "license.offline_file"]
    assert len(rows) == 1 and rows[0]["actor"] == "reviewer-1", audit
    assert rows[0]["after"]["fingerprint"] == "airgap-1"


async def test_r12_a_server_beyond_the_limit_needs_confirmation_and_opens_a_case(
    admin_client: Client, public_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    key = await _key(admin_client, admin_headers)
    await activate(public_client, key, "server-a")
    problem = await issue(admin_client, admin_headers, key, order(), 409)
    assert "confirm_over_limit" in problem["detail"] and "server 2 of the 1" in problem["detail"]
    view = await (await admin_client.get(f"/admin/v1/licenses/{key}", headers=admin_headers)).json()
    assert [s["fingerprint"] for s in view["installations"]] == ["server-a"]  # nothing recorded
    await issue(admin_client, admin_headers, key, order(fingerprint="server-a"), 201)  # no new one
    issued = await issue(admin_client, admin_headers, key, order(confirm_over_limit=True))
    answer = orjson.loads(base64.b64decode(issued["body"]))
    assert answer["code"] == "GRACE" and answer["installation"]["grace_ends_at"]
    await Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics()).run_once()
    cases = await (await admin_client.get("/admin/v1/cases", headers=admin_headers)).json()
    assert [(c["license_key"], c["stage"]) for c in cases["items"]] == [(key, "grace")]


@pytest.mark.moves_clock
async def test_r11_the_file_keeps_its_server_active_until_valid_until(
    admin_client: Client, public_client: Client, admin_headers: Headers
) -> None:
    """No phone-home ever comes from an air-gapped server: it counts for the whole file, well
    past the 7-day active window, and not a day longer."""
    key = await _key(admin_client, admin_headers)
    await issue(admin_client, admin_headers, key, order(days=30))
    await advance_clock(admin_client, admin_headers, 29 * 86_400)
    assert (await activate(public_client, key, "server-b"))["code"] == "GRACE"
    await public_client.post("/v1/deactivations", json={"license_key": key,
                                                        "fingerprint": "server-b"})  # fmt: skip
    await advance_clock(admin_client, admin_headers, 2 * 86_400)
    answer = await activate(public_client, key, "server-c")
    assert (answer["code"], answer["installation"]["servers_active"]) == ("VALID", 1), answer


async def test_the_console_issues_a_file_from_the_license_page(
    admin_client: Client, public_client: Client, admin_headers: Headers
) -> None:
    key = await _key(admin_client, admin_headers)
    await activate(public_client, key, "server-a")
    csrf = await login(admin_client, await new_token(admin_client, admin_headers, "reviewer"))
    page = await (await admin_client.get(f"/console/licenses/{key}")).text()
    assert "Issue offline file" in page and csrf_of(page) == csrf
    url = f"/console/licenses/{key}/offline-files"
    fields = {"csrf": csrf, "fingerprint": "vault-7", "hostname": "vault.example.com",
              "product": "smartermail", "version": "16.3.6989", "days": "45"}  # fmt: skip
    refused = await admin_client.post(url, data=fields)
    assert refused.status == 409 and "server 2 of the 1" in await refused.text()
    forged = await admin_client.post(url, data=fields | {"csrf": "x", "confirm_over_limit": "yes"})
    assert forged.status == 403
    issued = await admin_client.post(url, data=fields | {"confirm_over_limit": "yes"},
                                     allow_redirects=False)  # fmt: skip
    assert issued.status == 303, await issued.text()
    shown = await (await admin_client.get(issued.headers["Location"])).text()
    assert "-----BEGIN LICENSE FILE-----" in shown and "GRACE" in shown
    download = await admin_client.get(issued.headers["Location"] + "/license.txt")
    file = parse(await download.text())
    answer = orjson.loads(file.body)
    assert answer["installation"]["fingerprint"] == "vault-7"
    valid_until = datetime.fromisoformat(answer["valid_until"])
    assert valid_until - datetime.fromisoformat(answer["issued_at"]) == timedelta(days=45)
    page = await (await admin_client.get(f"/console/licenses/{key}")).text()
    assert f"offline file until {valid_until:%Y-%m-%d %H:%M}" in page, page
    assert "vault-7" in page


async def test_hostile_values_in_every_field_are_4xx_never_5xx(
    admin_client: Client, admin_headers: Headers
) -> None:
    key = await _key(admin_client, admin_headers, failover=True, max_servers=100)
    fields = ("fingerprint", "hostname", "product", "version", "days", "addons",
              "confirm_over_limit")  # fmt: skip
    statuses: dict[int, int] = {}
    for field in fields:
        for value in (*HOSTILE_VALUES, *WRONG_TYPES):
            response = await admin_client.post(
                f"/admin/v1/licenses/{key}/offline-files", json=order() | {field: value},
                headers=admin_headers,
            )  # fmt: skip
            statuses[response.status] = statuses.get(response.status, 0) + 1
            assert response.status in (201, 400), (field, value, await response.text())
    assert statuses.get(400, 0) > 150, statuses
