"""The console app factory (SPEC §6), mounted on the admin app under `/console/`.

Its middleware, for every console response (pages, forms, static files, errors):
- loads the session from the cookie (`sessions.load`; none → the guards redirect or refuse);
- renders errors as HTML pages (404, 403, 405, a domain `ProblemError`, Redis unreachable 503)
  rather than the admin API's problem JSON;
- sets the Content-Security-Policy and the other security headers (`render.SECURITY_HEADERS`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from activation.admin.state import RESOURCES, resources_of
from activation.runtime import Resources
from activation.web.expect import add_routes, expect_continue
from activation.web.problems import ProblemError, retry_after, unreachable_dependency
from fraud.console import forms, offline, pages, sessions, tokens
from fraud.console.render import SECURITY_HEADERS, SESSION, render
from fraud.review.routes import LADDER, ladder_for

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _handle(request, handler)
    except web.HTTPException as error:
        if error.status < 400:
            response = web.Response(status=error.status, headers=error.headers)
        else:
            response = _error(request, error.status, error.reason)
    except ProblemError as error:
        response = _error(request, error.status, error.detail)
    except Exception as error:
        dependency = unreachable_dependency(error)
        if dependency is None:
            log.exception("console request %s %s failed", request.method, request.path)
            response = _error(request, 500, "Something went wrong; the failure was logged.")
        else:
            message = f"{dependency[1]} is unavailable; try again in a moment."
            response = _error(request, 503, message)
            response.headers["Retry-After"] = retry_after()
    response.headers.update(SECURITY_HEADERS)
    return response


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    cookie = request.cookies.get(sessions.COOKIE)
    session = await sessions.load(resources_of(request), cookie)
    if session is not None:
        request[SESSION] = session
    response = await handler(request)
    if cookie and session is None and sessions.COOKIE not in response.cookies:
        sessions.clear_cookie(response, sessions.COOKIE)  # expired or revoked: forget it
    return response


def _error(request: web.Request, status: int, reason: str) -> web.Response:
    return render(request, "error.html", status=status, status_code=status, reason=reason)


def create_console_app(resources: Resources) -> web.Application:
    app = web.Application(middlewares=[console_middleware])
    app[RESOURCES] = resources
    app[LADDER] = ladder_for(resources.settings)
    for module in (pages, forms, tokens, offline):
        add_routes(app.router, module.routes)
    app.router.add_static("/static/", STATIC, append_version=False, expect_handler=expect_continue)
    return app
