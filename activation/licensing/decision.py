"""The activation decision (SPEC §5): one license, one request, one answer. Pure.

Precedence — the first matching row wins; this table is the only place it is written:

    | # | code               | when                                                      |
    |---|--------------------|-----------------------------------------------------------|
    | 1 | NOT_FOUND          | no license for the key                                    |
    | 2 | PRODUCT_MISMATCH   | license.product != requested product                      |
    | 3 | DISABLED           | status disabled, or fraud case stage DISABLED (R15, R17)  |
    | 4 | EXPIRED            | trial over, or lease not active (R1)                      |
    | 5 | BUILD_NOT_ELIGIBLE | requested build newer than the license allows (R7)        |
    | 6 | OVERDUE            | case stage OVERDUE, or over the limit past grace (R14)    |
    | 7 | GRACE              | case stage GRACE, or over the limit within grace (R13)    |
    | 8 | VALID              | otherwise                                                 |

Add-ons (R8) follow `addon_verdict` for the valid codes (VALID, GRACE, OVERDUE). For every other
code nothing is granted: add-ons `addon_verdict` would deny keep their reason, and add-ons it
would grant are denied NOT_LICENSED (the license does not currently license anything).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from activation.licensing.eligibility import addon_verdict, build_eligible, is_legacy
from activation.licensing.maintenance import lease_active, ms_status, trial_expired
from activation.licensing.model import (
    AddonDenial,
    AddonVerdict,
    CaseStage,
    Code,
    Decision,
    InstallationState,
    License,
    LicenseKind,
    LicenseStatus,
    MsStatus,
    Release,
    Version,
)

DEFAULT_GRACE = timedelta(days=30)
DEFAULT_DISABLE_AFTER = timedelta(days=44)


def decide(
    license: License | None,
    *,
    product: str,
    version: Version,
    requested_addons: Sequence[str],
    installations: InstallationState | None,
    releases: Sequence[Release],
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
    disable_after: timedelta = DEFAULT_DISABLE_AFTER,
) -> Decision:
    """The answer to one activation or phone-home.

    - §5: codes in the precedence of the module table (NOT_FOUND first, VALID last).
    - R7: `max_version` is the newest eligible version, None when any build is allowed.
    - R9: `legacy` tells whether the requested major is legacy.
    - R13/R14: GRACE carries `grace_ends_at`; OVERDUE carries `disable_at` (and the past
      `grace_ends_at` when known). The fraud worker's case stage wins over the computed one,
      so a case on hold or with extended grace stays GRACE.
    - `releases` are the license product's releases, in any order.
    """
    active = installations.servers_active if installations else 0
    if license is None:
        allowed = installations.servers_allowed if installations else 1
        return _refusal(
            Code.NOT_FOUND, "No license exists for this key.", requested_addons, active, allowed
        )
    allowed = installations.servers_allowed if installations else license.max_servers
    if license.product != product:
        detail = f"This license is for {license.product}, not {product}."
        return _refusal(Code.PRODUCT_MISMATCH, detail, requested_addons, active, allowed)

    today = now.date()
    eligible, max_version = build_eligible(license, version, releases, today)
    verdict = addon_verdict(license, requested_addons, today)

    def answer(
        code: Code,
        detail: str,
        grace_ends_at: datetime | None = None,
        disable_at: datetime | None = None,
    ) -> Decision:
        return Decision(
            code=code,
            detail=detail,
            ms_status=ms_status(license.kind, license.ms_covered_through, today),
            ms_covered_through=license.ms_covered_through,
            legacy=is_legacy(version.major, releases),
            max_version=max_version,
            addons=verdict if code.valid else _deny_all(verdict, requested_addons),
            servers_active=active,
            servers_allowed=allowed,
            grace_ends_at=grace_ends_at,
            disable_at=disable_at,
        )

    if license.status is LicenseStatus.DISABLED or (
        installations is not None and installations.case_stage is CaseStage.DISABLED
    ):
        reason = license.disabled_reason or (
            "the license is assumed compromised" if license.status is LicenseStatus.ACTIVE else None
        )
        return answer(
            Code.DISABLED, f"This license has been disabled{f': {reason}' if reason else ''}."
        )
    expired = _expiry_detail(license, now)
    if expired is not None:
        return answer(Code.EXPIRED, expired)
    if not eligible:
        return answer(Code.BUILD_NOT_ELIGIBLE, _ineligible_detail(license, version, max_version))
    if installations is None:
        return answer(Code.VALID, "This license is valid.")
    return answer(*_servers_state(installations, now, grace, disable_after))


def _refusal(
    code: Code, detail: str, requested: Sequence[str], active: int, allowed: int
) -> Decision:
    denied = tuple((name, AddonDenial.NOT_LICENSED) for name in dict.fromkeys(requested))
    return Decision(
        code=code,
        detail=detail,
        ms_status=MsStatus.NONE,
        ms_covered_through=None,
        legacy=False,
        max_version=None,
        addons=AddonVerdict((), denied),
        servers_active=active,
        servers_allowed=allowed,
        grace_ends_at=None,
        disable_at=None,
    )


def _deny_all(verdict: AddonVerdict, requested: Sequence[str]) -> AddonVerdict:
    reasons = dict(verdict.denied)
    names = dict.fromkeys(requested)
    return AddonVerdict((), tuple((n, reasons.get(n, AddonDenial.NOT_LICENSED)) for n in names))


def _servers_state(
    inst: InstallationState, now: datetime, grace: timedelta, disable_after: timedelta
) -> tuple[Code, str, datetime | None, datetime | None]:
    since = inst.over_limit_since
    grace_ends_at = inst.grace_ends_at or (since + grace if since else None)
    disable_at = inst.disable_at or (since + disable_after if since else None)
    servers = f"{inst.servers_active} servers use this key, {inst.servers_allowed} allowed"
    stage = inst.case_stage
    if stage is None or stage is CaseStage.RESOLVED:
        if since is None or inst.servers_active <= inst.servers_allowed:
            return Code.VALID, "This license is valid.", None, None
        grace_ends_at, disable_at = since + grace, since + disable_after
        stage = CaseStage.GRACE if now < grace_ends_at else CaseStage.OVERDUE
    if stage is CaseStage.GRACE:
        until = _when(grace_ends_at)
        detail = f"{servers}; migration grace runs until {until}."
        return Code.GRACE, detail, grace_ends_at, None
    detail = (
        f"{servers}; migration grace has ended and the key will be disabled on {_when(disable_at)}."
    )
    return Code.OVERDUE, detail, grace_ends_at, disable_at


def _when(at: datetime | None) -> str:
    if at is None:
        return "a date the fraud team sets"
    return (at.astimezone(UTC) if at.tzinfo else at).strftime("%Y-%m-%d %H:%M UTC")


def _expiry_detail(license: License, now: datetime) -> str | None:
    today = now.date()
    if license.kind is LicenseKind.TRIAL and trial_expired(
        license.purchased_on, license.trial_days, today
    ):
        last_day = license.purchased_on + timedelta(days=license.trial_days - 1)
        return f"This {license.trial_days}-day trial ended on {last_day.isoformat()}."
    if license.kind is LicenseKind.LEASE and not lease_active(license.lease_ends_on, today):
        ended = license.lease_ends_on.isoformat() if license.lease_ends_on else "an earlier date"
        return f"This lease ended on {ended}."
    return None


def _ineligible_detail(license: License, version: Version, max_version: Version | None) -> str:
    if license.major_version is not None:
        newest = f"; the newest eligible build is {max_version}" if max_version else ""
        return (
            f"This license is limited to version {license.major_version}.x and earlier, "
            f"not {version}{newest}."
        )
    ended = license.ms_covered_through or license.purchased_on
    if max_version is None:
        return f"No published build was released by {ended.isoformat()}, when M&S ended."
    return f"This license may run builds up to {max_version}; M&S ended {ended.isoformat()}."
