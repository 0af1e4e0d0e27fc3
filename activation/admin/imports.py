"""Bulk import of existing licenses (SPEC §6): a JSON list or a CSV file, one savepoint per row.

A row that fails is reported and skipped; the others are imported. Every imported license is
audited and, after the commit, written through to the Redis cache and marked synced there (the
worker's cache sweep does not write it again).
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
from activation.store.admin_store import LicenseRecord
from activation.store.cache_write import mark_synced
from activation.web.problems import ProblemError, bad_field

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PROGRESS_EVERY = 500
CACHE_BATCH = 100  # concurrent cache write-throughs after the commit
# The admin app shares its process and event loop with the public API: an import may not keep
# the loop for long. Rows that fail validation never await, so without a yield a long run of
# them would hold activations back: the loop is handed back every YIELD_EVERY rows, and one
# import is at most MAX_ROWS rows (the 32 MiB body limit alone admits ten million `{}` rows).
YIELD_EVERY = 200
MAX_ROWS = 100_000


async def import_rows(request: web.Request) -> list[Mapping[str, Any]]:
    if _is_csv(request):
        raw = await request.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise bad_field("body", "CSV must be UTF-8") from None
        try:
            rows: list[Mapping[str, Any]] = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as error:
            raise bad_field("body", f"CSV: {error}") from None
        field = "body"
    else:
        listed = (await p.json_body(request)).get("licenses")
        if not isinstance(listed, list):
            raise bad_field("licenses", "must be a list of license objects")
        rows, field = listed, "licenses"
    if len(rows) > MAX_ROWS:
        raise bad_field(field, f"at most {MAX_ROWS:,} rows per import: split the file")
    return rows


async def import_all(
    conn: asyncpg.Connection,
    rows: list[Mapping[str, Any]],
    *,
    csv_input: bool,
    who: str,
    at: datetime,
) -> tuple[list[LicenseRecord], list[dict[str, Any]]]:
    """Each row in its own savepoint (inside `insert_audited`); failures are collected."""
    imported: list[LicenseRecord] = []
    failed: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        key = row.get("key") if isinstance(row, Mapping) else None
        try:
            if not isinstance(row, Mapping):
                raise bad_field("row", "must be an object")
            new = new_license(csv_row(row) if csv_input else row, key_required=True)
            record = await insert_audited(conn, new, who, at, "license.import")
            imported.append(record)
        except ProblemError as error:
            failed.append({"row": number, "key": key, "detail": error.detail})
        if number % PROGRESS_EVERY == 0:
            log.info("imported %d/%d", number, len(rows))
        if number % YIELD_EVERY == 0:
            await asyncio.sleep(0)
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
        await asyncio.gather(*(resources.store.put_license(record.license) for record in batch))
        await mark_synced(resources.pool, ((r.license.key, r.row_version) for r in batch))
    log.info("import done: %d imported, %d failed", len(imported), len(failed))
    return render({"imported": len(imported), "failed": failed})


def _is_csv(request: web.Request) -> bool:
    return request.content_type in ("text/csv", "application/csv")
