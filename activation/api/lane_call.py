"""One fast-lane activation waiting for its script's reply, without a task or a future.

Why: awaiting the reply costs a task per request (created, registered, stepped twice), a
future, and five coroutine frames suspended and resumed: ≈ 4-6 µs of an activation's CPU on
the benchmark machine, the same order as the decision itself. `PublicApi.lane_start` sends
the script call with a `LaneCall` as the reply's waiter (`ActivationStore.send_nowait`); the
Redis connection hands it the reply the moment it is parsed, and the answer is written from
there. Everything that must wait on something else goes on in a task, as before: a license
not cached (PostgreSQL, then a second script call), and Redis having lost the script
(NOSCRIPT: the script did not run, so the whole call is made again, reloading it).

The rules of a reply waiter (activation/store/lean_redis.py): it is called exactly once, from
the connection's `data_received` or `connection_lost`, and must not raise: every error here
becomes the answer `PublicApi.lane_failure` gives, as the awaiting path would.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import hiredis

from activation.api.parsing import ActivationBody
from activation.store.lean_redis import is_noscript
from activation.store.redis_store import ActivationRequest, ScriptOutcome

if TYPE_CHECKING:
    from activation.api.app import PublicApi


class LaneCall:
    __slots__ = ("_api", "_body", "_deliver", "_now", "_request", "_started", "_store_started")

    def __init__(
        self,
        api: PublicApi,
        deliver: Callable[[bytes], None],
        body: ActivationBody,
        request: ActivationRequest,
        now: datetime,
        started: float,
    ) -> None:
        self._api = api
        self._deliver = deliver
        self._body = body
        self._request = request
        self._now = now
        self._started = started
        self._store_started = time.perf_counter()

    def done(self) -> bool:
        return False

    def set_result(self, reply: Any) -> None:
        api = self._api
        try:
            if isinstance(reply, hiredis.ReplyError):
                if is_noscript(reply):
                    api.later(self.finish(api.store.activate(self._request, self._now)))
                    return
                raise api.store.failure(reply)
            outcome = api.store.settle(reply)
            if outcome is None:  # not cached: load it, then the second call
                stamp = self._now.timestamp()
                api.later(self.finish(api.store.fill("a", stamp, self._request)))
                return
            answer = api.lane_success(self._conclude(outcome))
        except Exception as error:
            answer = api.lane_failure(error)
        self._deliver(answer)

    def set_exception(self, exception: BaseException) -> None:
        failure = self._api.store.failure(exception)
        if not isinstance(failure, Exception):  # not raised by a connection, but be total
            failure = RuntimeError(str(failure))
        self._deliver(self._api.lane_failure(failure))

    async def finish(self, outcome: Awaitable[ScriptOutcome]) -> None:
        """The answer once `outcome` is known: the paths that wait on something else."""
        api = self._api
        try:
            answer = api.lane_success(self._conclude(await outcome))
        except Exception as error:
            answer = api.lane_failure(error)
        self._deliver(answer)

    def _conclude(self, outcome: ScriptOutcome) -> bytes:
        return self._api.conclude(
            self._body, outcome, self._now, self._started, self._store_started
        )
