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
  being handled start the clock, and `ProblemServer` stops it when aiohttp hands the parsed
  request to the handler. A stalled *body* is bounded separately (408, api/parsing.py).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from aiohttp import web

from activation.api.problems import problem

Handler = Any  # aiohttp's request handler callable: (BaseRequest) -> Awaitable[StreamResponse]


class ProblemRequestHandler(web.RequestHandler):
    """One connection: problem JSON for unparseable requests; the head deadline when
    `head_timeout` is given."""

    def __init__(
        self, manager: web.Server, *, head_timeout: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self.head_timeout = head_timeout
        self.heads_overdue = 0
        self._head_clock: asyncio.TimerHandle | None = None
        self._in_request = False
        self._bytes_in_request = False  # bytes of a next (pipelined) request may have come

    def data_received(self, data: bytes) -> None:
        # aiohttp calls this itself with b"" (to resume its parser): no byte of a client's.
        if not data:
            pass
        elif self._in_request:
            self._bytes_in_request = True
        elif self._head_clock is None and self.head_timeout is not None:
            self._start_head_clock()
        super().data_received(data)

    def _start_head_clock(self) -> None:
        assert self.head_timeout is not None
        loop = asyncio.get_running_loop()
        self._head_clock = loop.call_later(self.head_timeout, self._head_overdue)

    def _stop_head_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def head_arrived(self) -> None:
        """aiohttp parsed a request's head: its handler runs now."""
        self._stop_head_clock()
        self._in_request = True
        self._bytes_in_request = False

    def request_answered(self) -> None:
        """The handler returned; bytes that came meanwhile may begin the next head."""
        self._in_request = False
        if self._bytes_in_request and self.head_timeout is not None and self._head_clock is None:
            self._start_head_clock()

    def _head_overdue(self) -> None:
        self._head_clock = None
        if not self._in_request:
            self.heads_overdue += 1
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_clock()
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
            self._timed(handler) if head_timeout is not None else handler,
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
    def _timed(handler: Handler) -> Handler:
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


class ProblemAppRunner(web.AppRunner):
    """`web.AppRunner` whose server is a `ProblemServer`: the admin API, console and the
    worker's health port answer unparseable requests with problem JSON too. aiohttp has no
    public way to choose an AppRunner's server class: this overrides its `_make_server` and
    takes the handler and request factory from the server that made (public attributes), the
    connection options from this runner's own arguments (`head_timeout` as ProblemServer's)."""

    def __init__(
        self,
        app: web.Application,
        *,
        handle_signals: bool = False,
        shutdown_timeout: float = 60.0,
        head_timeout: float | None = None,
        **connection_options: Any,
    ) -> None:
        super().__init__(
            app,
            handle_signals=handle_signals,
            shutdown_timeout=shutdown_timeout,
            **connection_options,
        )
        self.head_timeout = head_timeout
        self.connection_options = connection_options

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return ProblemServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            head_timeout=self.head_timeout,
            **self.connection_options,
        )
