"""SignedJson (activation/api/wire.py) on the wire: what aiohttp's own response would say about
versions and keep-alive, byte for byte the body, and pipelined requests answered in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from activation.api.wire import SignedJson

BODY = b'{"valid":true,"code":"VALID"}'


async def _answer(request: web.BaseRequest) -> web.StreamResponse:
    await request.read()
    return SignedJson(BODY, "ed25519=c2lnbmF0dXJl", "0123456789abcdef")


async def _exchange(server: RawTestServer, raw: bytes, answers: int = 1) -> list[bytes]:
    """Send `raw`, read `answers` responses (each head + Content-Length body)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        await writer.drain()
        responses = []
        for _ in range(answers):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            responses.append(head + await reader.readexactly(length))
        return responses
    finally:
        writer.close()


def _headers(response: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in head[1:])
    return head[0], {name.lower(): value for name, value in fields.items()}


@pytest.fixture
async def server() -> AsyncIterator[RawTestServer]:
    async with RawTestServer(_answer) as raw_server:
        yield raw_server


REQUEST = b"POST /v1/activations HTTP/%s\r\nHost: x\r\nContent-Length: 2\r\n%s\r\n{}"


@pytest.mark.parametrize(
    ("version", "extra", "status_line", "connection"),
    [
        (b"1.1", b"", b"HTTP/1.1 200 OK", None),
        (b"1.1", b"Connection: close\r\n", b"HTTP/1.1 200 OK", b"close"),
        (b"1.0", b"", b"HTTP/1.0 200 OK", None),
        (b"1.0", b"Connection: keep-alive\r\n", b"HTTP/1.0 200 OK", b"keep-alive"),
    ],
)
async def test_status_line_and_connection_follow_the_request(
    server: RawTestServer,
    version: bytes,
    extra: bytes,
    status_line: bytes,
    connection: bytes | None,
) -> None:
    (response,) = await _exchange(server, REQUEST % (version, extra))
    first, headers = _headers(response)
    assert first == status_line
    assert headers.get(b"connection") == connection
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-signature"] == b"ed25519=c2lnbmF0dXJl"
    assert headers[b"content-length"] == str(len(BODY)).encode()
    assert headers[b"date"].endswith(b" GMT")
    assert headers[b"server"].startswith(b"Python/")
    assert response.endswith(b"\r\n\r\n" + BODY)


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    server: RawTestServer,
) -> None:
    responses = await _exchange(server, (REQUEST % (b"1.1", b"")) * 3, answers=3)
    assert [_headers(response)[0] for response in responses] == [b"HTTP/1.1 200 OK"] * 3
    assert all(response.endswith(BODY) for response in responses)


async def test_a_closing_http10_client_gets_the_connection_closed(server: RawTestServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(REQUEST % (b"1.0", b""))
        everything = await asyncio.wait_for(reader.read(), timeout=5)  # until the server closes
    finally:
        writer.close()
    assert everything.startswith(b"HTTP/1.0 200 OK\r\n")
    assert everything.endswith(BODY)
