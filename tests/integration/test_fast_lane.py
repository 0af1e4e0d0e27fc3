"""The fast lane on the wire (activation/api/fastlane.py): what it answers is what aiohttp's
route answers — signed, in request order, errors as problem JSON, nothing stored for bad
input — and the requests it leaves to aiohttp are still answered."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import pytest
from aiohttp import web

from activation.api.app import PublicApi
from activation.api.fastlane import FastLaneServer
from activation.config import Settings
from activation.runtime import Resources
from tests.conftest import PublicTestServer
from tests.integration.helpers import (
    Client,
    activation_body,
    create_license,
    verify_signature,
)


@pytest.fixture(params=["system clock", "test clock"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Each test with both clocks: on the system clock the lane goes on from the script's
    reply as it arrives (api/lane_call.py), on the test clock it awaits it in a task."""
    return dataclasses.replace(settings, test_clock=request.param == "test clock")


@pytest.fixture
async def lane(resources: Resources) -> AsyncIterator[tuple[int, FastLaneServer]]:
    server = PublicApi(resources).server()
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], server
    finally:
        await runner.cleanup()


@pytest.fixture
async def key(admin_client: Client, admin_headers: dict[str, str]) -> str:
    created = await create_license(admin_client, admin_headers, max_servers=5)
    return str(created["key"])


def post(body: dict[str, Any] | bytes, *fields: bytes) -> bytes:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    head = [b"Host: x", b"Content-Type: application/json", b"Content-Length: %d" % len(raw)]
    return (
        b"POST /v1/activations HTTP/1.1\r\n"
        + b"".join(field + b"\r\n" for field in [*head, *fields])
        + b"\r\n"
        + raw
    )


async def exchange(
    port: int, parts: Sequence[bytes], answers: int, pause: float = 0.05
) -> list[tuple[int, dict[str, str], bytes]]:
    """`parts` written `pause` apart on one connection; the first `answers` answers read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for number, part in enumerate(parts):
            if number and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        return [await asyncio.wait_for(read_answer(reader), 10) for _ in range(answers)]
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status_line, *lines = head.strip().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def test_the_test_client_is_answered_by_the_lane(public_client: Client, key: str) -> None:
    """The HTTP tests of the suite (the `public_client` fixture) exercise the lane."""
    server = public_client.server
    assert isinstance(server, PublicTestServer)
    response = await public_client.post("/v1/activations", json=activation_body(key))
    assert response.status == 200
    assert server.web_server.lane_answers == 1


async def test_lane_answers_are_signed_and_kept_alive(
    lane: tuple[int, FastLaneServer], key: str, resources: Resources
) -> None:
    port, server = lane
    requests = [post(activation_body(key, f"server-{n}", nonce=f"nonce-{n}")) for n in range(3)]
    answers = await exchange(port, requests, 3)
    assert server.lane_answers == 3
    public_key = resources.signer.public_document["public_key"]  # type: ignore[union-attr]
    for n, (status, headers, body) in enumerate(answers):
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert "connection" not in headers  # HTTP/1.1 keep-alive
        verify_signature(public_key, body, headers["x-signature"])
        answer = orjson.loads(body)
        assert (answer["code"], answer["nonce"]) == ("VALID", f"nonce-{n}")
        assert answer["installation"]["servers_active"] == n + 1


async def test_requests_arriving_during_an_answer_are_answered_in_order(
    lane: tuple[int, FastLaneServer], key: str, resources: Resources
) -> None:
    """Each Redis call takes 0.3 s, requests are written 0.05 s apart: the later ones arrive
    while the first is in flight and wait for its answer; together they are pipelined
    requests, which aiohttp then answers in order."""
    port, server = lane
    hot = resources.store.hot_client
    assert hot is not None
    resources.store.use_hot_client(_Slow(hot))
    requests = [post(activation_body(key, nonce=f"nonce-{n}")) for n in range(4)]
    try:
        answers = await exchange(port, requests, 4)
    finally:
        resources.store.use_hot_client(hot)
    assert [orjson.loads(body)["nonce"] for _, _, body in answers] == [
        f"nonce-{n}" for n in range(4)
    ]
    assert server.lane_answers == 1


async def test_pipelined_requests_go_to_aiohttp_in_order(
    lane: tuple[int, FastLaneServer], key: str
) -> None:
    port, server = lane
    both = post(activation_body(key, nonce="first")) + post(activation_body(key, nonce="second"))
    answers = await exchange(port, [both], 2)
    assert [orjson.loads(body)["nonce"] for _, _, body in answers] == ["first", "second"]
    assert server.lane_answers == 0


@pytest.mark.parametrize(
    ("what", "cuts", "lane_answers"),
    [
        ("a head in three pieces is taken once whole", (3, 40), 1),
        ("a body in two pieces is left to aiohttp, which reads it whole", (-30,), 0),
    ],
)
async def test_a_request_in_pieces(
    lane: tuple[int, FastLaneServer],
    key: str,
    what: str,
    cuts: tuple[int, ...],
    lane_answers: int,
) -> None:
    port, server = lane
    raw = post(activation_body(key))
    edges = [0, *(cut % len(raw) for cut in cuts), len(raw)]
    answers = await exchange(port, [raw[a:b] for a, b in itertools.pairwise(edges)], 1)
    assert answers[0][0] == 200, answers[0][2]
    assert server.lane_answers == lane_answers


async def test_connection_close_is_left_to_aiohttp_which_closes(
    lane: tuple[int, FastLaneServer], key: str
) -> None:
    port, server = lane
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(activation_body(key), b"Connection: close"))
    status, headers, _ = await asyncio.wait_for(read_answer(reader), 10)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the answer
    writer.close()
    assert (status, headers["connection"].lower()) == (200, "close")
    assert server.lane_answers == 0


async def test_bad_input_in_the_lane_is_problem_json_and_stores_nothing(
    lane: tuple[int, FastLaneServer], key: str, resources: Resources
) -> None:
    port, server = lane
    streams_before = [await resources.redis.xlen(s) for s in resources.layout.streams()]
    cases = [
        (post(activation_body(key, version="16.3")), 400, "version"),
        (post(b"[1, 2]"), 400, "JSON object"),
        (post(b'{"license_key": '), 400, "not valid JSON"),
        (post(activation_body(key, fingerprint="")), 400, "fingerprint"),
    ]
    answers = await exchange(port, [raw for raw, _, _ in cases], len(cases))
    for (status, headers, body), (_, expected, detail) in zip(answers, cases, strict=True):
        assert status == expected
        assert headers["content-type"] == "application/problem+json"
        problem = orjson.loads(body)
        assert problem["status"] == expected and detail in problem["detail"]
    assert server.lane_answers == len(cases)
    assert [await resources.redis.xlen(s) for s in resources.layout.streams()] == streams_before


async def test_a_redis_outage_in_the_lane_is_503_with_retry_after(
    lane: tuple[int, FastLaneServer], key: str, resources: Resources
) -> None:
    port, server = lane
    hot = resources.store.hot_client
    assert hot is not None
    await hot.aclose()
    resources.store.use_hot_client(_Unreachable())
    try:
        [(status, headers, body)] = await exchange(port, [post(activation_body(key))], 1)
    finally:
        resources.store.use_hot_client(hot)
    assert (status, headers["retry-after"]) == (503, "2")
    assert b"Redis" in body
    assert server.lane_answers == 1


async def test_an_answerer_that_raises_closes_the_connection_not_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The answerer never raises (PublicApi.lane_start maps every error); if it did, the
    connection is closed at once and the failure logged, rather than left waiting."""

    def broken(body: bytes, ip: str, deliver: Callable[[bytes], None]) -> None:
        raise RuntimeError("a bug in the answerer")

    async def unused(request: web.BaseRequest) -> web.StreamResponse:
        raise AssertionError("the lane took the request")

    runner = web.ServerRunner(FastLaneServer(unused, broken))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(post({"license_key": "x"}))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no answer
        writer.close()
    finally:
        await runner.cleanup()
    assert "the fast lane's answerer failed" in caplog.text


class _Unreachable:
    async def evalsha(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        raise ConnectionRefusedError("Redis is down")

    async def aclose(self) -> None:
        pass


class _Slow:
    def __init__(self, hot: Any) -> None:
        self._hot = hot

    async def evalsha(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        await asyncio.sleep(0.3)
        return await self._hot.evalsha(keys, args)

    async def aclose(self) -> None:
        pass
