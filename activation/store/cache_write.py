"""Writing a license into the Redis cache once per change.

A trigger marks every changed license row unsynced (migration 0003), and the worker's sweep
(`fraud.cache_sync`) re-writes unsynced rows into Redis. A writer that has just put the row's
document into Redis itself marks that row version synced, so the sweep does not write it a
second time; a row changed meanwhile (another xmin) stays unsynced and the sweep takes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from activation.store.admin_store import LicenseRecord
from activation.store.redis_store import ActivationStore
from activation.store.registry import LICENSE_COLUMNS, license_from_row

MARK_SYNCED = """
UPDATE licenses l SET cache_synced = true
FROM unnest($1::text[], $2::text[]) AS done (key, version)
WHERE l.key = done.key AND l.xmin::text = done.version AND NOT l.cache_synced
"""


async def mark_synced(pool: asyncpg.Pool, written: Iterable[tuple[str, str]]) -> None:
    """Mark each (key, row version) synced if the row is still that version."""
    pairs = [(key, version) for key, version in written if version]
    if pairs:
        await pool.execute(MARK_SYNCED, [key for key, _ in pairs], [v for _, v in pairs])


async def write_through(
    pool: asyncpg.Pool, store: ActivationStore, records: Sequence[LicenseRecord]
) -> None:
    """After the commit: the documents into Redis, then their row versions marked synced. A
    Redis failure leaves them unsynced (and raises), so the sweep still delivers them (R17)."""
    for record in records:
        await store.put_license(record.license)
    await mark_synced(pool, ((r.license.key, r.row_version) for r in records))


async def rebuild_cache(pool: asyncpg.Pool, store: ActivationStore) -> int:
    """Every license from PostgreSQL into Redis (`activation-server rebuild-cache`, after Redis
    lost its data), each row version written marked synced so the sweep does not write it
    again; the number written."""
    rows = await pool.fetch(f"SELECT {LICENSE_COLUMNS}, l.xmin::text AS version FROM licenses l")
    for row in rows:
        await store.put_license(license_from_row(row))
    await mark_synced(pool, ((row["key"], row["version"]) for row in rows))
    return len(rows)
