"""The HTTP connections of every port: problem JSON for unparseable requests, and a deadline
for a request's head.

- aiohttp answers a request it cannot parse (an unknown method, a malformed request line or
  header, a bad chunk) before any handler runs, in plain text; `ProblemRequestHandler`
  answers those with problem JSON like every other 4xx of the API.
- A request head must arrive within `head_timeout` seconds of its first byte, or the
  connection is closed (slow clients that trickle a head, "slowloris"). aiohttp 3.x has no
  setting for this: its `keepalive_timeout` (set explicitly by the public API, see
  `activation/api/app.py`) closes a connection that stays idle, or has not completed a head,
  that long after it opened or after its last answer, but a head begun just before then gets
  the whole idle allowance again after the next answer, and a long allowance is what a load
  balancer's pooled connections want. So the deadline is kept here, around aiohttp's own
  parser (no second one): the first bytes received while no request of the connection is
  being handled begin a head, which ends when aiohttp hands the parsed request to the handler
  (`ProblemServer`). A stalled *body* is bounded separately (408, api/parsing.py).
- `received_at` is when the connection last received bytes (`time.monotonic()`): when a
  handler starts, the time since then is how long its request, complete by then, waited in
  the process for its turn (the public API sheds activations that waited too long,
  api/app.py). Bytes received after the request was complete (a pipelined next request) make
  that wait look shorter, never longer.
"""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web

from activation.web.problems import problem

Handler = Any  # aiohttp's request handler callable: (BaseRequest) -> Awaitable[StreamResponse]


class ProblemRequestHandler(web.RequestHandler):
    """One connection: problem JSON for unparseable requests; the head deadline when
    `head_timeout` is given."""

    def __init__(
        self, manager: web.Server, *, head_timeout: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self.loop = asyncio.get_running_loop()
        self.head_timeout = head_timeout
        self.heads_overdue = 0
        # The clock is not stopped when a head arrives: it stays set, and when it rings it
        # looks at the head begun since (if any) and sets itself again for what remains of
        # that head's allowance. A keep-alive connection's requests set no timer each.
        self.head_clock: asyncio.TimerHandle | None = None
        self.head_begun_at: float | None = None  # time.monotonic() of the head's first bytes
        self.in_request = False
        self.bytes_in_request = False  # bytes of a next (pipelined) request may have come
        self.received_at = time.monotonic()

    def data_received(self, data: bytes) -> None:
        # aiohttp calls this itself with b"" (to resume its parser): no byte of a client's.
        if data:
            self.received_at = now = time.monotonic()
            if self.in_request:
                self.bytes_in_request = True
            elif self.head_begun_at is None and self.head_timeout is not None:
                self.head_begun(now, self.head_timeout)
        super().data_received(data)

    def head_begun(self, now: float, timeout: float) -> None:
        self.head_begun_at = now
        if self.head_clock is None:
            self.head_clock = self.loop.call_later(timeout, self.head_clock_rang)

    def head_arrived(self) -> None:
        """aiohttp parsed a request's head: its handler runs now."""
        self.head_begun_at = None
        self.in_request = True
        self.bytes_in_request = False

    def request_answered(self) -> None:
        """The handler returned; bytes that came meanwhile may begin the next head."""
        self.in_request = False
        if self.bytes_in_request and self.head_timeout is not None:
            self.head_begun(time.monotonic(), self.head_timeout)

    def head_clock_rang(self) -> None:
        self.head_clock = None
        begun, timeout = self.head_begun_at, self.head_timeout
        if begun is None or timeout is None or self.in_request:
            return  # no head is awaited: the next one sets the clock
        remaining = begun + timeout - time.monotonic()
        if remaining > 0.001:
            self.head_clock = self.loop.call_later(remaining, self.head_clock_rang)
            return
        self.heads_overdue += 1
        self.force_close()

    def stop_head_clock(self) -> None:
        if self.head_clock is not None:
            self.head_clock.cancel()
            self.head_clock = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.stop_head_clock()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own first: it logs, and refuses (ConnectionError) once bytes were sent.
        plain = super().handle_error(request, status, exc, message)
        if status >= 500:
            return plain
        # aiohttp's message goes on with an excerpt of the bytes it choked on: its first line
        # says what was wrong.
        detail = (message or "").strip().split("\n", 1)[0].rstrip(":") or HTTPStatus(status).phrase
        answer = problem(status, detail)
        answer.force_close()  # what follows a request that could not be parsed is unreadable
        return answer


class ProblemServer(web.Server):
    """`web.Server` whose connections are `ProblemRequestHandler`s. `head_timeout` (seconds)
    bounds the wait for each request head; the other keyword arguments go to every
    connection, as `web.Server`'s do (e.g. `keepalive_timeout`, `access_log`)."""

    def __init__(
        self,
        handler: Handler,
        *,
        request_factory: Any = None,
        handler_cancellation: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        head_timeout: float | None = None,
        **connection_options: Any,
    ) -> None:
        super().__init__(
            self.timed_handler(handler) if head_timeout is not None else handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            loop=loop,
            **connection_options,
        )
        self.connection_loop = loop or asyncio.get_running_loop()
        self.head_timeout = head_timeout
        self.connection_options = connection_options

    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(
            self,
            loop=self.connection_loop,
            head_timeout=self.head_timeout,
            **self.connection_options,
        )

    @staticmethod
    def timed_handler(handler: Handler) -> Handler:
        """`handler`, telling its connection when a head arrived and when it was answered."""

        async def answer(request: web.BaseRequest) -> web.StreamResponse:
            connection = request.protocol
            if not isinstance(connection, ProblemRequestHandler):
                response: web.StreamResponse = await handler(request)
                return response
            connection.head_arrived()
            try:
                response = await handler(request)
            finally:
                connection.request_answered()
            return response

        return answer


class ProblemAppRunner:
    """An `Application` served by a `ProblemServer`: the admin API, console and the worker's
    health port answer unparseable requests with problem JSON too. aiohttp chooses an
    `AppRunner`'s server class itself, so the application's life (startup, shutdown, cleanup)
    is run by an `AppRunner` without sites, and its connections by a `web.ServerRunner` around
    a `ProblemServer` made from that runner's server (its public handler and request factory).
    Sites take `connections`; the other keyword arguments go to every connection."""

    def __init__(
        self,
        app: web.Application,
        *,
        head_timeout: float | None = None,
        **connection_options: Any,
    ) -> None:
        self.lifecycle = web.AppRunner(app, handle_signals=False)
        self.head_timeout = head_timeout
        self.connection_options = connection_options
        self.connections: web.ServerRunner | None = None

    async def setup(self) -> web.ServerRunner:
        """Start the application; the runner its sites take."""
        await self.lifecycle.setup()
        made = self.lifecycle.server
        assert made is not None, "AppRunner.setup() makes the server"
        self.connections = web.ServerRunner(
            ProblemServer(
                made.request_handler,
                request_factory=made.request_factory,
                handler_cancellation=made.handler_cancellation,
                head_timeout=self.head_timeout,
                **self.connection_options,
            )
        )
        await self.connections.setup()
        return self.connections

    async def cleanup(self) -> None:
        """Close the sites and connections, then shut the application down."""
        if self.connections is not None:
            await self.connections.cleanup()
        await self.lifecycle.cleanup()
