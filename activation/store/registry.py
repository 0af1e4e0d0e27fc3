"""PostgreSQL reads the hot path needs: a license on a cache miss, and the release catalog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from activation.licensing.model import (
    Edition,
    License,
    LicenseKind,
    LicenseStatus,
    Release,
    Version,
)

log = logging.getLogger(__name__)

# A cache miss waits at most this long for PostgreSQL (a connection from the pool, then the
# query), like the Redis calls' 2-s timeout: a stalled database (a lock held by a migration,
# a network partition) is then a 503 with Retry-After, not requests piling up for as long as
# the stall lasts. asyncio.timeout's TimeoutError is an OSError: web/problems.py maps it to 503.
LICENSE_LOAD_TIMEOUT_S = 2.0

KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: keys are read over the phone

LICENSE_COLUMNS = """
    l.key, l.customer_id, l.product, l.kind, l.edition, l.purchased_on, l.ms_covered_through,
    l.lease_ends_on, l.trial_days, l.failover, l.max_servers, l.exception_max_servers,
    l.major_version, l.limits, l.auto_renew, l.status, l.disabled_reason, l.disabled_at,
    l.created_at, l.updated_at,
    COALESCE((SELECT array_agg(a.name ORDER BY a.name) FROM license_addons a
              WHERE a.license_key = l.key), '{}') AS addons
"""


def new_license_key() -> str:
    chars = "".join(secrets.choice(KEY_ALPHABET) for _ in range(25))
    return "-".join(chars[i : i + 5] for i in range(0, 25, 5))


def license_from_row(row: Mapping[str, Any]) -> License:
    limits = row["limits"]
    if isinstance(limits, str):
        limits = orjson.loads(limits)
    return License(
        key=row["key"],
        product=row["product"],
        kind=LicenseKind(row["kind"]),
        edition=Edition(row["edition"]),
        purchased_on=row["purchased_on"],
        status=LicenseStatus(row["status"]),
        ms_covered_through=row["ms_covered_through"],
        lease_ends_on=row["lease_ends_on"],
        trial_days=row["trial_days"],
        failover=row["failover"],
        max_servers=row["exception_max_servers"] or row["max_servers"],
        major_version=row["major_version"],
        addons=frozenset(row["addons"]),
        limits={str(name): int(value) for name, value in limits.items()},
        auto_renew=row["auto_renew"],
        disabled_reason=row["disabled_reason"],
    )


class LicenseRegistry:
    """`queries` counts license loads, so tests can show activations stay off PostgreSQL on
    cache hits (the release catalog refreshes in the background and is not counted)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.queries = 0

    async def load_license(self, key: str) -> License | None:
        self.queries += 1
        async with asyncio.timeout(LICENSE_LOAD_TIMEOUT_S):
            row = await self.pool.fetchrow(
                f"SELECT {LICENSE_COLUMNS} FROM licenses l WHERE l.key = $1", key
            )
        return None if row is None else license_from_row(row)

    async def load_releases(self) -> dict[str, tuple[Release, ...]]:
        rows = await self.pool.fetch(
            "SELECT product, major, minor, build, released_on FROM releases "
            "ORDER BY product, major, minor, build"
        )
        catalog: dict[str, list[Release]] = {}
        for row in rows:
            version = Version(row["major"], row["minor"], row["build"])
            catalog.setdefault(row["product"], []).append(
                Release(row["product"], version, row["released_on"])
            )
        return {product: tuple(releases) for product, releases in catalog.items()}


class ReleaseCatalog:
    """Releases per product, held in each process and refreshed from PostgreSQL.

    Releases change a few times a month, so every process re-reads them every
    `interval` seconds (and at once after a release is published through this process),
    instead of paying a lookup per activation. A release published through another process is
    seen within `interval` seconds.
    """

    def __init__(self, registry: LicenseRegistry, interval: float = 2.0) -> None:
        self._registry = registry
        self._interval = interval
        self._by_product: dict[str, tuple[Release, ...]] = {}
        self.generation = 0  # changes whenever the catalog does (decision memos key on it)

    def for_product(self, product: str) -> Sequence[Release]:
        return self._by_product.get(product, ())

    async def refresh(self) -> None:
        fresh = await self._registry.load_releases()
        if fresh != self._by_product:
            self._by_product = fresh
            self.generation += 1

    async def keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("release catalog refresh failed, keeping the last one: %s", error)

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        await self.refresh()
        task = asyncio.create_task(self.keep_fresh())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
