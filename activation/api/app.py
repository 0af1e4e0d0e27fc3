"""The public activation API (SPEC §5): parse → one Redis script → pure decision → signed JSON."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from activation.api.answers import Answerer
from activation.api.nonces import NonceSource
from activation.api.openapi import openapi_handler
from activation.api.parsing import (
    MAX_BODY_BYTES,
    parse_activation,
    parse_deactivation,
    read_json_object,
)
from activation.api.problems import RETRY_AFTER_SECONDS, ProblemError, answer_problems
from activation.api.signing import Signer
from activation.runtime import Resources
from activation.store.redis_store import (
    ActivationRequest,
    RateLimited,
    Recorded,
)
from metrics import exposition

RESOURCES = web.AppKey("resources", Resources)


class EventIds:
    """Unique event ids without a system call per request: a random 64-bit prefix drawn once
    per process start, then a counter (PostgreSQL's unique event_id relies on them)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


EVENT_IDS = web.AppKey("event_ids", EventIds)


SIGNER = web.AppKey("signer", Signer)
ANSWERER = web.AppKey("answerer", Answerer)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is problem JSON; dependency outages are 503 with Retry-After. Every answer
    is counted by status class (api_responses_total)."""
    metrics = request.app[RESOURCES].metrics
    try:
        response = await answer_problems(request, handler, _count_outage)
    except web.HTTPException as error:  # redirects and the like pass through
        metrics.count_response(error.status)
        raise
    metrics.count_response(response.status)
    return response


def _count_outage(request: web.Request, dependency: str) -> None:
    request.app[RESOURCES].metrics.dependency_errors.labels(dependency).inc()


def _client_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def activate(request: web.Request) -> web.Response:
    resources = request.app[RESOURCES]
    started = time.perf_counter()
    body = parse_activation(await read_json_object(request))
    now = await resources.clock.now()
    store, metrics = resources.store, resources.metrics
    store_started = time.perf_counter()
    outcome = await store.activate(
        ActivationRequest(
            license_key=body.license_key,
            fingerprint=body.fingerprint,
            hostname=body.hostname,
            version=body.version_text,
            ip=_client_address(request),
            event_id=request.app[EVENT_IDS].next(),
        ),
        now,
    )
    metrics.script_latency.observe(time.perf_counter() - store_started)
    if isinstance(outcome, RateLimited):
        raise _rate_limited(resources, outcome)
    recorded = outcome if isinstance(outcome, Recorded) else None
    product = recorded.license.product if recorded else body.product
    releases = (resources.releases.generation, resources.releases.for_product(product))
    decision, payload = request.app[ANSWERER].answer(body, recorded, releases, now)
    metrics.activations_by_code[decision.code].inc()
    metrics.activation_latency.observe(time.perf_counter() - started)
    return _signed(request.app[SIGNER], payload)


async def deactivate(request: web.Request) -> web.Response:
    resources = request.app[RESOURCES]
    body = parse_deactivation(await read_json_object(request))
    now = await resources.clock.now()
    outcome = await resources.store.deactivate(
        ActivationRequest(
            license_key=body.license_key,
            fingerprint=body.fingerprint,
            hostname="",
            version="",
            ip=_client_address(request),
            event_id=request.app[EVENT_IDS].next(),
        ),
        now,
    )
    if isinstance(outcome, RateLimited):
        raise _rate_limited(resources, outcome)
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
    return _signed(request.app[SIGNER], payload)


def _rate_limited(resources: Resources, outcome: RateLimited) -> ProblemError:
    resources.metrics.rate_limited.labels(outcome.limited_by).inc()
    error = ProblemError(
        429,
        f"too many requests ({outcome.limited_by} limit); retry later",
        limit=outcome.limited_by,
    )
    error.headers = {"Retry-After": str(outcome.retry_after)}
    return error


def _signed(signer: Signer, payload: dict[str, object]) -> web.Response:
    body = orjson.dumps(payload)
    return web.Response(
        body=body,
        content_type="application/json",
        headers={"X-Signature": signer.header(body)},
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def signing_key(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIGNER].public_document)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    resources = request.app[RESOURCES]
    redis_ok = await resources.store.ping()
    try:
        await resources.pool.fetchval("SELECT 1")
        postgres_ok = True
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        postgres_ok = False
    status = 200 if redis_ok and postgres_ok else 503
    return web.json_response(
        {"redis": redis_ok, "postgresql": postgres_ok},
        status=status,
        headers=None if status == 200 else {"Retry-After": RETRY_AFTER_SECONDS},
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    output = exposition(request.app[RESOURCES].metrics.registry)
    return web.Response(body=output, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _signing_nonces(app: web.Application) -> AsyncIterator[None]:
    """Precomputed signing nonces while the app serves (activation/api/nonces.py)."""
    source = NonceSource()
    app[SIGNER].attach(source)
    yield
    app[SIGNER].attach(None)
    source.close()


def create_public_app(resources: Resources) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY_BYTES)
    app[RESOURCES] = resources
    if resources.signer is None:
        raise RuntimeError("the public API needs a signing key")
    app[SIGNER] = resources.signer
    app[EVENT_IDS] = EventIds()
    app[ANSWERER] = Answerer(
        resources.settings.grace, timedelta(days=resources.settings.answer_valid_days)
    )
    if resources.settings.signing_nonce_helper:
        app.cleanup_ctx.append(_signing_nonces)
    app.router.add_post("/v1/activations", activate)
    app.router.add_post("/v1/deactivations", deactivate)
    app.router.add_get("/v1/signing-key", signing_key)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi_handler)
    return app
