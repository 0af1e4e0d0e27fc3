"""RFC 9457 problem details: every error answer of both HTTP apps is one of these."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson
from aiohttp import web
from redis import exceptions as redis_errors

from activation.store.redis_store import StoreUnavailable
from activation.store.refusals import is_refusal

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.Response(
        status=status,
        body=problem_body(status, detail, **extra),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def problem_body(status: int, detail: str, **extra: Any) -> bytes:
    """The JSON of a problem answer (`problem`'s body)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return orjson.dumps(body)


class ProblemError(Exception):
    """Raised by parsing and domain-mapping code; rendered by the problem middleware."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] | None = None

    def response(self) -> web.Response:
        answer = problem(self.status, self.detail, headers=self.headers, **self.extra)
        if self.status == 408:
            answer.force_close()  # the rest of the body never came: the stream is unusable
        return answer


def bad_field(field: str, detail: str) -> ProblemError:
    return ProblemError(400, f"{field}: {detail}", field=field)


RETRY_AFTER_SECONDS = (1, 5)  # a 503's Retry-After: whole seconds, drawn uniformly


def retry_after() -> str:
    """A 503's `Retry-After` (SPEC §5): jittered, so a fleet turned away together does not
    come back together."""
    return str(random.randint(*RETRY_AFTER_SECONDS))


REDIS_FAILURES: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
)
# Redis paths raise StoreUnavailable, so a bare OSError here comes from PostgreSQL's driver.
# OperatorInterventionError (SQLSTATE class 57): the server is shutting down or restarting
# (AdminShutdown, CrashShutdown, CannotConnectNow) or cancelled the query (QueryCanceled,
# statement timeouts under overload) — an outage for the request in flight, not a bug.
# InsufficientResourcesError (class 53): disk full, out of memory, too many connections.
# ReadOnlySQLTransactionError (25006): the database refuses writes (a failover left the
# configured address on a standby, or default_transaction_read_only during maintenance);
# activations still work then, they only read PostgreSQL.
POSTGRES_FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.InterfaceError,
    OSError,
)

AnyRequest = TypeVar("AnyRequest", bound=web.BaseRequest)  # the public API's are BaseRequests


async def answer_problems(
    request: AnyRequest,
    handler: Callable[[AnyRequest], Awaitable[web.StreamResponse]],
    on_outage: Callable[[AnyRequest, str], None] | None = None,
) -> web.StreamResponse:
    """The error mapping of both HTTP apps around `handler` (see `problem_answer`)."""
    try:
        return await handler(request)
    except Exception as error:
        return problem_answer(request, error, on_outage)


def problem_answer(
    request: AnyRequest,
    error: Exception,
    on_outage: Callable[[AnyRequest, str], None] | None = None,
) -> web.StreamResponse:
    """Every error answer is problem JSON (the public API calls this from its own `handle`,
    saving a coroutine layer per request; the admin app goes through `answer_problems`).

    - `ProblemError` (parsing, domain refusals) as raised; aiohttp's 4xx (404, 405 with
      Allow, 413) as problems; 3xx are raised again (they pass through).
    - Redis or PostgreSQL unreachable, or Redis refusing (store/refusals.py) → 503 with
      Retry-After (fail closed), reported to `on_outage` with "redis" or "postgresql".
    - Anything else is a bug: logged, answered 500 (never caused by client input, SPEC §5).
    """
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        allow = error.headers.get("Allow")
        return problem(error.status, error.reason, headers={"Allow": allow} if allow else None)
    return failure_answer(
        error,
        f"{request.method} {request.path}",
        None if on_outage is None else functools.partial(on_outage, request),
    )


def failure_answer(
    error: Exception, what: str, on_outage: Callable[[str], None] | None = None
) -> web.Response:
    """`ProblemError` as raised; 503 with Retry-After when `error` is an outage of a
    dependency (`on_outage` is told which); else 500, logged with `what` failed. Everything
    but aiohttp's HTTP errors (`problem_answer` maps those)."""
    if isinstance(error, ProblemError):
        return error.response()
    dependency = unreachable_dependency(error)
    if dependency is None:
        log.error("%s failed", what, exc_info=error)
        return problem(500, "internal error; the failure was logged")
    label, name = dependency
    if on_outage is not None:
        on_outage(label)
    return problem(
        503, f"{name} is unavailable; try again shortly",
        headers={"Retry-After": retry_after()},
    )  # fmt: skip


def unreachable_dependency(error: BaseException) -> tuple[str, str] | None:
    """("redis", "Redis") or ("postgresql", "PostgreSQL") when `error` means that dependency
    is unreachable (metric label, name to show), None for any other error. The one
    classification behind the JSON APIs' 503s and the console's."""
    if isinstance(error, REDIS_FAILURES) or is_refusal(error):
        return "redis", "Redis"
    if isinstance(error, POSTGRES_FAILURES):
        return "postgresql", "PostgreSQL"
    return None
