"""RFC 9457 problem details: every error answer of both HTTP apps is one of these."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
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
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_TYPE, headers=headers
    )


class ProblemError(Exception):
    """Raised by parsing and domain-mapping code; rendered by the problem middleware."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] | None = None

    def response(self) -> web.Response:
        return problem(self.status, self.detail, headers=self.headers, **self.extra)


def bad_field(field: str, detail: str) -> ProblemError:
    return ProblemError(400, f"{field}: {detail}", field=field)
