"""The test clock (SPEC §6): read or move the deployment's clock; 404 unless TEST_CLOCK=1."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from activation.admin import parsing as p
from activation.admin.auth import requires
from activation.admin.state import Role, render, resources_of
from activation.api.problems import ProblemError, bad_field
from activation.clock import RedisTestClock

routes = web.RouteTableDef()

MAX_ADVANCE_SECONDS = 100 * 365 * 86_400


def test_clock(request: web.Request) -> RedisTestClock:
    resources = resources_of(request)
    if not resources.settings.test_clock or not isinstance(resources.clock, RedisTestClock):
        raise ProblemError(404, "the test clock is not enabled (TEST_CLOCK=1)")
    return resources.clock


@routes.get("/admin/v1/test-clock")
@requires(Role.VIEWER)
async def read_clock(request: web.Request) -> web.Response:
    return render({"now": await test_clock(request).now()})


@routes.post("/admin/v1/test-clock")
@requires(Role.ADMIN)
async def move_clock(request: web.Request) -> web.Response:
    clock = test_clock(request)
    body = await p.json_body(request)
    if body.get("now") is not None:
        return render({"now": await clock.set(p.moment(body, "now"))})
    seconds = body.get("advance_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise bad_field("advance_seconds", "give advance_seconds (a number) or now (ISO-8601)")
    if not abs(seconds) <= MAX_ADVANCE_SECONDS:
        raise bad_field("advance_seconds", "must be within 100 years")
    # Steps add up: keep the clock where `now` may be set, or every date computed from it
    # (coverage ends, grace periods) would in the end overflow into 500s.
    target = await clock.now() + timedelta(seconds=seconds)
    if not p.FIRST_YEAR <= target.year <= p.LAST_YEAR:
        raise bad_field(
            "advance_seconds", f"would move the clock out of {p.FIRST_YEAR}–{p.LAST_YEAR}"
        )
    return render({"now": await clock.advance(seconds)})
