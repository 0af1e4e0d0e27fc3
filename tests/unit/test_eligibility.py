"""Build and add-on eligibility (R1, R7–R9) with the seeds' worked examples."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from activation.licensing.eligibility import (
    addon_verdict,
    build_eligible,
    is_legacy,
    newest_eligible,
)
from activation.licensing.model import (
    AddonDenial,
    AddonVerdict,
    Edition,
    License,
    LicenseKind,
    Release,
    Version,
)

V = Version.parse
TODAY = date(2019, 3, 1)


def rel(version: str, released_on: date, product: str = "smartertrack") -> Release:
    return Release(product, V(version), released_on)


# Seed: M&S expired 2018-12-06 → build 6911 (released 2018-12-03) eligible, 2018-12-10 not.
RELEASES = (
    rel("13.5.6900", date(2018, 11, 20)),
    rel("13.5.6911", date(2018, 12, 3)),
    rel("13.6.6920", date(2018, 12, 10)),
    rel("14.0.7000", date(2019, 2, 1)),
    rel("99.0.1", date(2018, 1, 1), product="othertool"),
)
LOCK_RELEASES = (
    rel("13.4.6100", date(2015, 5, 1)),
    rel("14.0.6200", date(2016, 1, 1)),
    rel("14.7.6347", date(2016, 11, 1)),
    rel("15.0.6400", date(2017, 2, 1)),
)


def lic(**kw: Any) -> License:
    base: dict[str, Any] = {
        "key": "K",
        "product": "smartertrack",
        "kind": LicenseKind.PERPETUAL,
        "edition": Edition.ENTERPRISE,
        "purchased_on": date(2017, 12, 7),
        "ms_covered_through": date(2018, 12, 6),
        "addons": frozenset({"eas", "mapi"}),
    }
    base.update(kw)
    return License(**base)


LAPSED = lic()
COVERED = lic(ms_covered_through=date(2019, 12, 6))
LOCKED = lic(major_version=14, ms_covered_through=None, purchased_on=date(2016, 6, 1))


@pytest.mark.parametrize(
    ("license", "today", "expected"),
    [
        (COVERED, TODAY, (True, None)),
        (LAPSED, TODAY, (False, V("13.5.6911"))),
        (LAPSED, date(2018, 12, 6), (True, None)),  # last covered day
        (lic(kind=LicenseKind.LEASE, ms_covered_through=None), TODAY, (True, None)),
        (
            lic(kind=LicenseKind.LEASE, ms_covered_through=None, lease_ends_on=TODAY),
            TODAY,
            (True, None),
        ),
        (
            lic(kind=LicenseKind.LEASE, ms_covered_through=None, lease_ends_on=date(2019, 1, 1)),
            TODAY,
            (False, None),
        ),
        (lic(kind=LicenseKind.TRIAL, purchased_on=TODAY), TODAY, (True, None)),
        (lic(kind=LicenseKind.TRIAL, purchased_on=date(2019, 1, 1)), TODAY, (False, None)),
        (lic(kind=LicenseKind.FREE, ms_covered_through=None), TODAY, (True, None)),
        (lic(ms_covered_through=date(2018, 1, 1)), TODAY, (False, None)),  # nothing published
    ],
)
def test_r7_newest_eligible(
    license: License, today: date, expected: tuple[bool, Version | None]
) -> None:
    assert newest_eligible(license, RELEASES, today) == expected


def test_r7_newest_eligible_ignores_release_order() -> None:
    assert newest_eligible(LAPSED, tuple(reversed(RELEASES)), TODAY) == (False, V("13.5.6911"))


@pytest.mark.parametrize(
    ("version", "eligible"),
    [
        ("13.5.6911", True),  # released 2018-12-03, before M&S ended 2018-12-06
        ("13.6.6920", False),  # released 2018-12-10
        ("13.5.6900", True),
        ("13.5.6905", True),  # unpublished but older than an eligible build
        ("14.0.7000", False),
    ],
)
def test_r7_lapsed_ms_runs_builds_released_while_covered(version: str, eligible: bool) -> None:
    assert build_eligible(LAPSED, V(version), RELEASES, TODAY) == (eligible, V("13.5.6911"))


@pytest.mark.parametrize(
    ("version", "eligible"),
    [("14.7.6347", True), ("14.0.6200", True), ("13.4.6100", True), ("15.0.6400", False)],
)
def test_r7_version_lock_runs_its_major_and_older(version: str, eligible: bool) -> None:
    assert build_eligible(LOCKED, V(version), LOCK_RELEASES, TODAY) == (
        eligible,
        V("14.7.6347"),
    )


def test_r7_version_lock_without_published_release() -> None:
    assert build_eligible(LOCKED, V("14.1.1"), (), TODAY) == (True, None)
    assert build_eligible(LOCKED, V("15.0.1"), (), TODAY) == (False, None)


@pytest.mark.parametrize(
    "license",
    [COVERED, lic(kind=LicenseKind.LEASE), lic(kind=LicenseKind.FREE, ms_covered_through=None)],
)
def test_r7_any_build_while_covered_leased_or_free(license: License) -> None:
    assert build_eligible(license, V("99.9.9999"), RELEASES, TODAY) == (True, None)


@pytest.mark.parametrize(
    ("license", "requested", "expected"),
    [
        (COVERED, ["eas", "mapi"], AddonVerdict(("eas", "mapi"), ())),
        (
            LAPSED,
            ["eas", "ews"],
            AddonVerdict((), (("eas", AddonDenial.MS_EXPIRED), ("ews", AddonDenial.NOT_LICENSED))),
        ),
        (
            COVERED,
            ["mapi", "ews", "mapi", "eas"],
            AddonVerdict(("mapi", "eas"), (("ews", AddonDenial.NOT_LICENSED),)),
        ),
        (
            lic(kind=LicenseKind.FREE, ms_covered_through=None),
            ["eas"],
            AddonVerdict((), (("eas", AddonDenial.NOT_LICENSED),)),
        ),
        (lic(kind=LicenseKind.LEASE, ms_covered_through=None), ["eas"], AddonVerdict(("eas",), ())),
        (
            lic(kind=LicenseKind.LEASE, ms_covered_through=None, lease_ends_on=date(2019, 1, 1)),
            ["eas"],
            AddonVerdict((), (("eas", AddonDenial.MS_EXPIRED),)),
        ),
        (lic(kind=LicenseKind.TRIAL, purchased_on=TODAY), ["eas"], AddonVerdict(("eas",), ())),
        (COVERED, [], AddonVerdict((), ())),
    ],
)
def test_r8_addons_need_ms_or_active_lease(
    license: License, requested: list[str], expected: AddonVerdict
) -> None:
    assert addon_verdict(license, requested, TODAY) == expected


LEGACY_RELEASES = (
    rel("10.0.1", date(2014, 1, 1)),
    rel("11.0.1", date(2015, 1, 1)),
    rel("11.2.5", date(2015, 6, 1)),
    rel("12.0.1", date(2016, 1, 1)),
)


@pytest.mark.parametrize(
    ("major", "releases", "expected"),
    [
        (9, LEGACY_RELEASES, True),
        (10, LEGACY_RELEASES, True),
        (11, LEGACY_RELEASES, False),
        (12, LEGACY_RELEASES, False),
        (13, LEGACY_RELEASES, False),
        (10, (), False),
    ],
)
def test_r9_legacy_once_two_newer_majors_exist(
    major: int, releases: tuple[Release, ...], expected: bool
) -> None:
    assert is_legacy(major, releases) is expected
