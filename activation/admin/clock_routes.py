"""The test clock (SPEC §6): read or move the deployment's clock; 404 unless TEST_CLOCK=1.

Every move is audited (target `test-clock`, action `test_clock.move`, the times before and
after): the clock decides grace, escalation and expiry for every key of the deployment. The
audit row's transaction is open before the clock moves and commits after it, so a PostgreSQL
that cannot take the row refuses the move (503) instead of letting it pass unrecorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from aiohttp import web

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.state import Role, render, resources_of
from activation.clock import RedisTestClock
from activation.web.problems import ProblemError, bad_field

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
        moment = p.moment(body, "now")
        return render({"now": await _audited_move(request, lambda: clock.set(moment))})
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
    return render({"now": await _audited_move(request, lambda: clock.advance(seconds))})


async def _audited_move(request: web.Request, move: Callable[[], Awaitable[datetime]]) -> datetime:
    """The clock's time after `move`, with its audit row (see the module's docstring)."""
    resources = resources_of(request)
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await resources.clock.now()
        after = await move()
        await audit.record(
            conn, at=before, actor=actor(request), action="test_clock.move", target="test-clock",
            before={"now": before}, after={"now": after},
        )  # fmt: skip
    return after
