"""Signed JSON answers written to the socket as one buffer: status line, headers and body.

Why: aiohttp's own response path (a header multidict, content-length and connection rules,
header serialization, six coroutine layers from `prepare()` to `write_eof()`) costs about as
much CPU as everything else a bare endpoint does. In an ad-hoc run on the benchmark machine
(README, Benchmark) a bare endpoint on the low-level server answering through this class served
≈ 1.8x the requests per second of the same endpoint answering with `web.Response`.

What it keeps of aiohttp's behaviour: the status line follows the request's HTTP version,
`Connection: close` when an HTTP/1.1 client asked to close and `Connection: keep-alive` when an
HTTP/1.0 client asked to keep the connection, `Date` and `Server` headers, the response's
`keep_alive` for the server's connection handling, and backpressure (`drain`). Its scope is
narrow on purpose: 200 answers with a body, to requests of the low-level server (no
Application, so no `on_response_prepare` signal exists to fire), never compressed, no cookies.
Every other answer (problems, health, metrics) keeps `web.Response`.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from activation.api.problems import problem

_SERVER = SERVER_SOFTWARE.encode()
KEEP_ALIVE_200 = b"HTTP/1.1 200 OK\r\n"  # an HTTP/1.1 keep-alive answer needs no Connection


class SignedJson(web.StreamResponse):
    """A 200 answer of `body` (JSON) with its `X-Signature` header value and the id of the key
    that signed it (`X-Signature-Key-Id`)."""

    def __init__(self, body: bytes, signature: str, key_id: str) -> None:
        super().__init__()
        self._answer = body
        self._signature = signature.encode()
        self._key_id = key_id.encode()

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        keep_alive = request.keep_alive
        self._keep_alive = keep_alive
        self._req = request
        writer = self._payload_writer = request.writer
        version = request.version
        if version == HttpVersion11 and keep_alive:
            head = KEEP_ALIVE_200
        elif version == HttpVersion11:
            head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
        elif version == HttpVersion10 and keep_alive:
            head = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
        else:
            head = b"HTTP/%d.%d 200 OK\r\n" % (version.major, version.minor)
        await writer.write(signed_json_bytes(head, self._signature, self._key_id, self._answer))
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        writer = self._payload_writer
        assert writer is not None, "prepare() comes first"
        await writer.write_eof(data)
        self._eof_sent = True
        self._req = None
        self._body_length = len(self._answer)
        self._payload_writer = None


def signed_json_bytes(head: bytes, signature: bytes, key_id: bytes, body: bytes) -> bytes:
    """A 200 answer of JSON `body` signed with `signature` by the key `key_id`, as one buffer;
    `head` is the status line and any Connection header."""
    return (
        b"%sContent-Type: application/json\r\nX-Signature: %s\r\nX-Signature-Key-Id: %s\r\n"
        b"Content-Length: %d\r\nDate: %s\r\nServer: %s\r\n\r\n%s"
        % (head, signature, key_id, len(body), rfc822_formatted_time().encode(), _SERVER, body)
    )


def response_bytes(response: web.Response) -> bytes:
    """A small, complete `web.Response` (a problem answer) as the bytes of an HTTP/1.1
    keep-alive answer with the headers aiohttp would send: its own, Content-Length, Date and
    Server."""
    body = response.body
    assert isinstance(body, bytes), "only answers with a body of bytes"
    fields = b"".join(
        b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in response.headers.items()
    )
    return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nDate: %s\r\nServer: %s\r\n\r\n%s" % (
        response.status,
        response.reason.encode(),
        fields,
        len(body),
        rfc822_formatted_time().encode(),
        _SERVER,
        body,
    )


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp answers a request it cannot parse (an unknown method, a malformed request line
    or header, a bad chunk) before any handler runs, in plain text; here such answers are
    problem JSON like every other 4xx of the API. 5xx answers stay aiohttp's (they come from
    a failing handler, which `PublicApi.handle` never lets happen)."""

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
    """`web.Server` whose connections answer unparseable requests with problem JSON."""

    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """`web.AppRunner` whose server is a `ProblemServer`: the admin API, console and the
    worker's health port answer unparseable requests with problem JSON too."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return ProblemServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
