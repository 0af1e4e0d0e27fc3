"""The public activation API (SPEC §5): parse → one Redis script → pure decision → signed JSON.

Served by aiohttp's low-level server (`web.Server`) with a dict of its seven fixed paths
instead of a `web.Application`: no router and no application lookups per request. The admin
API and the console stay Applications: they are not hot.

Load a process cannot serve is refused early and cheaply:

- a request head must arrive within REQUEST_HEAD_TIMEOUT_SECONDS of its first byte, and an
  idle keep-alive connection closes after `Settings.keepalive_timeout_seconds` (aiohttp's
  `keepalive_timeout`, 75 s), see web/wire.py;
- at most MAX_INFLIGHT activations are answered at once (SPEC §10), and an activation whose
  request waited in the process longer than MAX_QUEUE_DELAY_MS before its turn came (from
  when its connection last received bytes, web/wire.py, to when its handler starts) is not
  answered late: either is answered 503 with a Retry-After drawn uniformly from 1-5 s (a
  fleet told to come back does not come back in step) before its body is read, and counted
  in `activations_shed_total` by reason (`inflight`, `queued`). An in-flight count alone does
  not bound latency: under overload requests wait in the event loop's queue, not in
  handlers, and an answer that took longer than its client waits is work thrown away.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from activation.api.answers import Answerer
from activation.api.keyring import KeyRing
from activation.api.openapi import openapi_handler
from activation.api.parsing import (
    ActivationBody,
    parse_activation,
    parse_deactivation,
    read_json_object,
)
from activation.api.signing import Signer
from activation.client_address import request_client
from activation.clock import Clock
from activation.config import Settings
from activation.store.redis_store import ActivationRequest, ActivationStore, RateLimited, Recorded
from activation.store.registry import ReleaseCatalog
from activation.web.expect import expect_continue
from activation.web.problems import (
    PROBLEM_TYPE,
    ProblemError,
    problem_answer,
    problem_body,
    retry_after,
)
from activation.web.wire import ProblemRequestHandler, ProblemServer
from metrics import ApiMetrics, exposition
from metrics.tally import Tally

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

SHED_INFLIGHT = problem_body(503, "the server is at its limit of activations in progress")
SHED_QUEUED = problem_body(503, "the server is at its limit of requests waiting")


class EventIds:
    """Unique event ids without a system call per request: a random 64-bit prefix drawn once
    per process start, then a counter (PostgreSQL's unique event_id relies on them)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


class PublicApi:
    """The public API of one process: `handle` answers every request of the public port.
    `keyring` is what `/v1/signing-keys` publishes; `pool` is asked only by `/readyz`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: ActivationStore,
        signer: Signer,
        keyring: KeyRing,
        clock: Clock,
        metrics: ApiMetrics,
        releases: ReleaseCatalog,
        pool: asyncpg.Pool,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.store = store
        self._keyring = keyring
        self._clock = clock
        self._metrics = metrics
        self._releases = releases
        self._pool = pool
        self._event_ids = EventIds()
        self._max_inflight = settings.max_inflight
        # inf when switched off (0): no request waits longer than that
        self._max_queue_delay = settings.max_queue_delay_ms / 1000 or float("inf")
        self.inflight = 0  # activations being answered now
        self._trusted_proxies = settings.trusted_proxies
        self._answerer = Answerer(settings.grace, timedelta(days=settings.answer_valid_days))
        routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/activations"): self.activate,
            ("POST", "/v1/deactivations"): self.deactivate,
            ("GET", "/v1/signing-key"): self.signing_key,
            ("GET", "/v1/signing-keys"): self.signing_keys,
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

    def server(self) -> ProblemServer:
        """The public port's `web.Server`."""
        settings = self.settings
        return ProblemServer(
            self.handle,
            access_log=None,
            keepalive_timeout=settings.keepalive_timeout_seconds,
            head_timeout=settings.request_head_timeout_seconds,
        )

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every answer is problem JSON on error and 503 with Retry-After on an outage
        (web/problems.py), and is counted by status class (api_responses_total)."""
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
        self._metrics.dependency_errors.labels(dependency).inc()

    async def activate(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.inflight >= self._max_inflight:
            return self._shed(self._metrics.shed_inflight, SHED_INFLIGHT)
        connection = request.protocol
        if (
            isinstance(connection, ProblemRequestHandler)
            and time.monotonic() - connection.received_at > self._max_queue_delay
        ):
            return self._shed(self._metrics.shed_queued, SHED_QUEUED)
        self.inflight += 1
        try:
            data = await read_json_object(request)
            client = request_client(request, self._trusted_proxies)
            return self._signed(await self._activation(data, client))
        finally:
            self.inflight -= 1

    @staticmethod
    def _shed(counter: Tally, body: bytes) -> web.Response:
        """A shed activation's 503: its problem JSON made once, no exception raised (under
        overload most answers are these)."""
        counter.inc()
        headers = {"Retry-After": retry_after()}
        return web.Response(status=503, body=body, content_type=PROBLEM_TYPE, headers=headers)

    async def _activation(self, data: dict[str, Any], ip: str) -> bytes:
        """The answer body (JSON, to be signed) to the activation `data` from `ip`."""
        started = time.perf_counter()
        body, request = self._request(data, ip)
        now = await self._clock.now()
        store_started = time.perf_counter()
        outcome = await self.store.activate(request, now)
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

    def _signed(self, body: bytes) -> web.Response:
        signer = self.signer
        headers = {
            "Content-Type": "application/json",
            "X-Signature": signer.header(body),
            "X-Signature-Key-Id": signer.key_id,
        }
        return web.Response(body=body, headers=headers)

    async def signing_key(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response(self.signer.public_document)

    async def signing_keys(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every published key, the current one first (SPEC §5, api/keyring.py)."""
        return web.json_response(self._keyring.documents())

    async def healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.BaseRequest) -> web.StreamResponse:
        redis_ok = await self.store.ping()
        try:
            await self._pool.fetchval("SELECT 1")
            postgres_ok = True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            postgres_ok = False
        status = 200 if redis_ok and postgres_ok else 503
        return web.json_response(
            {"redis": redis_ok, "postgresql": postgres_ok},
            status=status,
            headers=None if status == 200 else {"Retry-After": retry_after()},
        )

    async def metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        output = exposition(self._metrics.registry)
        return web.Response(body=output, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _after_continue(handler: Handler) -> Handler:
    """`handler` behind the `Expect` handling every app's routes get (web/expect.py)."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        await expect_continue(request)
        return await handler(request)

    return answer


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
