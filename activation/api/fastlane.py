"""The fast lane: the common activation request answered from the connection's bytes.

Why: on aiohttp's low-level server an activation request still costs aiohttp's parse into a
message with a header multidict, a payload stream, a writer, a request object and a task of
its own — together more CPU than the activation's own work. The benchmark's bare endpoint is
itself such an aiohttp request (README, Benchmark). A phone-home is one small, well-formed
request, so the connection handler here recognises exactly that shape in the bytes received:

    POST /v1/activations HTTP/1.1, well-formed header fields only, Content-Type exactly
    application/json, one Content-Length of at most 8 KiB, the whole body present and nothing
    after it; no Transfer-Encoding, Expect, Upgrade, Content-Encoding, Trailer, TE or
    X-Forwarded-For, and no Connection other than keep-alive

and answers it through `PublicApi.lane_start` (the same parse, store call, decision and
signature as the aiohttp route), writing the answer as one buffer when it is ready (usually
from the Redis reply's own callback: api/lane_call.py). Anything else — another
path or method, HTTP/1.0, a body still arriving, pipelined requests, an unusual header —
goes, byte for byte, to aiohttp's own parser and the route handlers, and that connection
stays with aiohttp from then on. So the lane decides nothing a client could tell apart, and
it never takes a request it would have to hand back after doing anything: the choice is made
before the request is read.

What the lane keeps of aiohttp's connection handling: answers in request order (bytes that
arrive while an answer is pending wait for it), keep-alive with aiohttp's idle timeout,
graceful shutdown waiting for the answer in flight, no write to a closed connection.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from activation.api.parsing import MAX_BODY_BYTES
from activation.api.wire import ProblemRequestHandler, ProblemServer

log = logging.getLogger(__name__)

# (body, client address, deliver): calls deliver with the whole HTTP answer, once, now or later.
LaneAnswerer = Callable[[bytes, str, Callable[[bytes], None]], None]

_REQUEST_LINE: Final = b"POST /v1/activations HTTP/1.1\r\n"
MAX_HEAD_BYTES: Final = 8192
# Header fields as RFC 9110 writes them: a token, a colon, visible ASCII, spaces or tabs.
# No obs-fold, no bytes above 0x7e: those requests go to aiohttp's parser. One star per
# pattern: linear time on any input.
_FIELD_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELDS: Final = re.compile(rb"(?:" + _FIELD_NAME + rb":[\x20-\x7e\t]*\r\n)+")
_FIELD: Final = re.compile(rb"(" + _FIELD_NAME + rb"):([\x20-\x7e\t]*)\r\n")
_NOT_IN_LANE: Final = frozenset(
    # X-Forwarded-For: the client may be another address than the peer (client_address.py)
    (
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"content-encoding",
        b"trailer",
        b"te",
        b"x-forwarded-for",
    )
)
MAX_BUFFERED_BYTES: Final = MAX_HEAD_BYTES + MAX_BODY_BYTES


class Incomplete:
    """The bytes so far could begin a lane request: wait for more."""


INCOMPLETE: Final = Incomplete()


def lane_body(data: bytes) -> bytes | Incomplete | None:
    """The body when `data` is exactly one activation request the lane serves; INCOMPLETE when
    its head has not all arrived yet; None for anything that is aiohttp's to answer."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) >= MAX_HEAD_BYTES:
            return None
        if data.startswith(_REQUEST_LINE) or _REQUEST_LINE.startswith(data):
            return INCOMPLETE
        return None
    if end > MAX_HEAD_BYTES or not data.startswith(_REQUEST_LINE):
        return None
    fields = data[len(_REQUEST_LINE) : end + 2]
    length = _HEADS.get(fields)
    if length is None:
        length = _lane_length(fields)
        if len(fields) <= _HEAD_MEMO_BYTES:
            if len(_HEADS) >= _HEAD_MEMO_LIMIT:
                _HEADS.clear()
            _HEADS[fields] = length
    start = end + 4
    # A body still on its way, or more after it (pipelining): aiohttp's, which bounds the
    # wait for a body and keeps pipelined answers in order.
    if length < 0 or len(data) != start + length:
        return None
    return data[start:]


# A product's phone-homes repeat one head but for Content-Length (and Host): what a head's
# fields say is remembered (≈ 2.5 µs of regular expressions per request on the benchmark
# machine). Bounded, like parsing.py's versions; long heads are not kept at all.
_HEADS: dict[bytes, int] = {}
_HEAD_MEMO_LIMIT: Final = 1024
_HEAD_MEMO_BYTES: Final = 512


def _lane_length(fields: bytes) -> int:
    """The Content-Length of a head (its header fields) the lane takes, else -1."""
    if not _FIELDS.fullmatch(fields):
        return -1
    length = -1
    json = False
    for raw_name, raw_value in _FIELD.findall(fields):
        name = raw_name.lower()
        value = raw_value.strip(b" \t")
        if name == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 5:
                return -1
            length = int(value)
        elif name == b"content-type":
            if json or value != b"application/json":
                return -1
            json = True
        elif name in _NOT_IN_LANE or (name == b"connection" and value.lower() != b"keep-alive"):
            return -1
    if not json or length > MAX_BODY_BYTES:
        return -1
    return length


class FastLaneHandler(ProblemRequestHandler):
    """One connection of the public API: lane requests answered here, the rest by aiohttp."""

    def __init__(self, manager: FastLaneServer, *, answerer: LaneAnswerer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._lane_server = manager
        self._answerer = answerer
        self._lane_open = True  # False once aiohttp's parser has seen this connection's bytes
        self._lane_busy = False
        self._lane_buffer = b""
        self._lane_ip: str | None = None
        self._lane_paused = False

    def data_received(self, data: bytes) -> None:
        if not self._lane_open:
            super().data_received(data)
            return
        if self._lane_buffer:
            data = self._lane_buffer + data
            self._lane_buffer = b""
        if self._lane_busy:  # answered in order, after the answer in flight
            self._lane_buffer = data
            if len(data) > MAX_BUFFERED_BYTES and self.transport is not None:
                self.transport.pause_reading()
                self._lane_paused = True
            return
        if self._force_close or self._close:
            return
        body = lane_body(data)
        if body is None:
            self._lane_open = False
            super().data_received(data)
        elif body is INCOMPLETE:
            self._lane_buffer = data
        else:
            assert isinstance(body, bytes)
            self._lane_busy = True
            self._request_in_progress = True  # shutdown() waits for the answer
            self._lane_server.lane_answers += 1
            ip = self._lane_ip
            if ip is None:
                peer = self.peername
                ip = str(peer[0]) if isinstance(peer, tuple) else str(peer or "unknown")
                self._lane_ip = ip
            try:
                self._answerer(body, ip, self._deliver)
            except Exception:  # it never raises; were it to, the connection must not hang
                log.exception("the fast lane's answerer failed: connection closed")
                self._lane_busy = self._request_in_progress = False
                self.force_close()

    def _deliver(self, answer: bytes) -> None:
        """The answer to the request in flight (maybe before `_answerer` has returned)."""
        transport = self.transport
        if transport is not None:  # None: the client left, or the server closed it
            transport.write(answer)
        self._lane_busy = False
        self._request_in_progress = False
        if self._handler_waiter is not None and not self._handler_waiter.done():
            self._handler_waiter.set_result(None)
        self._keep_alive_from_now()
        if self.transport is not None:
            if self._lane_paused:
                self._lane_paused = False
                self.transport.resume_reading()
            if self._lane_buffer:
                pending, self._lane_buffer = self._lane_buffer, b""
                self.data_received(pending)

    def _keep_alive_from_now(self) -> None:
        """aiohttp's idle timeout counts from the last answer, the lane's too."""
        timeout = self._keepalive_timeout
        if timeout <= 0 or self._force_close:
            return
        self._next_keepalive_close_time = self._loop.time() + timeout
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(
                self._next_keepalive_close_time, self._process_keepalive
            )


class FastLaneServer(ProblemServer):
    """The public API's `web.Server`: connections with the fast lane. `lane_answers` counts
    the requests it took (tests assert the lane, not aiohttp, answered)."""

    def __init__(self, handler: Any, answerer: LaneAnswerer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._answerer = answerer
        self.lane_answers = 0

    def __call__(self) -> web.RequestHandler:
        return FastLaneHandler(self, answerer=self._answerer, loop=self._loop, **self._kwargs)
