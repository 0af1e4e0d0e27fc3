"""The activation answer's JSON shape (SPEC §5), built from a Decision by value."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from activation.licensing.model import Code, Decision, License


def render_activation(
    decision: Decision,
    license: License | None,
    *,
    fingerprint: str,
    nonce: str | None,
    now: datetime,
    valid_for: timedelta,
) -> dict[str, Any]:
    """The whole answer: the static part and the per-request part."""
    payload = render_static(decision, license)
    payload.update(
        render_timed(
            decision.valid,
            fingerprint,
            decision.servers_active,
            decision.servers_allowed,
            decision.grace_ends_at,
            decision.disable_at,
            nonce,
            now,
            valid_for,
        )
    )
    return payload


def render_static(decision: Decision, license: License | None) -> dict[str, Any]:
    """What depends on the decision only. NOT_FOUND and PRODUCT_MISMATCH answers carry no
    license block: they say nothing about a license the caller may not hold."""
    show_license = license is not None and decision.code is not Code.PRODUCT_MISMATCH
    return {
        "valid": decision.valid,
        "code": decision.code.value,
        "detail": decision.detail,
        "license": _license_block(decision, license) if show_license and license else None,
        "addons": {
            "granted": list(decision.addons.granted),
            "denied": [
                {"name": name, "reason": reason.value} for name, reason in decision.addons.denied
            ],
        },
    }


def render_timed(
    valid: bool,
    fingerprint: str,
    servers_active: int,
    servers_allowed: int,
    grace_ends_at: datetime | None,
    disable_at: datetime | None,
    nonce: str | None,
    now: datetime,
    valid_for: timedelta,
) -> dict[str, Any]:
    """What changes with every request: the server, the nonce and the times. By value, not
    from a Decision: a memoized answer has no Decision at hand (see answers.py)."""
    return {
        "installation": {
            "fingerprint": fingerprint,
            "servers_active": servers_active,
            "servers_allowed": servers_allowed,
            "grace_ends_at": _moment(grace_ends_at),
            "disable_at": _moment(disable_at),
        },
        "nonce": nonce,
        "issued_at": _moment(now),
        "valid_until": _moment(now + valid_for) if valid else None,
    }


def _license_block(decision: Decision, license: License) -> dict[str, Any]:
    return {
        "product": license.product,
        "kind": license.kind.value,
        "edition": license.edition.value,
        "limits": dict(license.limits),
        "ms_status": decision.ms_status.value,
        "ms_covered_through": _day(decision.ms_covered_through),
        "legacy": decision.legacy,
        "max_version": None if decision.max_version is None else str(decision.max_version),
    }


def _moment(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _second(int(moment.timestamp()))


@functools.lru_cache(maxsize=256)
def _second(epoch: int) -> str:
    """ISO-8601 UTC to the second; cached because every answer of a second repeats it."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _day(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
