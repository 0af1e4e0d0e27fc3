"""Throttling of failed authentication, per client address: admin bearer tokens and console
logins share one count, so guessing gets no more tries by switching between them.

- A wrong or revoked token counts one failure for the client address (`client_address.py`:
  the same TRUSTED_PROXIES rule as the public API's limits; IPv6 per /64). A request with no
  token at all is not a guess and is not counted.
- After FAILURES_ALLOWED failures, that address is refused (429 with Retry-After) before its
  token is even looked at, the right token included, until BLOCK_SECONDS have passed since its
  last failure. So a guesser gets 10 tries per 15 minutes; a script with a stale token sees
  429 with the time to wait, not an endless stream of 401s.
- The count lives in Redis (`{prefix}:auth-failures:{address}`), so it holds across API
  processes and restarts of one. Redis unreachable fails closed: 503 with Retry-After (an
  outage is no window for guessing), as the console's sessions do.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from activation.client_address import limit_key
from activation.store.redis_store import StoreUnavailable

FAILURES_ALLOWED = 10
BLOCK_SECONDS = 900


class AuthFailures:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, address: str) -> str:
        return f"{self._prefix}:auth-failures:{limit_key(address)}"

    async def blocked_for(self, address: str) -> int:
        """Seconds `address` must wait before it may try a token again; 0 when it may now."""
        key = self._key(address)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                failures, ttl = await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        if int(failures or 0) < FAILURES_ALLOWED:
            return 0
        return max(int(ttl), 1)

    async def count(self, address: str) -> None:
        """One more failed attempt from `address`."""
        key = self._key(address)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, BLOCK_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
