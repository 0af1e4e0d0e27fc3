"""PostgreSQL reads and writes of the admin side: customers, licenses, M&S, releases, tokens.

Every function takes a connection, so the caller owns the transaction (and puts the audit row
in it). Constraint violations surface as asyncpg errors for the caller to map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from activation.licensing.model import Edition, License, LicenseKind, LicenseStatus, Version
from activation.store.registry import LICENSE_COLUMNS, license_from_row


@dataclass(frozen=True, slots=True)
class LicenseRecord:
    """A license with the bookkeeping columns the rules do not need."""

    license: License
    customer_id: int
    exception_max_servers: int | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # The row version read (xmin): a cache write of this record marks exactly it synced.
    row_version: str = ""

    def to_doc(self) -> dict[str, Any]:
        return self.license.to_doc() | {
            "customer_id": self.customer_id,
            "exception_max_servers": self.exception_max_servers,
            "disabled_at": self.disabled_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class NewLicense:
    key: str
    customer_id: int
    product: str
    kind: LicenseKind
    edition: Edition
    purchased_on: date
    ms_covered_through: date | None = None
    lease_ends_on: date | None = None
    trial_days: int = 30
    failover: bool = False
    max_servers: int = 1
    major_version: int | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    addons: frozenset[str] = frozenset()
    auto_renew: bool = False


def _record(row: Mapping[str, Any]) -> LicenseRecord:
    return LicenseRecord(
        license=license_from_row(row),
        customer_id=row["customer_id"],
        exception_max_servers=row["exception_max_servers"],
        disabled_at=row["disabled_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        row_version=row.get("row_version", ""),
    )


async def fetch_license(
    conn: asyncpg.Connection, key: str, *, lock: bool = False
) -> LicenseRecord | None:
    suffix = " FOR UPDATE OF l" if lock else ""
    row = await conn.fetchrow(
        f"SELECT {LICENSE_COLUMNS}, l.xmin::text AS row_version FROM licenses l "
        f"WHERE l.key = $1{suffix}",
        key,
    )
    return None if row is None else _record(row)


async def insert_license(conn: asyncpg.Connection, new: NewLicense, actor: str) -> LicenseRecord:
    """Insert a license, its add-ons and (with M&S) its purchase transaction (R2)."""
    await conn.execute(
        "INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on, "
        "ms_covered_through, lease_ends_on, trial_days, failover, max_servers, major_version, "
        "limits, auto_renew) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13::jsonb,$14)",
        new.key, new.customer_id, new.product, new.kind.value, new.edition.value,
        new.purchased_on, new.ms_covered_through, new.lease_ends_on, new.trial_days,
        new.failover, new.max_servers, new.major_version,
        orjson.dumps(dict(new.limits)).decode(), new.auto_renew,
    )  # fmt: skip
    for name in sorted(new.addons):
        await add_addon(conn, new.key, name, new.purchased_on)
    if new.ms_covered_through is not None:
        await record_ms(
            conn, new.key, "purchase", new.purchased_on, None, None, new.ms_covered_through, actor
        )
    record = await fetch_license(conn, new.key)
    assert record is not None
    return record


async def set_status(
    conn: asyncpg.Connection, key: str, status: LicenseStatus, reason: str | None, at: datetime
) -> None:
    disabled = status is LicenseStatus.DISABLED
    await conn.execute(
        "UPDATE licenses SET status = $2, disabled_reason = $3, disabled_at = $4, "
        "updated_at = $5 WHERE key = $1",
        key, status.value, reason if disabled else None, at if disabled else None, at,
    )  # fmt: skip


async def set_auto_renew(conn: asyncpg.Connection, key: str, enabled: bool, at: datetime) -> None:
    await conn.execute(
        "UPDATE licenses SET auto_renew = $2, updated_at = $3 WHERE key = $1", key, enabled, at
    )


async def extend_coverage(
    conn: asyncpg.Connection, key: str, covered_through: date, at: datetime
) -> None:
    await conn.execute(
        "UPDATE licenses SET ms_covered_through = $2, updated_at = $3 WHERE key = $1",
        key, covered_through, at,
    )  # fmt: skip


async def record_ms(
    conn: asyncpg.Connection,
    key: str,
    kind: str,
    on: date,
    price_ratio: Decimal | None,
    before: date | None,
    after: date,
    actor: str,
) -> None:
    await conn.execute(
        "INSERT INTO ms_transactions (license_key, kind, on_date, price_ratio, "
        "covered_through_before, covered_through_after, actor) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        key, kind, on, price_ratio, before, after, actor,
    )  # fmt: skip


async def ms_transactions(conn: asyncpg.Connection, key: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, kind, on_date, price_ratio, covered_through_before, covered_through_after, "
        "actor, created_at FROM ms_transactions WHERE license_key = $1 ORDER BY id",
        key,
    )
    return [
        dict(row)
        | {"price_ratio": None if row["price_ratio"] is None else float(row["price_ratio"])}
        for row in rows
    ]


async def add_addon(conn: asyncpg.Connection, key: str, name: str, on: date) -> bool:
    status = await conn.execute(
        "INSERT INTO license_addons (license_key, name, added_on) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        key, name, on,
    )  # fmt: skip
    return bool(status.endswith(" 1"))


async def remove_addon(conn: asyncpg.Connection, key: str, name: str) -> bool:
    status = await conn.execute(
        "DELETE FROM license_addons WHERE license_key = $1 AND name = $2", key, name
    )
    return bool(status == "DELETE 1")


async def insert_customer(
    conn: asyncpg.Connection, name: str, email: str, phone: str | None
) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO customers (name, email, phone) VALUES ($1, $2, $3) "
        "RETURNING id, name, email, phone, created_at",
        name, email, phone,
    )  # fmt: skip
    return dict(row)


async def fetch_customer(conn: asyncpg.Connection, customer_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT id, name, email, phone, created_at FROM customers WHERE id = $1", customer_id
    )
    return None if row is None else dict(row)


async def customer_licenses(conn: asyncpg.Connection, customer_id: int) -> list[LicenseRecord]:
    rows = await conn.fetch(
        f"SELECT {LICENSE_COLUMNS} FROM licenses l WHERE l.customer_id = $1 ORDER BY l.created_at",
        customer_id,
    )
    return [_record(row) for row in rows]


def _release(row: Mapping[str, Any]) -> dict[str, Any]:
    version = Version(row["major"], row["minor"], row["build"])
    return {
        "id": row["id"],
        "product": row["product"],
        "version": str(version),
        "build": version.build,
        "released_on": row["released_on"],
    }


async def insert_release(
    conn: asyncpg.Connection, product: str, version: Version, released_on: date
) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO releases (product, major, minor, build, released_on) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id, product, major, minor, build, released_on",
        product, version.major, version.minor, version.build, released_on,
    )  # fmt: skip
    return _release(row)


async def list_releases(conn: asyncpg.Connection, product: str | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, product, major, minor, build, released_on FROM releases "
        "WHERE $1::text IS NULL OR product = $1 ORDER BY product, major, minor, build",
        product,
    )
    return [_release(row) for row in rows]
