"""The one clock every process reads time from.

- `SystemClock`: wall-clock UTC; the default and the only clock in production.
- `RedisTestClock` (SPEC §6, `TEST_CLOCK=1` only): an offset from wall-clock time kept in
  Redis so the API processes, the worker and the console of one deployment agree. It costs one
  extra Redis read per request, which is why it is never on by default. Its key has no hash
  tag (one key, on whichever master serves its slot in a cluster); when Redis cannot answer it
  raises `StoreUnavailable`, like the store, so a request is answered 503 and not 500.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from redis.asyncio import Redis

from activation.store.redis_store import REDIS_OUTAGES, StoreUnavailable


class Clock(Protocol):
    async def now(self) -> datetime: ...


class SystemClock:
    async def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told; for tests of code that takes a Clock."""

    def __init__(self, current: datetime) -> None:
        self.current = current

    async def now(self) -> datetime:
        return self.current


class RedisTestClock:
    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key

    async def offset(self) -> timedelta:
        try:
            raw = await self._redis.get(self._key)
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error
        return timedelta(microseconds=int(raw)) if raw else timedelta(0)

    async def now(self) -> datetime:
        return datetime.now(UTC) + await self.offset()

    async def advance(self, seconds: float) -> datetime:
        micros = round(seconds * 1_000_000)
        try:
            await self._redis.incrby(self._key, micros)
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error
        return await self.now()

    async def set(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime.now(UTC)
        try:
            await self._redis.set(self._key, round(delta / timedelta(microseconds=1)))
        except REDIS_OUTAGES as error:
            raise StoreUnavailable(str(error)) from error
        return await self.now()
