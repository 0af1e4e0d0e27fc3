"""The composition root of the server process: settings in, connected collaborators out.

`open_resources(settings)` is used by both HTTP apps of one process (public and admin) and by
the tests; pools are opened once and closed on exit. `public_api(resources)` is the public API
over them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from activation.api.keyring import KeyRing, load_keyring
from activation.api.signing import Signer, load_signer
from activation.clock import Clock, RedisTestClock, SystemClock
from activation.config import Settings
from activation.store.keys import KeyLayout
from activation.store.lean_redis import LeanScriptClient
from activation.store.redis_store import ACTIVATE_SCRIPT, ActivationStore, Limits
from activation.store.registry import LicenseRegistry, ReleaseCatalog
from metrics import ApiMetrics

if TYPE_CHECKING:
    from activation.api.app import PublicApi


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    layout: KeyLayout
    registry: LicenseRegistry
    releases: ReleaseCatalog
    store: ActivationStore
    clock: Clock
    signer: Signer | None
    metrics: ApiMetrics
    keyring: KeyRing | None = None  # the published signing keys, when signing
    # The admin API's own Redis client and a store over it (see `for_admin`); None on views
    # that already are the admin's.
    admin_redis: Redis | None = None
    admin_store: ActivationStore | None = None

    def for_admin(self) -> Resources:
        """These collaborators over the admin's own Redis client: the admin API, the console and
        review work (a 1000-row page, a bulk import) never take a connection from the pool the
        activation path and its clock read through, so they cannot starve it."""
        redis, store = self.admin_redis, self.admin_store
        if redis is None or store is None:
            return self
        clock = RedisTestClock(redis, self.layout.clock) if self.settings.test_clock else self.clock
        return dataclasses.replace(
            self, redis=redis, store=store, clock=clock, admin_redis=None, admin_store=None
        )


def public_api(resources: Resources) -> PublicApi:
    """The public API over `resources` (opened with `signing=True`)."""
    from activation.api.app import PublicApi  # the worker, which answers no activations, skips it

    if resources.signer is None or resources.keyring is None:
        raise RuntimeError("the public API needs a signing key")
    return PublicApi(
        resources.settings,
        store=resources.store,
        signer=resources.signer,
        keyring=resources.keyring,
        clock=resources.clock,
        metrics=resources.metrics,
        releases=resources.releases,
        pool=resources.pool,
    )


def connect_redis(url: str) -> Redis:
    """`redis+cluster://host:port` selects Redis Cluster; anything else is a plain URL.

    On a cluster redis-py's cluster client serves everything, the activation script included
    (store/redis_store.py); `max_connections` is per node there, and a node whose pool is
    exhausted fails the command at once (MaxConnectionsError, a 503) instead of waiting, so it
    gets the single-node pool size and not redis-py's default of 100."""
    if url.startswith("redis+cluster://"):
        cluster = RedisCluster.from_url(
            "redis://" + url.removeprefix("redis+cluster://"),
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            max_connections=256,
        )
        return cluster  # type: ignore[return-value]
    return Redis.from_url(
        url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        max_connections=256,
        health_check_interval=0,
    )


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings, *, metrics: ApiMetrics | None = None, signing: bool = True
) -> AsyncIterator[Resources]:
    """`signing=False` is for processes that answer no activations (the fraud worker)."""
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set (activation-dev sets them)")
    # Every operation on a pooled connection gives up after DATABASE_TIMEOUT_SECONDS (asyncpg
    # cancels the query; the TimeoutError is a 503 with Retry-After): a stalled database (a
    # migration's table lock, a partition) fails requests instead of holding them for as long
    # as it lasts. The hot path's cache miss has its own, shorter bound (store/registry.py).
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=10,
        command_timeout=settings.database_timeout_seconds,
    )
    redis = connect_redis(settings.redis_url)
    admin_redis = connect_redis(settings.redis_url)
    hot_client: LeanScriptClient | None = None
    try:
        layout = KeyLayout(settings.redis_prefix, settings.stream_shards, settings.redis_cluster)
        registry = LicenseRegistry(pool)
        limits = Limits(
            ip_per_minute=settings.rate_limits.ip_per_minute,
            key_per_minute=settings.rate_limits.key_per_minute,
            unknown_per_minute=settings.rate_limits.not_found_per_minute,
            active_window_seconds=settings.active_window_days * 86_400,
            negative_ttl_seconds=settings.negative_cache_seconds,
        )
        if not settings.redis_cluster:
            hot_client = LeanScriptClient(settings.redis_url, ACTIVATE_SCRIPT)
        metrics = metrics or ApiMetrics()
        store = ActivationStore(
            redis, layout, limits, registry.load_license, hot_client, cache_counters=metrics
        )
        clock: Clock = RedisTestClock(redis, layout.clock) if settings.test_clock else SystemClock()
        releases = ReleaseCatalog(registry)
        signer = load_signer(settings.signing_key_file, generate=settings.dev) if signing else None
        keyring = (
            None if signer is None else load_keyring(signer.public_key, settings.signing_keys_dir)
        )
        async with releases.running():
            yield Resources(
                settings=settings,
                pool=pool,
                redis=redis,
                layout=layout,
                registry=registry,
                releases=releases,
                store=store,
                clock=clock,
                signer=signer,
                metrics=metrics,
                keyring=keyring,
                admin_redis=admin_redis,
                admin_store=ActivationStore(admin_redis, layout, limits, registry.load_license),
            )
    finally:
        if hot_client is not None:
            await hot_client.aclose()
        await admin_redis.aclose()
        await redis.aclose()
        await pool.close()
