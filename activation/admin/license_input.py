"""A license to create or import, read from a JSON object or a CSV row (SPEC §6, §10).

- `max_servers` defaults to 2 with failover, else 1 (R12).
- A perpetual license gets 12 months of M&S from `purchased_on` (R2) unless an import names
  its current `ms_covered_through`; other kinds carry none.
- A free license has no add-ons (R1); add-on names must be known ones (R8) — both 422.
- A given `key` imports an existing license: 5 groups of 5 letters/digits, uppercased.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from activation.admin import parsing as p
from activation.licensing.maintenance import has_ms, initial_coverage_end
from activation.licensing.model import (
    KNOWN_ADDONS,
    MAX_SERVERS,
    MAX_TRIAL_DAYS,
    Edition,
    LicenseKind,
)
from activation.store.admin_store import NewLicense
from activation.store.registry import new_license_key
from activation.web.problems import ProblemError, bad_field

KEY_RE = re.compile(r"^[A-Z0-9]{5}(?:-[A-Z0-9]{5}){4}$")

_INT_FIELDS = frozenset({"customer_id", "max_servers", "major_version", "trial_days"})
_BOOL_FIELDS = frozenset({"failover", "auto_renew"})
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f"})


def license_key(value: object, field: str = "key") -> str:
    if not isinstance(value, str) or not KEY_RE.fullmatch(value.strip().upper()):
        raise bad_field(field, "must be 5 groups of 5 letters or digits joined by '-'")
    return value.strip().upper()


def addon_name(value: str, field: str = "addons") -> str:
    if value not in KNOWN_ADDONS:
        known = ", ".join(sorted(KNOWN_ADDONS))
        raise ProblemError(
            422, f"{field}: unknown add-on {value[:40]!r} (known: {known})", field=field
        )
    return value


def new_license(body: Mapping[str, Any], *, key_required: bool = False) -> NewLicense:
    if body.get("key") is None and key_required:
        raise bad_field("key", "is required")
    key = new_license_key() if body.get("key") is None else license_key(body["key"])
    kind = p.choice(body, "kind", LicenseKind)
    purchased_on = p.day(body, "purchased_on")
    failover = p.boolean(body, "failover", default=False)
    addons = frozenset(addon_name(name) for name in p.names(body, "addons"))
    if addons and kind is LicenseKind.FREE:
        raise ProblemError(422, "addons: a free license cannot have add-ons", field="addons")
    covered = p.opt_day(body, "ms_covered_through")
    if has_ms(kind):
        covered = covered or initial_coverage_end(purchased_on)
    elif covered is not None:
        raise ProblemError(
            422, f"ms_covered_through: a {kind} license has no M&S", field="ms_covered_through"
        )
    return NewLicense(
        key=key,
        customer_id=p.integer(body, "customer_id", minimum=1),
        product=p.text(body, "product", max_len=100).lower(),
        kind=kind,
        edition=p.choice(body, "edition", Edition),
        purchased_on=purchased_on,
        ms_covered_through=covered,
        lease_ends_on=p.opt_day(body, "lease_ends_on"),
        trial_days=p.opt_integer(body, "trial_days", minimum=1, maximum=MAX_TRIAL_DAYS) or 30,
        failover=failover,
        max_servers=p.opt_integer(body, "max_servers", minimum=1, maximum=MAX_SERVERS)
        or (2 if failover else 1),
        major_version=p.opt_integer(body, "major_version", minimum=0),
        limits=p.counts(body, "limits"),
        addons=addons,
        auto_renew=p.boolean(body, "auto_renew", default=False) and has_ms(kind),
    )


def csv_row(row: Mapping[str, str | None]) -> dict[str, Any]:
    """A CSV row as the JSON object it stands for (empty cells are absent fields).

    Add-ons are separated by ';' and limits written `name=value;name=value`.
    """
    body: dict[str, Any] = {}
    for name, raw in row.items():
        cell = (raw or "").strip() if isinstance(raw, str | None) else ""
        if not name or not cell:
            continue
        name = name.strip()
        if name in _INT_FIELDS:
            body[name] = _csv_int(name, cell)
        elif name in _BOOL_FIELDS:
            body[name] = _csv_bool(name, cell)
        elif name == "addons":
            body[name] = [part for part in cell.split(";") if part.strip()]
        elif name == "limits":
            body[name] = _csv_limits(cell)
        else:
            body[name] = cell
    return body


def _csv_int(name: str, cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise bad_field(name, f"must be a whole number, got {cell[:40]!r}") from None


def _csv_bool(name: str, cell: str) -> bool:
    if cell.lower() in _TRUE:
        return True
    if cell.lower() in _FALSE:
        return False
    raise bad_field(name, f"must be true or false, got {cell[:40]!r}")


def _csv_limits(cell: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for part in cell.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise bad_field("limits", "must be written name=value;name=value")
        limits[name.strip()] = _csv_int("limits", value.strip())
    return limits
