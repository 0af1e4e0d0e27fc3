"""Bulk import of existing licenses (SPEC §6): a JSON list or a CSV file, one savepoint per row.

A row that fails is reported and skipped; the others are imported. Every imported license is
audited and, after the commit, written through to the Redis cache.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.license_input import csv_row, new_license
from activation.admin.licenses import insert_audited
from activation.admin.state import Role, now, render, resources_of
from activation.api.problems import ProblemError, bad_field
from activation.licensing.model import License

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PROGRESS_EVERY = 500
CACHE_BATCH = 100  # concurrent cache write-throughs after the commit


async def import_rows(request: web.Request) -> list[Mapping[str, Any]]:
    if _is_csv(request):
        raw = await request.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise bad_field("body", "CSV must be UTF-8") from None
        try:
            return list(csv.DictReader(io.StringIO(text)))
        except csv.Error as error:
            raise bad_field("body", f"CSV: {error}") from None
    body = await p.json_body(request)
    rows = body.get("licenses")
    if not isinstance(rows, list):
        raise bad_field("licenses", "must be a list of license objects")
    return rows


async def import_all(
    conn: asyncpg.Connection,
    rows: list[Mapping[str, Any]],
    *,
    csv_input: bool,
    who: str,
    at: datetime,
) -> tuple[list[License], list[dict[str, Any]]]:
    """Each row in its own savepoint (inside `insert_audited`); failures are collected."""
    imported: list[License] = []
    failed: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        key = row.get("key") if isinstance(row, Mapping) else None
        try:
            if not isinstance(row, Mapping):
                raise bad_field("row", "must be an object")
            new = new_license(csv_row(row) if csv_input else row, key_required=True)
            record = await insert_audited(conn, new, who, at, "license.import")
            imported.append(record.license)
        except ProblemError as error:
            failed.append({"row": number, "key": key, "detail": error.detail})
        if number % PROGRESS_EVERY == 0:
            log.info("imported %d/%d", number, len(rows))
    return imported, failed


@routes.post("/admin/v1/licenses/import")
@requires(Role.ADMIN)
async def import_licenses(request: web.Request) -> web.Response:
    rows = await import_rows(request)
    resources = resources_of(request)
    who, at = actor(request), await now(request)
    async with resources.pool.acquire() as conn, conn.transaction():
        imported, failed = await import_all(conn, rows, csv_input=_is_csv(request), who=who, at=at)
    for start in range(0, len(imported), CACHE_BATCH):
        batch = imported[start : start + CACHE_BATCH]
        await asyncio.gather(*(resources.store.put_license(license) for license in batch))
    log.info("import done: %d imported, %d failed", len(imported), len(failed))
    return render({"imported": len(imported), "failed": failed})


def _is_csv(request: web.Request) -> bool:
    return request.content_type in ("text/csv", "application/csv")
