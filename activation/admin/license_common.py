"""What every license route shares: the path key, the JSON view, and the audited write.

A write runs in one PostgreSQL transaction (row locked, change, audit row), and only after the
commit is the Redis license cache written through (R17: PostgreSQL first, then Redis).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from activation.admin import audit
from activation.admin.auth import actor
from activation.admin.case_side import case_side_of
from activation.admin.license_input import KEY_RE
from activation.admin.state import now, resources_of
from activation.licensing.maintenance import ms_status
from activation.store import admin_store
from activation.store.admin_store import LicenseRecord
from activation.store.cache_write import write_through
from activation.web.problems import ProblemError

T = TypeVar("T")
Change = Callable[[asyncpg.Connection, LicenseRecord, datetime], Awaitable[T]]


def path_key(request: web.Request) -> str:
    """Keys are matched case-insensitively; anything not shaped like a key names no license."""
    key = request.match_info["key"].strip().upper()
    if not KEY_RE.fullmatch(key):
        raise not_found(key)
    return key


def not_found(key: str) -> ProblemError:
    return ProblemError(404, f"no license {key[:40]!r}")


def license_json(record: LicenseRecord, today: date) -> dict[str, Any]:
    license = record.license
    return record.to_doc() | {
        "ms_status": ms_status(license.kind, license.ms_covered_through, today).value,
        "case": None,
    }


async def full_view(request: web.Request, record: LicenseRecord, today: date) -> dict[str, Any]:
    """The license with its servers (from Redis), M&S transactions and open case (SPEC §10)."""
    resources, cases = resources_of(request), case_side_of(request)
    async with resources.pool.acquire() as conn:
        transactions = await admin_store.ms_transactions(conn, record.license.key)
        case = None if cases is None else await cases.open_case(conn, record.license.key)
    installations = await resources.store.installations(record.license.key)
    shown = None if cases is None or case is None else cases.case_item(request, case, installations)
    return license_json(record, today) | {
        "installations": installations,
        "ms_transactions": transactions,
        "case": shown,
    }


async def change_license(
    request: web.Request, key: str, action: str, change: Change[T]
) -> tuple[LicenseRecord, T]:
    """Lock, change, audit (before/after), commit, then write the cache through."""
    resources = resources_of(request)
    at = await now(request)
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await admin_store.fetch_license(conn, key, lock=True)
        if before is None:
            raise not_found(key)
        result = await change(conn, before, at)
        after = await admin_store.fetch_license(conn, key)
        assert after is not None
        await audit.record(
            conn,
            at=at,
            actor=actor(request),
            action=action,
            target=f"license:{key}",
            before=before.to_doc(),
            after=after.to_doc(),
        )
    await write_through(resources.pool, resources.store, [after])
    return after, result
