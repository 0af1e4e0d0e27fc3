"""The admin app factory (SPEC §6): JSON under /admin/v1, bearer tokens, problem answers.

Every error is RFC 9457 problem JSON: `ProblemError` from parsing and domain mapping, aiohttp's
own HTTP errors (404, 405, 413), and Redis being unreachable (503). Nothing a client sends
yields a 500; an unexpected failure is logged and answered as a 500 problem.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from activation.admin import (
    audit,
    clock_routes,
    customers,
    imports,
    licenses,
    ms_routes,
    offline_files,
    releases,
    tokens,
)
from activation.admin.case_side import CASE_SIDE, CaseSide
from activation.admin.state import RESOURCES
from activation.api.openapi import openapi_handler
from activation.runtime import Resources
from activation.web.expect import add_routes
from activation.web.problems import answer_problems

MAX_BODY_BYTES = 32 * 1024 * 1024  # bulk imports of tens of thousands of rows


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await answer_problems(request, handler)


def create_admin_app(resources: Resources, cases: CaseSide | None = None) -> web.Application:
    """The admin app; with `cases` (the fraud side) also the case routes, the console, and each
    license's open case. fraud/admin_app.py builds the whole of it."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY_BYTES)
    resources = resources.for_admin()
    app[RESOURCES] = resources
    # imports before licenses: "/licenses/import" must not be taken for a key
    for module in (
        customers, imports, licenses, ms_routes, releases, tokens, audit, clock_routes,
        offline_files,
    ):  # fmt: skip
        add_routes(app.router, module.routes)
    if cases is not None:
        app[CASE_SIDE] = cases
        cases.prepare(app, resources)
        add_routes(app.router, cases.routes)
    add_routes(
        app.router,
        [
            web.get("/openapi.json", openapi_handler),
            web.get("/console", _to_console),
            web.get("/", _to_console),
        ],
    )
    if cases is not None:
        app.add_subapp("/console/", cases.console(resources))  # the fraud team's HTML console
    return app


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")
