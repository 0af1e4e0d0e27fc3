"""The licensing domain's values: closed enumerations and frozen dataclasses, no I/O.

Everything here is what PostgreSQL stores and what the Redis license cache carries
(`License.to_doc` / `License.from_doc`), so the hot path and the admin API agree on one shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson


class LicenseKind(StrEnum):
    """R1."""

    PERPETUAL = "perpetual"
    LEASE = "lease"
    TRIAL = "trial"
    FREE = "free"


class Edition(StrEnum):
    """R10."""

    FREE = "free"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"


class LicenseStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class MsStatus(StrEnum):
    """R6. `none` is for kinds that carry no M&S at all (lease, trial, free)."""

    PROTECTED = "protected"
    EXPIRING_SOON = "expiring_soon"
    EXPIRED = "expired"
    NONE = "none"


class Code(StrEnum):
    """Decision codes of SPEC §5, in no particular order (precedence lives in decision.py)."""

    VALID = "VALID"
    GRACE = "GRACE"
    OVERDUE = "OVERDUE"
    DISABLED = "DISABLED"
    EXPIRED = "EXPIRED"
    BUILD_NOT_ELIGIBLE = "BUILD_NOT_ELIGIBLE"
    PRODUCT_MISMATCH = "PRODUCT_MISMATCH"
    NOT_FOUND = "NOT_FOUND"

    @property
    def valid(self) -> bool:
        return self in (Code.VALID, Code.GRACE, Code.OVERDUE)


class AddonDenial(StrEnum):
    """R8: why a requested add-on is not granted."""

    NOT_LICENSED = "NOT_LICENSED"
    MS_EXPIRED = "MS_EXPIRED"


class CaseStage(StrEnum):
    """The fraud case stages the activation answer reports (R13, R14); driven by fraud/."""

    GRACE = "grace"
    OVERDUE = "overdue"
    DISABLED = "disabled"
    RESOLVED = "resolved"


class TeamAction(StrEnum):
    """The fraud team's case actions (SPEC §6, R15); the admin API and the console take them,
    fraud/cases.py applies them."""

    HOLD = "hold"
    RELEASE_HOLD = "release_hold"
    EXTEND = "extend"
    RESOLVE = "resolve"
    GRANT_EXCEPTION = "grant_exception"
    DISABLE = "disable"
    ENABLE = "enable"
    LOG_CALL = "log_call"


# The admin API's bounds on a new license: ten years of trial at most (longer is not a trial, and
# dates must stay computable), ten thousand servers.
MAX_TRIAL_DAYS = 3650
MAX_SERVERS = 10_000


KNOWN_ADDONS: frozenset[str] = frozenset({"eas", "mapi", "ews", "messagesniffer", "communicator"})

_VERSION_RE = re.compile(r"([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,9})", re.ASCII)


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """`MAJOR.MINOR.BUILD`; the third part is the build number (14.7.6347 is build 6347)."""

    major: int
    minor: int
    build: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"version must look like MAJOR.MINOR.BUILD, got {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


@dataclass(frozen=True, slots=True)
class Release:
    product: str
    version: Version
    released_on: date


@dataclass(frozen=True, slots=True)
class License:
    """A license as the rules see it.

    - `ms_covered_through` is the last covered day of M&S (R2), None for kinds without M&S.
    - `lease_ends_on` is the last day of an active lease; None means open-ended (R1).
    - `max_servers` is the number of active installations allowed (R12), already including
      failover and any fraud-team exception.
    - `major_version` locks a legacy license to a major version ("Professional 14.x", R7).
    """

    key: str
    product: str
    kind: LicenseKind
    edition: Edition
    purchased_on: date
    status: LicenseStatus = LicenseStatus.ACTIVE
    ms_covered_through: date | None = None
    lease_ends_on: date | None = None
    trial_days: int = 30
    failover: bool = False
    max_servers: int = 1
    major_version: int | None = None
    addons: frozenset[str] = frozenset()
    limits: Mapping[str, int] = field(default_factory=dict)
    auto_renew: bool = False
    disabled_reason: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The JSON-ready form kept in the Redis license cache."""
        return {
            "key": self.key,
            "product": self.product,
            "kind": self.kind.value,
            "edition": self.edition.value,
            "purchased_on": self.purchased_on.isoformat(),
            "status": self.status.value,
            "ms_covered_through": _iso_or_none(self.ms_covered_through),
            "lease_ends_on": _iso_or_none(self.lease_ends_on),
            "trial_days": self.trial_days,
            "failover": self.failover,
            "max_servers": self.max_servers,
            "major_version": self.major_version,
            "addons": sorted(self.addons),
            "limits": dict(self.limits),
            "auto_renew": self.auto_renew,
            "disabled_reason": self.disabled_reason,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_doc())

    @classmethod
    def from_json(cls, raw: bytes | str) -> License:
        return cls.from_doc(orjson.loads(raw))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> License:
        return cls(
            key=doc["key"],
            product=doc["product"],
            kind=LicenseKind(doc["kind"]),
            edition=Edition(doc["edition"]),
            purchased_on=date.fromisoformat(doc["purchased_on"]),
            status=LicenseStatus(doc["status"]),
            ms_covered_through=_date_or_none(doc["ms_covered_through"]),
            lease_ends_on=_date_or_none(doc["lease_ends_on"]),
            trial_days=int(doc["trial_days"]),
            failover=bool(doc["failover"]),
            max_servers=int(doc["max_servers"]),
            major_version=doc["major_version"],
            addons=frozenset(doc["addons"]),
            limits=dict(doc["limits"]),
            auto_renew=bool(doc["auto_renew"]),
            disabled_reason=doc["disabled_reason"],
        )


class InstallationState(NamedTuple):
    """What the activation Lua script reports about a key's servers at this request (R11–R13),
    plus the fraud case summary the worker keeps beside the license in Redis. A named tuple:
    one is built per activation, and a named tuple is cheaper to build than a frozen
    dataclass."""

    servers_active: int
    servers_allowed: int
    over_limit_since: datetime | None = None
    case_stage: CaseStage | None = None
    grace_ends_at: datetime | None = None
    disable_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AddonVerdict:
    granted: tuple[str, ...]
    denied: tuple[tuple[str, AddonDenial], ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one activation, by value; the API only renders it."""

    code: Code
    detail: str
    ms_status: MsStatus
    ms_covered_through: date | None
    legacy: bool
    max_version: Version | None
    addons: AddonVerdict
    servers_active: int
    servers_allowed: int
    grace_ends_at: datetime | None
    disable_at: datetime | None

    @property
    def valid(self) -> bool:
        return self.code.valid


def _iso_or_none(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _date_or_none(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)
