"""The Redis adapter of the hot path: one script call per activation (see activate.lua).

On a single Redis the script runs over the lean connection (lean_redis.py); on Redis Cluster
through redis-py's cluster client, which routes it by its keys' hash slot (every key of a
call shares one, store/keys.py) and follows MOVED/ASK redirects. redis-py serves every other
command on both.

Fail-closed: when Redis cannot be reached the caller gets `StoreUnavailable` and answers 503
with Retry-After (SPEC §5); nothing is acknowledged that was not written to the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NamedTuple, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from activation.licensing.model import CaseStage, InstallationState, License
from activation.store.keys import KeyLayout
from activation.store.lean_redis import LeanScriptClient
from activation.store.refusals import is_refusal

LicenseLoader = Callable[[str], Awaitable[License | None]]

ACTIVATE_SCRIPT = (resources.files("activation.store") / "activate.lua").read_text()


class _Incrementable(Protocol):
    def inc(self) -> None: ...


class CacheCounters(Protocol):
    """Where the store counts license cache hits and misses (ApiMetrics has both)."""

    @property
    def cache_hits(self) -> _Incrementable: ...

    @property
    def cache_misses(self) -> _Incrementable: ...


class StoreUnavailable(Exception):
    """Redis did not answer; the request must not be acknowledged."""


# What "Redis is unavailable" looks like, single node or cluster. Beyond lost connections and
# timeouts a cluster reports CLUSTERDOWN/MASTERDOWN (and giving up redirecting mid-resharding)
# as ClusterError, and a slot no reachable master serves, or no node left to load the slot map
# from, as RedisClusterException, which is not even a RedisError. All are 503, never a 500.
# (Its other subclasses are cross-slot pipelines/transactions: every command here touches one
# slot by construction, which tests/integration/test_redis_cluster.py checks.)
REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
    OSError,
)
_PING_FAILURES: tuple[type[BaseException], ...] = (*REDIS_OUTAGES, redis_errors.RedisError)


class ActivationRequest(NamedTuple):
    license_key: str
    fingerprint: str
    hostname: str
    version: str
    ip: str
    event_id: str


@dataclass(frozen=True, slots=True)
class RateLimited:
    retry_after: int
    limited_by: str


@dataclass(frozen=True, slots=True)
class UnknownKey:
    pass


class Recorded(NamedTuple):
    doc: bytes  # the cached license document, exactly as Redis returned it
    installations: InstallationState
    seen_recently: int

    @property
    def license(self) -> License:
        """Parsed on demand: a steady-state answer needs only `doc` (api/answers.py), and a
        cache of parsed licenses would keep the garbage collector busy under churn."""
        return License.from_json(self.doc)

    @property
    def servers_active(self) -> int:
        return self.installations.servers_active

    @property
    def servers_allowed(self) -> int:
        return self.installations.servers_allowed


ScriptOutcome = RateLimited | UnknownKey | Recorded

UNKNOWN = UnknownKey()

CLUSTER_RETRY_SECONDS = 0.5
CLUSTER_RETRY_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class Limits:
    ip_per_minute: int
    key_per_minute: int
    unknown_per_minute: int
    active_window_seconds: int
    leak_window_seconds: int = 86_400
    negative_ttl_seconds: int = 60


class ActivationStore:
    def __init__(
        self,
        redis: Redis,
        layout: KeyLayout,
        limits: Limits,
        loader: LicenseLoader,
        hot_client: LeanScriptClient | None = None,
        cache_counters: CacheCounters | None = None,
    ) -> None:
        """`hot_client` runs the activation script on a single Redis; without it (Redis
        Cluster) redis-py runs it. redis-py serves every other command."""
        self._redis = redis
        self._layout = layout
        self._limits = limits
        self._loader = loader
        self._script = redis.register_script(ACTIVATE_SCRIPT)
        self._cache_counters = cache_counters
        self._hot = hot_client

    @property
    def hot_client(self) -> LeanScriptClient | None:
        return self._hot

    def activate(self, request: ActivationRequest, now: datetime) -> Awaitable[ScriptOutcome]:
        return self._run("a", request, now)

    def deactivate(self, request: ActivationRequest, now: datetime) -> Awaitable[ScriptOutcome]:
        return self._run("d", request, now)

    async def _run(self, op: str, request: ActivationRequest, now: datetime) -> ScriptOutcome:
        stamp = now.timestamp()
        reply = await self._call(*self.script_call(op, stamp, request))
        tag = reply[0]
        if tag == b"MISS":  # not cached: load it, then the second call
            if self._cache_counters is not None:
                self._cache_counters.cache_misses.inc()
            return await self.fill(op, stamp, request)
        if self._cache_counters is not None and tag in (b"OK", b"NF"):
            self._cache_counters.cache_hits.inc()
        return self._outcome(reply)

    async def fill(self, op: str, stamp: float, request: ActivationRequest) -> ScriptOutcome:
        """The second call of a request whose license was not cached: the license from
        PostgreSQL (or "unknown") goes into Redis with the activation."""
        license = await self._loader(request.license_key)
        script_keys, args = self.script_call(op, stamp, request)
        if license is None:
            args[13] = "-"
        else:
            args[13], args[14], args[15] = _cache_fields(license)
        return self._outcome(await self._call(script_keys, args))

    def script_call(
        self, op: str, stamp: float, request: ActivationRequest
    ) -> tuple[list[str], list[Any]]:
        """The activation script's KEYS and ARGV (activate.lua); ARGV 14-16 are the fill."""
        minute, second = divmod(int(stamp), 60)
        keys = self._layout.for_license(request.license_key, minute)
        ip_counter, unknown_counter = self._layout.client_counters(keys.tag, request.ip, minute)
        script_keys = [
            keys.license,
            keys.installations,
            keys.details,
            keys.stream,
            ip_counter,
            keys.key_counter,
            unknown_counter,
        ]
        limits = self._limits
        args: list[Any] = [
            op,
            repr(stamp),
            request.fingerprint,
            request.hostname,
            request.version,
            request.ip,
            request.event_id,
            limits.active_window_seconds,
            limits.leak_window_seconds,
            limits.ip_per_minute,
            limits.key_per_minute,
            limits.unknown_per_minute,
            60 - second,
            "",
            "",
            "",
            limits.negative_ttl_seconds,
            request.license_key,
        ]
        return script_keys, args

    async def _call(self, keys: list[str], args: list[Any]) -> list[Any]:
        try:
            if self._hot is not None:
                reply: list[Any] = await self._hot.evalsha(keys, args)
            else:
                reply = await self._cluster_call(keys, args)
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error
        except redis_errors.ResponseError as error:  # redis-py on a cluster
            if is_refusal(error):
                raise StoreUnavailable(str(error)) from error
            raise
        return reply

    async def _cluster_call(self, keys: list[str], args: list[Any]) -> list[Any]:
        """The script through redis-py's cluster client. It follows MOVED and ASK, and
        TRYAGAIN (the script's keys split between two masters while a slot moves) for a few
        round trips only, about 0.2 s, then raises ClusterError, as it does for CLUSTERDOWN:
        neither ran the script, so it is called again every CLUSTER_RETRY_INTERVAL seconds for
        up to CLUSTER_RETRY_SECONDS more. A quick slot move costs a wait, not a 503; a longer
        one, or a cluster that stays down, is a 503 with Retry-After."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLUSTER_RETRY_SECONDS
        while True:
            try:
                reply: list[Any] = await self._script(keys=keys, args=args)
                return reply
            except (redis_errors.ClusterError, redis_errors.TryAgainError):
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(CLUSTER_RETRY_INTERVAL)

    def _outcome(self, reply: list[Any]) -> ScriptOutcome:
        tag = reply[0]
        if tag == b"NF":
            return UNKNOWN
        if tag == b"RL":
            return RateLimited(int(reply[1]), reply[2].decode())
        return Recorded(
            reply[1],
            InstallationState(  # positional: cheaper than by keyword, once per activation
                int(reply[2]),
                int(reply[3]),
                _moment(reply[4]),
                CaseStage(reply[5].decode()) if reply[5] else None,
                _moment(reply[6]),
                _moment(reply[7]),
            ),
            int(reply[8]),
        )

    async def put_license(self, license: License) -> None:
        """Write-through after every admin write (PostgreSQL first, then here)."""
        keys = self._layout.for_license(license.key, 0)
        doc, status, allowed = _cache_fields(license)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.license, "missing")
                pipe.persist(keys.license)
                pipe.hset(keys.license, mapping={"doc": doc, "status": status, "allowed": allowed})
                await pipe.execute()
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error

    async def forget_license(self, license_key: str) -> None:
        """Drop the cached document (the next activation reloads it from PostgreSQL)."""
        keys = self._layout.for_license(license_key, 0)
        try:
            await self._redis.hdel(keys.license, "doc", "missing")
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error

    async def installations(self, license_key: str) -> list[dict[str, Any]]:
        """The servers Redis counts for a key right now, newest first."""
        return (await self.installations_of([license_key]))[0]

    async def installations_of(self, license_keys: Sequence[str]) -> list[list[dict[str, Any]]]:
        """`installations` of each key, all read in one pipelined round trip on one connection:
        a page of the review queue must not take a pooled connection per row."""
        if not license_keys:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for license_key in license_keys:
                    keys = self._layout.for_license(license_key, 0)
                    pipe.zrange(keys.installations, 0, -1, withscores=True)
                    pipe.hgetall(keys.details)
                replies = await pipe.execute()
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error
        return [
            _servers(seen, details)
            for seen, details in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def ping(self) -> bool:
        """Readiness. On a cluster PING reaches one node only, and a cluster that lost a master
        (no replica to fail over to) refuses every key with CLUSTERDOWN while the others still
        answer PING: there every master must answer and report `cluster_state:ok`."""
        try:
            if isinstance(self._redis, RedisCluster):
                return await _cluster_ok(self._redis)
            return bool(await self._redis.ping())
        except _PING_FAILURES:
            return False


async def _cluster_ok(cluster: RedisCluster) -> bool:
    states: Any = await cluster.cluster_info(target_nodes=RedisCluster.PRIMARIES)
    if "cluster_state" in states:  # one master: redis-py returns its answer unwrapped
        states = {"": states}
    return bool(states) and all(info.get("cluster_state") == "ok" for info in states.values())


def _cache_fields(license: License) -> tuple[bytes, str, int]:
    return license.to_json(), license.status.value, license.max_servers


def _moment(raw: bytes) -> datetime | None:
    return datetime.fromtimestamp(float(raw), UTC) if raw else None


def _servers(seen: list[tuple[bytes, float]], details: dict[bytes, bytes]) -> list[dict[str, Any]]:
    rows = []
    for fingerprint, last_seen in sorted(seen, key=lambda pair: -pair[1]):
        first, hostname, version, ip = details.get(fingerprint, b"\t\t\t").decode().split("\t")
        rows.append(
            {
                "fingerprint": fingerprint.decode(),
                "hostname": hostname,
                "version": version,
                "ip": ip,
                "first_seen_at": _iso(float(first)) if first else None,
                "last_seen_at": _iso(last_seen),
            }
        )
    return rows


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "REDIS_OUTAGES",
    "UNKNOWN",
    "ActivationRequest",
    "ActivationStore",
    "Limits",
    "RateLimited",
    "Recorded",
    "ScriptOutcome",
    "StoreUnavailable",
    "UnknownKey",
]
