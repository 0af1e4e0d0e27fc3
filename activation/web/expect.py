"""`Expect: 100-continue` for every route of every app, answered as aiohttp's default expect
handler answers it, except that an unknown expectation is quoted escaped: aiohttp's own 417
quotes the header verbatim, and a value that is not UTF-8 turns that 417 into a 500
(tests/integration/test_raw_input.py)."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import HttpVersion11, hdrs, web


async def expect_continue(request: web.BaseRequest) -> None:
    """Before the body is read: `100 Continue`, or 417 for any other expectation (HTTP/1.1
    only, as aiohttp does)."""
    if request.version != HttpVersion11:
        return
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() != "100-continue":
        shown = expect[:100].encode("ascii", "backslashreplace").decode()
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {shown}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the 100 is not part of the answer's size


def add_routes(router: web.UrlDispatcher, table: Iterable[web.AbstractRouteDef]) -> None:
    """`router.add_routes(table)` with `expect_continue` as every route's expect handler."""
    for route in table:
        if isinstance(route, web.RouteDef):
            kwargs = {**route.kwargs, "expect_handler": expect_continue}
            route = web.RouteDef(route.method, route.path, route.handler, kwargs)
        route.register(router)
