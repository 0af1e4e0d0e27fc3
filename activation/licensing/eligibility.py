"""Which builds and add-ons a license may use (R1, R7–R9). Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from activation.licensing.maintenance import is_covered, lease_active, trial_expired
from activation.licensing.model import (
    AddonDenial,
    AddonVerdict,
    License,
    LicenseKind,
    Release,
    Version,
)

LEGACY_AFTER_NEWER_MAJORS = 2


def _newest(
    releases: Sequence[Release], product: str, keep: Callable[[Release], bool]
) -> Version | None:
    versions = [r.version for r in releases if r.product == product and keep(r)]
    return max(versions, default=None)


def runs_any_build(license: License, today: date) -> bool:
    """Whether the license may run every build (ignoring a version lock).

    - R7: while M&S is covered (perpetual), or the lease is active, or it is a free license.
    - R1: an active (unexpired) trial runs any build too.
    """
    match license.kind:
        case LicenseKind.PERPETUAL:
            return is_covered(license, today)
        case LicenseKind.LEASE:
            return lease_active(license.lease_ends_on, today)
        case LicenseKind.TRIAL:
            return not trial_expired(license.purchased_on, license.trial_days, today)
        case LicenseKind.FREE:
            return True


def newest_eligible(
    license: License, releases: Sequence[Release], today: date
) -> tuple[bool, Version | None]:
    """`(any_build, max_version)`: what the license may run, as the newest eligible version.

    - R7 version lock ("Professional 14.x"): never any build; max is the newest published
      release of the product whose major is at most the lock (None if none published).
    - R7: any build (max None) while M&S is covered, the lease is active, or free; R1: or
      the trial is active.
    - R7 lapsed M&S: max is the newest release published on or before the last covered day
      (None if none). A perpetual license with no coverage date recorded is treated as
      lapsed on its purchase day.
    - An expired trial or inactive lease (answered EXPIRED, R1) is eligible for nothing.
    """
    lock = license.major_version
    if lock is not None:
        return False, _newest(releases, license.product, lambda r: r.version.major <= lock)
    if runs_any_build(license, today):
        return True, None
    if license.kind is not LicenseKind.PERPETUAL:
        return False, None
    cutoff = license.ms_covered_through or license.purchased_on
    return False, _newest(releases, license.product, lambda r: r.released_on <= cutoff)


def build_eligible(
    license: License, version: Version, releases: Sequence[Release], today: date
) -> tuple[bool, Version | None]:
    """`(eligible, max_version)` for one requested build.

    - R7 version lock: eligible for every build of the locked major and every earlier major
      (14.x lock: 14.7.6347 yes, 13.x yes, 15.0.1 no).
    - R7: any build while covered / active lease / free (R1: active trial).
    - R7 lapsed M&S: eligible when the build is not newer than the newest eligible release;
      licenses are backwards compatible, so any older build qualifies, published or not.
    - A product with no published release at all cannot be judged: its builds are eligible
      (fail-open, so a fresh deployment does not refuse every lapsed license before the
      release catalog is imported). Once any release exists, the rule above applies.
    """
    any_build, max_version = newest_eligible(license, releases, today)
    if license.major_version is not None:
        return version.major <= license.major_version, max_version
    if any_build:
        return True, None
    if not any(release.product == license.product for release in releases):
        return True, None
    return max_version is not None and version <= max_version, max_version


def addon_verdict(license: License, requested: Sequence[str], today: date) -> AddonVerdict:
    """Which requested add-ons are granted, and why the others are denied.

    - R1/R8: an add-on the license does not include, or any add-on on a free license,
      is denied NOT_LICENSED.
    - R8: an included add-on is granted while M&S is covered or the lease is active
      (R1: or the trial is active); otherwise denied MS_EXPIRED, the license itself unaffected.
    - Request order is kept; duplicates are dropped.
    """
    granted: list[str] = []
    denied: list[tuple[str, AddonDenial]] = []
    usable = license.kind is not LicenseKind.FREE and runs_any_build(license, today)
    for name in dict.fromkeys(requested):
        if license.kind is LicenseKind.FREE or name not in license.addons:
            denied.append((name, AddonDenial.NOT_LICENSED))
        elif usable:
            granted.append(name)
        else:
            denied.append((name, AddonDenial.MS_EXPIRED))
    return AddonVerdict(tuple(granted), tuple(denied))


def is_legacy(version_major: int, releases: Sequence[Release]) -> bool:
    """Whether a major version is legacy.

    - R9: legacy once at least two newer majors exist among the product's releases
      (current 12 → 11 and 12 supported, 10 and older legacy). No releases → not legacy.
    """
    newer = {r.version.major for r in releases if r.version.major > version_major}
    return len(newer) >= LEGACY_AFTER_NEWER_MAJORS
