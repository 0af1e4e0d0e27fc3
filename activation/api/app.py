"""The public activation API (SPEC §5): parse → one Redis script → pure decision → signed JSON.

Served by aiohttp's low-level server (`web.Server`) with a dict of its seven fixed paths
instead of a `web.Application`: no router, no application lookups, and no
`asyncio.get_event_loop()` per request (on Python 3.11 that is a `getpid()` system call).
Measured: ≈ 10 % more activations per second than the same handlers on an Application
(README, Benchmark). The admin API and the console stay Applications: they are not hot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from activation.api.answers import Answerer
from activation.api.expect import expect_continue
from activation.api.fastlane import FastLaneServer
from activation.api.lane_call import LaneCall
from activation.api.nonces import NonceSource
from activation.api.openapi import openapi_handler
from activation.api.parsing import (
    ActivationBody,
    json_object,
    parse_activation,
    parse_deactivation,
    read_json_object,
)
from activation.api.problems import (
    RETRY_AFTER_SECONDS,
    ProblemError,
    failure_answer,
    problem_answer,
)
from activation.api.signing import Signer
from activation.api.signing_load import SigningLoad
from activation.api.wire import KEEP_ALIVE_200, SignedJson, response_bytes, signed_json_bytes
from activation.client_address import client_address, request_client
from activation.clock import SystemClock
from activation.runtime import Resources
from activation.store.redis_store import ActivationRequest, RateLimited, Recorded, ScriptOutcome
from metrics import exposition

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class EventIds:
    """Unique event ids without a system call per request: a random 64-bit prefix drawn once
    per process start, then a counter (PostgreSQL's unique event_id relies on them)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


class PublicApi:
    """The public API of one process: `handle` answers every request of the public port."""

    def __init__(self, resources: Resources) -> None:
        if resources.signer is None:
            raise RuntimeError("the public API needs a signing key")
        settings = resources.settings
        self.resources = resources
        self.signer: Signer = resources.signer
        self.store = resources.store
        self._clock = resources.clock
        self._metrics = resources.metrics
        self._releases = resources.releases
        self._event_ids = EventIds()
        self._trusted_proxies = settings.trusted_proxies
        # The lane's calls go on from the script's reply only on the system clock: the test
        # clock (SPEC §6) is a Redis read of its own.
        clock = resources.clock
        self._system_clock = clock if isinstance(clock, SystemClock) else None
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self.lane_awaited = 0  # lane answers that waited in a task (tests tell the paths apart)
        self._answerer = Answerer(settings.grace, timedelta(days=settings.answer_valid_days))
        routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/activations"): self.activate,
            ("POST", "/v1/deactivations"): self.deactivate,
            ("GET", "/v1/signing-key"): self.signing_key,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): self.metrics,
            ("GET", "/openapi.json"): openapi_handler,
        }
        routes |= {("HEAD", path): get for (method, path), get in routes.items() if method == "GET"}
        self._routes = routes
        allowed: dict[str, set[str]] = {}
        for method, path in routes:
            allowed.setdefault(path, set()).add(method)
        self._allowed = {path: sorted(methods) for path, methods in allowed.items()}

    def server(self) -> FastLaneServer:
        return FastLaneServer(self.handle, self.lane_start, access_log=None)

    @contextlib.asynccontextmanager
    async def signing_nonces(self, *, adaptive: bool = True) -> AsyncIterator[NonceSource | None]:
        """Precomputed signing nonces while the API serves (activation/api/nonces.py), when
        SIGNING_NONCE_HELPER is on, taken only while the process is busy
        (activation/api/signing_load.py; `adaptive=False`: always, as tests need)."""
        async with contextlib.AsyncExitStack() as stack:
            source = None
            if self.resources.settings.signing_nonce_helper:
                source = await stack.enter_async_context(self.signer.precomputed_nonces())
            if adaptive:
                load = SigningLoad(self.signer)
                stack.enter_context(load.running(asyncio.get_running_loop()))
            yield source

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every answer is problem JSON on error and 503 with Retry-After on an outage
        (problems.py), and is counted by status class (api_responses_total)."""
        handler = self._routes.get((request.method, request.path), self.unrouted)
        if "Expect" in request.headers:  # what an Application's router does for every route
            handler = _after_continue(handler)
        try:
            try:
                response = await handler(request)
            except Exception as error:
                response = problem_answer(request, error, self._count_outage)
        except web.HTTPException as error:  # redirects and the like pass through
            self._metrics.count_response(error.status)
            raise
        self._metrics.count_response(response.status)
        return response

    async def unrouted(self, request: web.BaseRequest) -> web.StreamResponse:
        """405 with Allow on a known path, else 404."""
        allowed = self._allowed.get(request.path)
        if allowed is not None:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    def _count_outage(self, request: web.BaseRequest, dependency: str) -> None:
        self._count_unavailable(dependency)

    def _count_unavailable(self, dependency: str) -> None:
        self._metrics.dependency_errors.labels(dependency).inc()

    async def activate(self, request: web.BaseRequest) -> web.StreamResponse:
        client = request_client(request, self._trusted_proxies)
        return self._signed(await self._activation(await read_json_object(request), client))

    def lane_start(self, body: bytes, ip: str, deliver: Callable[[bytes], None]) -> None:
        """Answer an activation the fast lane took (api/fastlane.py): `deliver` gets the whole
        HTTP answer, exactly once, now or later. The same work as `activate`, errors mapped as
        `handle` maps them. With the system clock and the single-node lean client the script
        call is sent at once and its reply goes on in a `LaneCall` (api/lane_call.py): no task,
        future or coroutine per activation; otherwise a task awaits the whole activation."""
        ip = client_address(ip, (), self._trusted_proxies)  # the lane takes no X-Forwarded-For
        clock = self._system_clock
        if clock is None:
            self.later(self._lane_awaited(body, ip, deliver))
            return
        started = time.perf_counter()
        try:
            parsed, request = self._request(json_object(body), ip)
            now = clock.current()
            call = LaneCall(self, deliver, parsed, request, now, started)
            if self.store.send_nowait("a", now.timestamp(), request, call):
                return
        except Exception as error:
            deliver(self.lane_failure(error))
            return
        self.later(call.finish(self.store.activate(request, now)))

    async def _lane_awaited(self, body: bytes, ip: str, deliver: Callable[[bytes], None]) -> None:
        """`lane_start` on a clock that must be awaited: the whole activation in this task."""
        try:
            answer = self.lane_success(await self._activation(json_object(body), ip))
        except Exception as error:
            answer = self.lane_failure(error)
        deliver(answer)

    def lane_success(self, answer: bytes) -> bytes:
        """The whole HTTP answer of the signed answer body `answer`."""
        self._metrics.count_response(200)
        return signed_json_bytes(KEEP_ALIVE_200, self.signer.header(answer).encode(), answer)

    def lane_failure(self, error: Exception) -> bytes:
        """The whole HTTP answer to an activation that failed with `error`."""
        problem = failure_answer(error, "POST /v1/activations", self._count_unavailable)
        self._metrics.count_response(problem.status)
        return response_bytes(problem)

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task referenced until it ends (the loop holds tasks weakly)."""
        self.lane_awaited += 1
        task = asyncio.get_running_loop().create_task(work)
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _activation(self, data: dict[str, Any], ip: str) -> bytes:
        """The signed body of the answer to the activation `data` from `ip`."""
        started = time.perf_counter()
        body, request = self._request(data, ip)
        now = await self._clock.now()
        store_started = time.perf_counter()
        outcome = await self.store.activate(request, now)
        return self.conclude(body, outcome, now, started, store_started)

    def _request(self, data: dict[str, Any], ip: str) -> tuple[ActivationBody, ActivationRequest]:
        body = parse_activation(data)
        request = ActivationRequest(
            license_key=body.license_key,
            fingerprint=body.fingerprint,
            hostname=body.hostname,
            version=body.version_text,
            ip=ip,
            event_id=self._event_ids.next(),
        )
        return body, request

    def conclude(
        self,
        body: ActivationBody,
        outcome: ScriptOutcome,
        now: datetime,
        started: float,
        store_started: float,
    ) -> bytes:
        """The signed body of the answer, from the store's `outcome` (raises ProblemError when
        rate limited); `started` and `store_started` time the request and the store call."""
        metrics = self._metrics
        metrics.script_latency.observe(time.perf_counter() - store_started)
        if isinstance(outcome, RateLimited):
            raise self._rate_limited(outcome)
        recorded = outcome if isinstance(outcome, Recorded) else None
        releases = (self._releases.generation, self._releases.for_product(body.product))
        code, answer = self._answerer.answer(body, recorded, releases, now)
        metrics.activations_by_code[code].inc()
        metrics.activation_latency.observe(time.perf_counter() - started)
        return answer

    async def deactivate(self, request: web.BaseRequest) -> web.StreamResponse:
        body = parse_deactivation(await read_json_object(request))
        now = await self._clock.now()
        outcome = await self.store.deactivate(
            ActivationRequest(
                license_key=body.license_key,
                fingerprint=body.fingerprint,
                hostname="",
                version="",
                ip=request_client(request, self._trusted_proxies),
                event_id=self._event_ids.next(),
            ),
            now,
        )
        if isinstance(outcome, RateLimited):
            raise self._rate_limited(outcome)
        if not isinstance(outcome, Recorded):
            raise ProblemError(404, "no license has this key", field="license_key")
        payload = {
            "deactivated": True,
            "license_key": body.license_key,
            "fingerprint": body.fingerprint,
            "servers_active": outcome.servers_active,
            "servers_allowed": outcome.servers_allowed,
            "issued_at": _iso(now),
        }
        return self._signed(orjson.dumps(payload))

    def _rate_limited(self, outcome: RateLimited) -> ProblemError:
        self._metrics.rate_limited.labels(outcome.limited_by).inc()
        error = ProblemError(
            429,
            f"too many requests ({outcome.limited_by} limit); retry later",
            limit=outcome.limited_by,
        )
        error.headers = {"Retry-After": str(outcome.retry_after)}
        return error

    def _signed(self, body: bytes) -> SignedJson:
        return SignedJson(body, self.signer.header(body))

    async def signing_key(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response(self.signer.public_document)

    async def healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.BaseRequest) -> web.StreamResponse:
        redis_ok = await self.store.ping()
        try:
            await self.resources.pool.fetchval("SELECT 1")
            postgres_ok = True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            postgres_ok = False
        status = 200 if redis_ok and postgres_ok else 503
        return web.json_response(
            {"redis": redis_ok, "postgresql": postgres_ok},
            status=status,
            headers=None if status == 200 else {"Retry-After": RETRY_AFTER_SECONDS},
        )

    async def metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        output = exposition(self._metrics.registry)
        return web.Response(body=output, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _after_continue(handler: Handler) -> Handler:
    """`handler` behind the `Expect` handling every app's routes get (api/expect.py)."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        await expect_continue(request)
        return await handler(request)

    return answer


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
