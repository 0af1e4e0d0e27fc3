"""Every decision code of SPEC §5 through HTTP, with the test clock (R1, R7, R8, R9, R13, R17)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import (
    Client,
    activate,
    advance_clock,
    create_license,
    create_release,
    set_clock,
)

pytestmark = pytest.mark.usefixtures("resources")


@pytest.mark.moves_clock
async def test_valid_answer_carries_license_installation_and_nonce(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """R10: the answer carries the license's edition and limits for the product to enforce."""
    await set_clock(admin_client, admin_headers, "2026-11-23T12:00:00Z")
    created = await create_license(
        admin_client,
        admin_headers,
        purchased_on="2026-09-01",
        addons=["eas"],
        limits={"mailboxes": 250},
    )
    answer = await activate(public_client, created["key"], addons=["eas", "mapi"])
    assert answer["valid"] is True
    assert answer["code"] == "VALID"
    assert answer["nonce"] == "c0ffee42"
    assert answer["issued_at"] == "2026-11-23T12:00:00Z"
    assert answer["valid_until"] == "2026-11-30T12:00:00Z"
    assert answer["license"] == {
        "product": "smartermail",
        "kind": "perpetual",
        "edition": "enterprise",
        "limits": {"mailboxes": 250},
        "ms_status": "protected",
        "ms_covered_through": "2027-08-31",
        "legacy": False,
        "max_version": None,
    }
    assert answer["installation"]["servers_active"] == 1
    assert answer["installation"]["servers_allowed"] == 1
    assert answer["addons"] == {
        "granted": ["eas"],
        "denied": [{"name": "mapi", "reason": "NOT_LICENSED"}],
    }


async def test_not_found_for_unknown_key(public_client: Client) -> None:
    answer = await activate(public_client, "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ")
    assert (answer["valid"], answer["code"], answer["license"]) == (False, "NOT_FOUND", None)


async def test_product_mismatch(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    created = await create_license(admin_client, admin_headers, product="smartertrack")
    answer = await activate(public_client, created["key"], product="smartermail")
    assert (answer["valid"], answer["code"]) == (False, "PRODUCT_MISMATCH")


async def test_disabled_then_enabled_R17(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    created = await create_license(admin_client, admin_headers)
    key = created["key"]
    assert (await activate(public_client, key))["code"] == "VALID"
    response = await admin_client.post(
        f"/admin/v1/licenses/{key}/disable", json={"reason": "chargeback"}, headers=admin_headers
    )
    assert response.status == 200
    answer = await activate(public_client, key)
    assert (answer["valid"], answer["code"]) == (False, "DISABLED")
    response = await admin_client.post(f"/admin/v1/licenses/{key}/enable", headers=admin_headers)
    assert response.status == 200
    assert (await activate(public_client, key))["code"] == "VALID"


@pytest.mark.moves_clock
async def test_trial_expires_on_day_31_R1(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    await set_clock(admin_client, admin_headers, "2026-11-01T09:00:00Z")
    created = await create_license(
        admin_client, admin_headers, kind="trial", purchased_on="2026-11-01", trial_days=30
    )
    await set_clock(admin_client, admin_headers, "2026-11-30T23:59:59Z")  # day 30
    assert (await activate(public_client, created["key"]))["code"] == "VALID"
    await advance_clock(admin_client, admin_headers, 1)  # day 31
    answer = await activate(public_client, created["key"])
    assert (answer["valid"], answer["code"]) == (False, "EXPIRED")


@pytest.mark.moves_clock
async def test_build_not_eligible_after_ms_lapsed_seed_example_R7(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """M&S expired 2018-12-06: build 6911 of 2018-12-03 runs, the build of 2018-12-10 not."""
    await create_release(admin_client, admin_headers, "16.3.6911", "2018-12-03")
    await create_release(admin_client, admin_headers, "16.3.6920", "2018-12-10")
    created = await create_license(admin_client, admin_headers, purchased_on="2017-12-07")
    assert created["ms_covered_through"] == "2018-12-06"
    await set_clock(admin_client, admin_headers, "2026-11-23T12:00:00Z")
    eligible = await activate(public_client, created["key"], version="16.3.6911")
    assert eligible["code"] == "VALID"
    assert eligible["license"]["ms_status"] == "expired"
    refused = await activate(public_client, created["key"], version="16.3.6920")
    assert (refused["valid"], refused["code"]) == (False, "BUILD_NOT_ELIGIBLE")
    assert refused["license"]["max_version"] == "16.3.6911"


async def test_version_locked_license_runs_last_build_of_its_major_R7(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    await create_release(admin_client, admin_headers, "14.7.6347", "2016-09-01")
    await create_release(admin_client, admin_headers, "15.0.6400", "2017-01-10")
    created = await create_license(
        admin_client, admin_headers, purchased_on="2015-03-01", major_version=14
    )
    assert (await activate(public_client, created["key"], version="14.7.6347"))["code"] == "VALID"
    refused = await activate(public_client, created["key"], version="15.0.6400")
    assert refused["code"] == "BUILD_NOT_ELIGIBLE"


async def test_legacy_flag_two_majors_back_R9(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    for version in ("10.0.1000", "11.0.2000", "12.0.3000"):
        await create_release(admin_client, admin_headers, version, "2016-01-01")
    created = await create_license(admin_client, admin_headers)
    assert (await activate(public_client, created["key"], version="10.0.1000"))["license"][
        "legacy"
    ] is True
    assert (await activate(public_client, created["key"], version="11.0.2000"))["license"][
        "legacy"
    ] is False


@pytest.mark.moves_clock
async def test_addons_denied_after_lapse_license_keeps_working_R8(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    await set_clock(admin_client, admin_headers, "2026-11-23T12:00:00Z")
    created = await create_license(
        admin_client, admin_headers, purchased_on="2025-01-01", addons=["eas"]
    )
    answer = await activate(public_client, created["key"], addons=["eas"])
    assert answer["code"] == "VALID"
    assert answer["addons"] == {"granted": [], "denied": [{"name": "eas", "reason": "MS_EXPIRED"}]}


async def _two_servers(public: Client, key: str) -> dict[str, Any]:
    await activate(public, key, "server-old")
    return await activate(public, key, "server-new")


@pytest.mark.moves_clock
async def test_second_server_gets_grace_then_overdue_R13_R14(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    await set_clock(admin_client, admin_headers, "2026-11-23T12:00:00Z")
    created = await create_license(admin_client, admin_headers)
    answer = await _two_servers(public_client, created["key"])
    assert (answer["valid"], answer["code"]) == (True, "GRACE")
    assert answer["installation"]["servers_active"] == 2
    assert answer["installation"]["grace_ends_at"] == "2026-12-23T12:00:00Z"
    # Both servers keep phoning home daily (the active window is 7 days).
    for _ in range(29):
        await advance_clock(admin_client, admin_headers, 86_400)
        await activate(public_client, created["key"], "server-old")
        answer = await activate(public_client, created["key"], "server-new")
        assert answer["code"] == "GRACE"
    await advance_clock(admin_client, admin_headers, 86_400)
    answer = await activate(public_client, created["key"], "server-new")
    assert (answer["valid"], answer["code"]) == (True, "OVERDUE")
    assert answer["installation"]["disable_at"] == "2027-01-06T12:00:00Z"


async def test_failover_license_runs_two_servers_R12(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    created = await create_license(admin_client, admin_headers, failover=True)
    answer = await _two_servers(public_client, created["key"])
    assert answer["code"] == "VALID"
    assert answer["installation"]["servers_allowed"] == 2
    third = await activate(public_client, created["key"], "server-third")
    assert third["code"] == "GRACE"


async def test_migration_done_by_deactivation_returns_to_valid_R15(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    created = await create_license(admin_client, admin_headers)
    assert (await _two_servers(public_client, created["key"]))["code"] == "GRACE"
    response = await public_client.post(
        "/v1/deactivations", json={"license_key": created["key"], "fingerprint": "server-old"}
    )
    assert response.status == 200
    assert (await response.json())["servers_active"] == 1
    assert (await activate(public_client, created["key"], "server-new"))["code"] == "VALID"


@pytest.mark.moves_clock
async def test_silent_server_leaves_after_active_window_R11(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    created = await create_license(admin_client, admin_headers)
    assert (await _two_servers(public_client, created["key"]))["code"] == "GRACE"
    await advance_clock(admin_client, admin_headers, 7 * 86_400 + 1)
    answer = await activate(public_client, created["key"], "server-new")
    assert answer["code"] == "VALID"
    assert answer["installation"]["servers_active"] == 1


@pytest.mark.moves_clock
async def test_lease_expires_after_its_last_day_R1(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    await set_clock(admin_client, admin_headers, "2026-11-30T12:00:00Z")
    created = await create_license(
        admin_client,
        admin_headers,
        kind="lease",
        purchased_on="2026-01-01",
        lease_ends_on="2026-11-30",
    )
    assert (await activate(public_client, created["key"], version="99.0.1"))["code"] == "VALID"
    await advance_clock(admin_client, admin_headers, 86_400)
    answer = await activate(public_client, created["key"])
    assert (answer["valid"], answer["code"]) == (False, "EXPIRED")
