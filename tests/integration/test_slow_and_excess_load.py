"""Slow clients and more activations than a process should hold (SPEC §5, §10).

Raw-socket tests against the public API's own server (`PublicApi.server()` on a real port):
a request head must arrive within REQUEST_HEAD_TIMEOUT_SECONDS of its first byte, and an idle
keep-alive connection closes after the keep-alive timeout. They set both to fractions of a
second through Settings, so the suite does not wait 10 s and 75 s; what is checked is which
timer closes which connection, not the defaults (test_config.py checks those).

MAX_INFLIGHT: a real burst against the real server while its own redis-server is paused
(CLIENT PAUSE, a Redis of this test's own: the shared one is not paused): the activations in
progress wait, those beyond the limit are answered 503 with a jittered Retry-After at once.

MAX_QUEUE_DELAY_MS: two activations pipelined on one connection while that Redis is paused:
the second's turn comes only after the first was answered, long after it arrived, and it is
answered 503 at once instead of late.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from activation.api.app import PublicApi
from activation.config import Settings
from activation.runtime import Resources, open_resources, public_api
from activation.web.wire import ProblemAppRunner
from fraud.admin_app import create_admin_app
from tests.conftest import _clean
from tests.integration.helpers import activation_body, create_license
from tests.integration.servers import own_redis_server

HEAD_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 1.5
HALF_HEAD = b"POST /v1/activations HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"


@contextlib.asynccontextmanager
async def _serving(api: PublicApi) -> AsyncIterator[int]:
    """`api`'s server on a free port, as `activation-server` runs it; the port."""
    runner = web.ServerRunner(api.server())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _api(resources: Resources, **settings: Any) -> PublicApi:
    configured = dataclasses.replace(resources.settings, **settings)
    return public_api(dataclasses.replace(resources, settings=configured))


UNKNOWN_KEY_BODY = orjson.dumps(activation_body("AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"))


def _request(body: bytes = UNKNOWN_KEY_BODY) -> bytes:
    """A whole activation request (of a key nobody holds: 200 NOT_FOUND)."""
    return HALF_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closes the connection (reads everything it sends)."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), limit):
        pass
    return time.monotonic() - started


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@pytest.fixture
def timed_api(resources: Resources) -> PublicApi:
    """Head deadline 0.5 s, keep-alive 1.5 s: short, and apart, so each timer can be seen."""
    return _api(
        resources,
        request_head_timeout_seconds=HEAD_TIMEOUT,
        keepalive_timeout_seconds=KEEPALIVE_TIMEOUT,
    )


async def test_a_half_sent_head_is_closed_at_the_head_deadline(timed_api: PublicApi) -> None:
    async with _serving(timed_api) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_HEAD)
        elapsed = await _closed_after(reader, 5)
        writer.close()
    assert HEAD_TIMEOUT * 0.8 <= elapsed < KEEPALIVE_TIMEOUT, elapsed


async def test_a_head_trickled_byte_by_byte_is_closed_at_the_head_deadline(
    timed_api: PublicApi,
) -> None:
    """Bytes that keep coming do not extend the deadline (slowloris)."""
    async with _serving(timed_api) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        sent = 0
        with contextlib.suppress(ConnectionError):
            for byte in HALF_HEAD:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.05)
                if reader.at_eof() or time.monotonic() - started > 5:
                    break
        elapsed = await _closed_after(reader, 5) + (time.monotonic() - started)
        writer.close()
    assert sent < len(HALF_HEAD), "the whole trickled head was taken"
    assert time.monotonic() - started < KEEPALIVE_TIMEOUT + 1, elapsed


async def test_after_an_answer_a_half_head_is_closed_at_the_head_deadline(
    timed_api: PublicApi,
) -> None:
    """A connection kept alive gets the head deadline for its next request, not the longer
    keep-alive allowance."""
    async with _serving(timed_api) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request())
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(KEEPALIVE_TIMEOUT * 0.5)  # idle, but within keep-alive
        writer.write(HALF_HEAD)
        elapsed = await _closed_after(reader, 5)
        writer.close()
    assert HEAD_TIMEOUT * 0.8 <= elapsed < KEEPALIVE_TIMEOUT * 0.5 + 0.2, elapsed


async def test_an_idle_keep_alive_connection_closes_after_the_keep_alive_timeout(
    timed_api: PublicApi,
) -> None:
    """Idle is not slow: the head deadline (0.5 s) leaves it alone, keep-alive (1.5 s) ends it."""
    async with _serving(timed_api) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request())
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
        elapsed = await _closed_after(reader, 10)
        writer.close()
    assert KEEPALIVE_TIMEOUT * 0.8 <= elapsed < KEEPALIVE_TIMEOUT + 1, elapsed


async def test_a_head_in_parts_within_the_deadline_and_a_slow_body_are_answered(
    timed_api: PublicApi,
) -> None:
    """The deadline is the head's: a head in two segments in time is served, and once it is
    in, the body has its own bound (5 s, then 408) — a body slower than the head deadline is
    still answered."""
    body = UNKNOWN_KEY_BODY
    head = HALF_HEAD + b"Content-Length: %d\r\n\r\n" % len(body)
    async with _serving(timed_api) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head[:20])
        await asyncio.sleep(HEAD_TIMEOUT * 0.5)
        writer.write(head[20:])
        await asyncio.sleep(HEAD_TIMEOUT * 1.6)
        writer.write(body)
        answer = await _answer(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer


async def test_the_admin_port_has_the_head_deadline_too(resources: Resources) -> None:
    """`ProblemAppRunner` (admin API and console, as `activation-server` starts them)."""
    runner = ProblemAppRunner(
        create_admin_app(resources), access_log=None, head_timeout=HEAD_TIMEOUT
    )
    served = await runner.setup()
    site = web.TCPSite(served, "127.0.0.1", 0)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses[0][1])
        writer.write(b"GET /admin/v1/audit HTTP/1.1\r\nHost: admin\r\n")
        elapsed = await _closed_after(reader, 5)
        writer.close()
    finally:
        await runner.cleanup()
    assert HEAD_TIMEOUT * 0.8 <= elapsed < HEAD_TIMEOUT + 1, elapsed


# --- MAX_INFLIGHT ---------------------------------------------------------------------------

LIMIT = 5
BURST = 40
PAUSE_MS = 800  # under the lean client's stuck-connection watchdog (2 s timeout)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    with own_redis_server(tmp_path / "redis") as port:
        yield f"redis://127.0.0.1:{port}/0"


async def test_beyond_max_inflight_activations_are_shed_with_a_jittered_retry_after(
    settings: Settings, own_redis: str, aiohttp_client: Any, admin_headers: dict[str, str]
) -> None:
    configured = dataclasses.replace(
        settings,
        redis_url=own_redis,
        max_inflight=LIMIT,
        test_clock=False,  # an activation's only Redis call is the script's
    )
    await _clean(configured)
    pauser = aioredis.Redis.from_url(own_redis)
    try:
        async with open_resources(configured) as resources:
            admin = await aiohttp_client(create_admin_app(resources))
            key = str((await create_license(admin, admin_headers))["key"])
            api = public_api(resources)
            async with _serving(api) as port, aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/v1/activations"

                async def post(number: int) -> tuple[int, str | None, bytes]:
                    body = activation_body(key, f"server-{number % 2}")
                    async with session.post(url, json=body) as response:
                        return (
                            response.status,
                            response.headers.get("Retry-After"),
                            await response.read(),
                        )

                assert (await post(0))[0] == 200  # the license is cached now
                await pauser.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
                started = time.monotonic()
                results = await asyncio.gather(*(post(n) for n in range(BURST)))
                took = time.monotonic() - started
                after = await post(0)
                shed_metric = resources.metrics.registry.get_sample_value(
                    "activations_shed_total", {"reason": "inflight"}
                )
    finally:
        await pauser.aclose()
    statuses = Counter(status for status, _, _ in results)
    shed = [(retry_after, raw) for status, retry_after, raw in results if status == 503]
    assert set(statuses) <= {200, 503} and statuses[200] >= LIMIT, (statuses, took)
    assert len(shed) >= BURST - 2 * LIMIT, (statuses, took)
    assert shed_metric == len(shed), (shed_metric, statuses)
    retry_afters = [int(retry_after or "0") for retry_after, _ in shed]
    assert all(1 <= seconds <= 5 for seconds in retry_afters), retry_afters
    assert len(set(retry_afters)) > 1, retry_afters  # jittered, not one value for all
    assert all(orjson.loads(raw)["status"] == 503 for _, raw in shed)
    assert took >= PAUSE_MS / 1000 * 0.8, took  # the admitted ones did wait for Redis
    assert after[0] == 200, after  # and the process serves again at once
    assert api.inflight == 0


async def test_an_activation_that_waited_past_max_queue_delay_is_shed_not_answered_late(
    settings: Settings, own_redis: str, aiohttp_client: Any, admin_headers: dict[str, str]
) -> None:
    """MAX_QUEUE_DELAY_MS (README, configuration): two activations arrive together, pipelined
    on one connection, while Redis is paused for PAUSE_MS; the first waits for Redis and is
    answered 200, the second's handler starts only after that, PAUSE_MS after its bytes
    arrived, over the 100 ms allowed: 503 with Retry-After, counted as `queued`."""
    configured = dataclasses.replace(
        settings, redis_url=own_redis, max_queue_delay_ms=100, test_clock=False
    )
    await _clean(configured)
    pauser = aioredis.Redis.from_url(own_redis)
    try:
        async with open_resources(configured) as resources:
            admin = await aiohttp_client(create_admin_app(resources))
            key = str((await create_license(admin, admin_headers))["key"])
            first, second = (orjson.dumps(activation_body(key, f"server-{n}")) for n in (1, 2))
            async with _serving(public_api(resources)) as port:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_request(first))  # the license is cached after this one
                assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
                await pauser.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
                writer.write(_request(first) + _request(second))
                answers = [await _answer(reader), await _answer(reader)]
                writer.write(_request(second))  # on its own, not waiting: served
                alone = await _answer(reader)
                writer.close()
                registry = resources.metrics.registry
                shed = {
                    reason: registry.get_sample_value("activations_shed_total", {"reason": reason})
                    for reason in ("queued", "inflight")
                }
    finally:
        await pauser.aclose()
    heads = [answer.split(b"\r\n\r\n", 1)[0].decode() for answer in answers]
    assert heads[0].startswith("HTTP/1.1 200"), heads
    assert heads[1].startswith("HTTP/1.1 503"), heads
    retry_after = next(
        line.split(":", 1)[1].strip()
        for line in heads[1].split("\r\n")
        if line.lower().startswith("retry-after:")
    )
    assert 1 <= int(retry_after) <= 5, heads[1]
    assert orjson.loads(answers[1].split(b"\r\n\r\n", 1)[1])["status"] == 503
    assert alone.startswith(b"HTTP/1.1 200"), alone
    assert shed == {"queued": 1, "inflight": 0}, shed
