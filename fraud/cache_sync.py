"""The license cache's safety net (R17): re-write licenses whose Redis copy may be stale.

Every change of a license row or its add-ons marks the row unsynced (a trigger, migration
0003). Admin writes, the worker's own license writes (a case step, an auto-renewal) and
`activation-server rebuild-cache` put the document into Redis at once and mark the row version
they wrote synced (`activation.store.cache_write.mark_synced`), so this sweep writes each
license once: it takes the rows changed outside those writers, and the write whose Redis half
failed after PostgreSQL had committed, so such a change reaches every API process within one
worker pass instead of waiting for the next write. A row is marked synced only if it did not
change while its document was being written (the row's xmin is compared).
"""

from __future__ import annotations

import asyncpg

from activation.store.cache_write import mark_synced
from activation.store.redis_store import ActivationStore
from activation.store.registry import LICENSE_COLUMNS, license_from_row


class CacheSync:
    def __init__(self, pool: asyncpg.Pool, store: ActivationStore, batch: int = 500) -> None:
        self._pool = pool
        self._store = store
        self._batch = batch

    async def run_once(self) -> int:
        """Write one batch of unsynced licenses to Redis; the number written."""
        rows = await self._pool.fetch(
            f"""SELECT {LICENSE_COLUMNS}, l.xmin::text AS version FROM licenses l
                WHERE NOT l.cache_synced ORDER BY l.key LIMIT $1""",
            self._batch,
        )
        for row in rows:
            await self._store.put_license(license_from_row(row))
        await mark_synced(self._pool, ((row["key"], row["version"]) for row in rows))
        return len(rows)
