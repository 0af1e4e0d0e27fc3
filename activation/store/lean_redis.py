"""A lean, multiplexed Redis connection for the one hot call: EVALSHA of the activation script.

Why: redis-py's asyncio client does more Python work per call than the activation itself
(connection pool checkout, command packing, response parsing in several layers); the
activation needs one request and one reply. This connection packs the command with
hiredis, writes it at once, and matches replies to callers in order (Redis answers one
connection's commands in order), so concurrent requests share one socket and one event-loop
read. redis-py still serves everything else.

Commands are packed by `hiredis.pack_command`, which writes RESP lengths in bytes of the
UTF-8 encoding: any text, NUL bytes and astral characters included, goes to Redis exactly.
A string that UTF-8 cannot encode (a lone surrogate such as "\ud800", which a JSON parser may
hand over from an escape) makes `pack_command` raise before anything is written, so the
connection and the other callers' commands on it are never disturbed
(tests/integration/test_lean_redis.py). The API refuses such strings with a 400 before they
reach here (api/parsing.py).

Hardened for production use:
- reconnects lazily on the next call after the socket drops (every caller waiting on a dead
  socket gets `ConnectionError` at once, never a hang);
- a watchdog closes the socket when replies stop arriving for `timeout` seconds while requests
  are waiting (a stuck Redis looks like an outage: 503, not a pile-up);
- at most `max_in_flight` requests wait at once; beyond that callers fail fast;
- `NOSCRIPT` (Redis restarted or flushed its script cache) reloads the script once and retries;
- an error reply by which Redis refuses to serve for now (OOM, BUSY, LOADING, READONLY, …:
  store/refusals.py) raises `LeanRefusedError`, a connection error like a lost socket (503);
- `AUTH`, `SELECT` and TLS (`rediss://`, with redis-py's URL options `ssl_ca_certs`,
  `ssl_cert_reqs`, `ssl_check_hostname`, `ssl_certfile`/`ssl_keyfile`) come from the URL, like
  redis-py, so a Redis with a certificate from a private CA serves the hot path too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.connection import parse_url

from activation.store.refusals import refusal_code


class LeanConnectionError(ConnectionError):
    pass


class LeanRefusedError(LeanConnectionError):
    """Redis answered, but refuses to serve for now (`code`: OOM, TRYAGAIN, ...;
    store/refusals.py)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"Redis refused: {message}")
        self.code = code


def reply_exception(reply: hiredis.ReplyError) -> Exception:
    """What an error reply is raised as: LeanRefusedError when it is a refusal."""
    code = refusal_code(str(reply))
    return reply if code is None else LeanRefusedError(code, str(reply))


def _is_noscript(reply: Any) -> bool:
    """Whether `reply` says Redis does not have the script (restarted, or SCRIPT FLUSH): it
    did not run, and runs once the script is loaded again."""
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


def _checked(reply: Any) -> Any:
    """`reply`, unless it is an error reply: raised (`reply_exception`)."""
    if isinstance(reply, hiredis.ReplyError):
        raise reply_exception(reply)
    return reply


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS settings redis-py takes from a `rediss://` URL's query, for this connection."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    requirement = str(options.get("ssl_cert_reqs") or "required").lower()
    if options.get("ssl_check_hostname") is False or requirement == "none":
        context.check_hostname = False
    if requirement == "none":
        context.verify_mode = ssl.CERT_NONE
    elif requirement == "optional":
        context.verify_mode = ssl.CERT_OPTIONAL
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


# Commands queued in one event-loop pass leave together, and early once this many wait: under
# load a pass brings dozens of activations, and sent all at its end they would keep Redis idle
# while the server parses them and the server idle while Redis runs them; in groups Redis
# starts on the first while the rest are parsed. A write per 8 commands keeps the system calls
# few.
FLUSH_EVERY = 8


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.replies = 0
        self.closed = False
        self.outgoing: list[bytes] = []
        # Kept, not looked up per command: on Python 3.11 asyncio.get_running_loop() makes a
        # getpid() system call every time, and this runs once per activation.
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.replies += 1
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = LeanConnectionError(f"Redis connection lost: {exc or 'closed'}")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one command; the commands queued in one event-loop pass leave in one write
        per FLUSH_EVERY (a system call per group of concurrent activations, not one each)."""
        if self.closed or self.transport is None:
            raise LeanConnectionError("Redis connection is closed")
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        outgoing = self.outgoing
        if not outgoing:
            self.loop.call_soon(self.flush)
        outgoing.append(packed)
        if len(outgoing) >= FLUSH_EVERY:
            self.flush()
        return waiter

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if outgoing and self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class LeanScriptClient:
    def __init__(
        self,
        url: str,
        script: str,
        *,
        timeout: float = 2.0,
        max_in_flight: int = 10_000,
    ) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._tls = url.startswith("rediss://")
        self._script = script
        self._sha: str | None = None
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def evalsha(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA of the script with `keys` and `args`; the script is loaded again, and the
        call made once more, when Redis lost it (NOSCRIPT: it did not run)."""
        protocol = await self._connected()
        reply = await protocol.send(self._evalsha_command(keys, args))
        if _is_noscript(reply):
            await self._load_script(protocol)
            reply = await protocol.send(self._evalsha_command(keys, args))
        return _checked(reply)

    def _evalsha_command(self, keys: Sequence[str], args: Sequence[Any]) -> bytes:
        command: bytes = hiredis.pack_command(("EVALSHA", self._sha, len(keys), *keys, *args))
        return command

    async def call(self, *command: Any) -> Any:
        """Any other command on this connection (tests, diagnostics)."""
        protocol = await self._connected()
        return _checked(await protocol.send(hiredis.pack_command(command)))

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        if len(protocol.waiters) >= self._max_in_flight:
            raise LeanConnectionError("too many Redis requests in flight")
        return protocol

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            protocol = await asyncio.wait_for(self._open(), self._timeout)
            self._protocol = protocol
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch())
            return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        protocol = _Protocol()
        if "path" in options:
            await loop.create_unix_connection(lambda: protocol, options["path"])
        else:
            context = _tls_context(options) if self._tls else None
            transport, _ = await loop.create_connection(
                lambda: protocol,
                options.get("host", "localhost"),
                int(options.get("port", 6379)),
                ssl=context,
            )
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A connection that fails its set-up (refused, or timed out by `_connect`) is closed
        # here: nothing else holds it, and Redis may keep its end open.
        try:
            if options.get("password"):
                credentials = [options.get("username") or "default", options["password"]]
                await self._expect_ok(protocol, "AUTH", *credentials)
            if int(options.get("db") or 0):
                await self._expect_ok(protocol, "SELECT", int(options["db"]))
            await self._load_script(protocol)
        except BaseException:
            protocol.abort()
            raise
        return protocol

    async def _expect_ok(self, protocol: _Protocol, *command: Any) -> None:
        reply = await protocol.send(hiredis.pack_command(command))
        if isinstance(reply, hiredis.ReplyError):
            raise LeanConnectionError(f"Redis refused {command[0]}: {reply}")

    async def _load_script(self, protocol: _Protocol) -> None:
        command = ("SCRIPT", "LOAD", self._script)
        reply = _checked(await protocol.send(hiredis.pack_command(command)))  # type: ignore[arg-type]
        self._sha = reply.decode()

    async def _watch(self) -> None:
        """Close a connection whose replies stopped while requests wait (a stuck Redis)."""
        last_replies, was_waiting = -1, False
        while True:
            await asyncio.sleep(self._timeout / 2)
            protocol = self._protocol
            if protocol is None or protocol.closed:
                last_replies, was_waiting = -1, False
                continue
            waiting = bool(protocol.waiters)
            # Stuck: someone was waiting at the last tick too, and no reply came in between.
            if waiting and was_waiting and protocol.replies == last_replies:
                protocol.abort()
            last_replies, was_waiting = protocol.replies, waiting

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._protocol is not None:
            self._protocol.abort()
