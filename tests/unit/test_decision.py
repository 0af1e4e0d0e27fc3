"""The activation decision (SPEC §5): every code, precedence and the grace ladder (R13, R14)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from activation.licensing.decision import decide
from activation.licensing.model import (
    AddonDenial,
    AddonVerdict,
    CaseStage,
    Code,
    Decision,
    Edition,
    InstallationState,
    License,
    LicenseKind,
    LicenseStatus,
    MsStatus,
    Release,
    Version,
)

V = Version.parse
NOW = datetime(2019, 3, 1, 12, 0, tzinfo=UTC)
PRODUCT = "smartermail"
RELEASES = (
    Release(PRODUCT, V("16.3.6980"), date(2018, 11, 20)),
    Release(PRODUCT, V("16.3.6989"), date(2018, 12, 3)),
    Release(PRODUCT, V("16.3.6995"), date(2018, 12, 10)),
    Release(PRODUCT, V("17.0.7010"), date(2019, 2, 1)),
)
OK = InstallationState(servers_active=1, servers_allowed=1)


def lic(**kw: Any) -> License:
    base: dict[str, Any] = {
        "key": "K",
        "product": PRODUCT,
        "kind": LicenseKind.PERPETUAL,
        "edition": Edition.ENTERPRISE,
        "purchased_on": date(2018, 9, 1),
        "ms_covered_through": date(2019, 8, 31),
        "addons": frozenset({"eas", "mapi"}),
    }
    base.update(kw)
    return License(**base)


def run(
    license: License | None,
    *,
    product: str = PRODUCT,
    version: str = "17.0.7010",
    addons: Sequence[str] = (),
    installations: InstallationState | None = OK,
    now: datetime = NOW,
) -> Decision:
    return decide(
        license,
        product=product,
        version=V(version),
        requested_addons=addons,
        installations=installations,
        releases=RELEASES,
        now=now,
    )


COVERED = lic()
LAPSED = lic(ms_covered_through=date(2018, 12, 6))
TRIAL_DAY_31 = lic(kind=LicenseKind.TRIAL, purchased_on=date(2019, 1, 30), ms_covered_through=None)
TRIAL_DAY_30 = lic(kind=LicenseKind.TRIAL, purchased_on=date(2019, 1, 31), ms_covered_through=None)
DISABLED = lic(status=LicenseStatus.DISABLED, disabled_reason="assumed compromised")
SINCE = datetime(2019, 2, 1, 8, 0, tzinfo=UTC)
OVER = InstallationState(servers_active=2, servers_allowed=1, over_limit_since=SINCE)


@pytest.mark.parametrize(
    ("case", "license", "kwargs", "code"),
    [
        ("S5 unknown key", None, {}, Code.NOT_FOUND),
        ("S5 other product", COVERED, {"product": "smartertrack"}, Code.PRODUCT_MISMATCH),
        ("R17 disabled", DISABLED, {}, Code.DISABLED),
        (
            "R14 case disabled",
            COVERED,
            {"installations": InstallationState(2, 1, SINCE, CaseStage.DISABLED)},
            Code.DISABLED,
        ),
        ("R1 trial day 31", TRIAL_DAY_31, {}, Code.EXPIRED),
        ("R1 trial day 30", TRIAL_DAY_30, {}, Code.VALID),
        (
            "R1 lease ended",
            lic(kind=LicenseKind.LEASE, ms_covered_through=None, lease_ends_on=date(2019, 2, 28)),
            {},
            Code.EXPIRED,
        ),
        (
            "R1 lease last day",
            lic(kind=LicenseKind.LEASE, ms_covered_through=None, lease_ends_on=date(2019, 3, 1)),
            {},
            Code.VALID,
        ),
        ("R7 too-new build", LAPSED, {}, Code.BUILD_NOT_ELIGIBLE),
        ("R7 lapsed, old build", LAPSED, {"version": "16.3.6989"}, Code.VALID),
        ("R13 over limit", COVERED, {"installations": OVER}, Code.GRACE),
        (
            "R14 grace over",
            COVERED,
            {"installations": OVER, "now": SINCE + timedelta(days=31)},
            Code.OVERDUE,
        ),
        ("R1 free any build", lic(kind=LicenseKind.FREE, ms_covered_through=None), {}, Code.VALID),
        ("no installation info", COVERED, {"installations": None}, Code.VALID),
        # precedence
        (
            "S5 mismatch beats disabled",
            DISABLED,
            {"product": "smartertrack"},
            Code.PRODUCT_MISMATCH,
        ),
        (
            "S5 disabled beats expired",
            replace(TRIAL_DAY_31, status=LicenseStatus.DISABLED),
            {},
            Code.DISABLED,
        ),
        (
            "S5 expired beats build",
            lic(kind=LicenseKind.TRIAL, purchased_on=date(2019, 1, 1), major_version=15),
            {},
            Code.EXPIRED,
        ),
        ("S5 build beats grace", LAPSED, {"installations": OVER}, Code.BUILD_NOT_ELIGIBLE),
    ],
)
def test_s5_every_code_and_precedence(
    case: str, license: License | None, kwargs: dict[str, Any], code: Code
) -> None:
    assert run(license, **kwargs).code is code, case


def test_s5_not_found_shape() -> None:
    d = run(None, addons=["eas", "eas"], installations=None)
    assert d == Decision(
        code=Code.NOT_FOUND,
        detail=d.detail,
        ms_status=MsStatus.NONE,
        ms_covered_through=None,
        legacy=False,
        max_version=None,
        addons=AddonVerdict((), (("eas", AddonDenial.NOT_LICENSED),)),
        servers_active=0,
        servers_allowed=1,
        grace_ends_at=None,
        disable_at=None,
    )
    assert not d.valid


def test_r7_build_not_eligible_names_newest_eligible_version() -> None:
    d = run(LAPSED, version="16.3.6995")
    assert d.code is Code.BUILD_NOT_ELIGIBLE
    assert d.max_version == V("16.3.6989")
    assert d.detail == "This license may run builds up to 16.3.6989; M&S ended 2018-12-06."
    assert d.ms_status is MsStatus.EXPIRED
    assert d.ms_covered_through == date(2018, 12, 6)


def test_r7_version_lock_detail_and_max() -> None:
    locked = lic(major_version=16, ms_covered_through=None, purchased_on=date(2017, 1, 1))
    d = run(locked, version="17.0.7010")
    assert (d.code, d.max_version) == (Code.BUILD_NOT_ELIGIBLE, V("16.3.6995"))
    assert "16.x" in d.detail and "16.3.6995" in d.detail
    assert run(locked, version="16.3.6995").code is Code.VALID


@pytest.mark.parametrize(
    ("license", "granted", "denied", "ms"),
    [
        (COVERED, ("eas",), (("ews", AddonDenial.NOT_LICENSED),), MsStatus.PROTECTED),
        (
            LAPSED,
            (),
            (("eas", AddonDenial.MS_EXPIRED), ("ews", AddonDenial.NOT_LICENSED)),
            MsStatus.EXPIRED,
        ),
    ],
)
def test_r8_addons_follow_ms_while_license_stays_valid(
    license: License,
    granted: tuple[str, ...],
    denied: tuple[tuple[str, AddonDenial], ...],
    ms: MsStatus,
) -> None:
    d = run(license, version="16.3.6989", addons=["eas", "ews"])
    assert d.code is Code.VALID
    assert d.addons == AddonVerdict(granted, denied)
    assert d.ms_status is ms


def test_r8_non_valid_codes_grant_no_addons() -> None:
    d = run(
        COVERED,
        addons=["ews", "eas"],
        installations=InstallationState(1, 1, None, CaseStage.DISABLED),
    )
    assert d.code is Code.DISABLED
    assert d.addons == AddonVerdict(
        (), (("ews", AddonDenial.NOT_LICENSED), ("eas", AddonDenial.NOT_LICENSED))
    )
    lapsed = run(LAPSED, version="16.3.6995", addons=["eas"])
    assert lapsed.addons == AddonVerdict((), (("eas", AddonDenial.MS_EXPIRED),))


@pytest.mark.parametrize(
    ("version", "legacy"),
    [("15.0.1", True), ("16.3.6989", False), ("17.0.7010", False)],
)
def test_r9_decision_flags_legacy_major(version: str, legacy: bool) -> None:
    releases = (*RELEASES, Release(PRODUCT, V("15.5.1"), date(2017, 1, 1)))
    d = decide(
        COVERED,
        product=PRODUCT,
        version=V(version),
        requested_addons=(),
        installations=OK,
        releases=releases,
        now=NOW,
    )
    assert (d.code, d.legacy) == (Code.VALID, legacy)


GRACE_END = SINCE + timedelta(days=30)
DISABLE_AT = SINCE + timedelta(days=44)


@pytest.mark.parametrize(
    ("now", "code", "grace_ends_at", "disable_at"),
    [
        (SINCE, Code.GRACE, GRACE_END, None),
        (GRACE_END - timedelta(seconds=1), Code.GRACE, GRACE_END, None),
        (GRACE_END, Code.OVERDUE, GRACE_END, DISABLE_AT),
        (GRACE_END + timedelta(seconds=1), Code.OVERDUE, GRACE_END, DISABLE_AT),
    ],
)
def test_r13_r14_grace_then_overdue_from_over_limit_since(
    now: datetime, code: Code, grace_ends_at: datetime, disable_at: datetime | None
) -> None:
    d = run(COVERED, installations=OVER, now=now)
    assert (d.code, d.grace_ends_at, d.disable_at) == (code, grace_ends_at, disable_at)
    assert (d.servers_active, d.servers_allowed) == (2, 1)
    assert d.valid


def test_r13_grace_detail_mentions_servers_and_end() -> None:
    d = run(COVERED, installations=OVER)
    assert "2 servers" in d.detail and "2019-03-03" in d.detail


@pytest.mark.parametrize(
    ("installations", "code", "grace_ends_at", "disable_at"),
    [
        # the worker's case stage wins: a held case stays GRACE past 30 days
        (
            InstallationState(2, 1, SINCE, CaseStage.GRACE, grace_ends_at=GRACE_END),
            Code.GRACE,
            GRACE_END,
            None,
        ),
        (
            InstallationState(
                2, 1, SINCE, CaseStage.OVERDUE, GRACE_END, DISABLE_AT + timedelta(days=7)
            ),
            Code.OVERDUE,
            GRACE_END,
            DISABLE_AT + timedelta(days=7),
        ),
        (
            InstallationState(2, 1, SINCE, CaseStage.OVERDUE),
            Code.OVERDUE,
            GRACE_END,
            DISABLE_AT,
        ),
        (InstallationState(1, 1, SINCE, CaseStage.RESOLVED), Code.VALID, None, None),
        (InstallationState(2, 2, SINCE), Code.VALID, None, None),
        (InstallationState(2, 1, None), Code.VALID, None, None),
    ],
)
def test_r14_r15_case_stage_drives_answer(
    installations: InstallationState,
    code: Code,
    grace_ends_at: datetime | None,
    disable_at: datetime | None,
) -> None:
    d = run(COVERED, installations=installations, now=SINCE + timedelta(days=40))
    assert (d.code, d.grace_ends_at, d.disable_at) == (code, grace_ends_at, disable_at)


def test_r12_servers_default_to_license_limit_without_installations() -> None:
    d = run(lic(max_servers=2, failover=True), installations=None)
    assert (d.code, d.servers_active, d.servers_allowed) == (Code.VALID, 0, 2)
    assert d.max_version is None
