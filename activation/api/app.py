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


def answering(handler: Handler) -> Handler:
    """Every answer of a route is problem JSON on error, 503 with Retry-After on an outage,
    and counted by status class (api_responses_total). A wrapper per route rather than an
    aiohttp middleware: the middleware chain cost the hot path ≈ 4 µs per request."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            response = await answer_problems(request, handler, _count_outage)
        except web.HTTPException as error:  # redirects and the like pass through
            request.app[RESOURCES].metrics.count_response(error.status)
            raise
        request.app[RESOURCES].metrics.count_response(response.status)
        return response

    return answer


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
    releases = (resources.releases.generation, resources.releases.for_product(body.product))
    code, answer = request.app[ANSWERER].answer(body, recorded, releases, now)
    metrics.activations_by_code[code].inc()
    metrics.activation_latency.observe(time.perf_counter() - started)
    return _signed_body(request.app[SIGNER], answer)


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
    return _signed_body(signer, orjson.dumps(payload))


def _signed_body(signer: Signer, body: bytes) -> web.Response:
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


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/v1/activations", activate),
    ("POST", "/v1/deactivations", deactivate),
    ("GET", "/v1/signing-key", signing_key),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics_endpoint),
    ("GET", "/openapi.json", openapi_handler),
)


def _allowed_by_path() -> dict[str, list[str]]:
    allowed: dict[str, set[str]] = {}
    for method, path, _ in ROUTES:
        allowed.setdefault(path, set()).update({method, "HEAD"} if method == "GET" else {method})
    return {path: sorted(methods) for path, methods in allowed.items()}


_ALLOWED = _allowed_by_path()


async def unrouted(request: web.Request) -> web.StreamResponse:
    """What the router found no route for: 405 with Allow on a known path, else 404."""
    allowed = _ALLOWED.get(request.path)
    if allowed is not None:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def create_public_app(resources: Resources) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
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
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, answering(handler))
        if method == "GET":
            app.router.add_route("HEAD", path, answering(handler))
    app.router.add_route("*", "/{tail:.*}", answering(unrouted))
    return app
