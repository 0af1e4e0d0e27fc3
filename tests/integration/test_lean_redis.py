"""The lean hot-path connection: pipelining, NOSCRIPT reload, reconnects, stuck servers."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
import redis.asyncio as aioredis

from activation.store.lean_redis import (
    FLUSH_EVERY,
    LeanConnectionError,
    LeanRefusedError,
    LeanScriptClient,
)

ECHO = "return {KEYS[1], ARGV[1]}"


async def test_concurrent_calls_get_their_own_replies(server_urls: tuple[str, str]) -> None:
    client = LeanScriptClient(server_urls[1], ECHO)
    try:
        replies = await asyncio.gather(*(client.evalsha([f"key-{n}"], [n]) for n in range(500)))
        assert replies == [[f"key-{n}".encode(), str(n).encode()] for n in range(500)]
    finally:
        await client.aclose()


async def test_commands_of_one_pass_leave_in_groups_in_order(
    server_urls: tuple[str, str],
) -> None:
    """Within one event-loop pass every FLUSH_EVERY commands are written at once (Redis starts
    on them while more are queued); the rest leave at the end of the pass; replies in order."""
    client = LeanScriptClient(server_urls[1], ECHO)
    try:
        await client.call("PING")
        protocol = client._protocol
        assert protocol is not None
        count = 2 * FLUSH_EVERY + 3
        waiting = [protocol.send(hiredis.pack_command(("ECHO", str(n)))) for n in range(count)]
        assert len(protocol.outgoing) == 3  # the first two groups are on their way
        assert [await reply for reply in waiting] == [str(n).encode() for n in range(count)]
        assert protocol.outgoing == []
    finally:
        await client.aclose()


async def test_script_cache_flush_is_survived(server_urls: tuple[str, str]) -> None:
    client = LeanScriptClient(server_urls[1], ECHO)
    admin = aioredis.Redis.from_url(server_urls[1])
    try:
        assert await client.evalsha(["a"], ["1"]) == [b"a", b"1"]
        await admin.script_flush()
        assert await client.evalsha(["b"], ["2"]) == [b"b", b"2"]
    finally:
        await client.aclose()
        await admin.aclose()


async def test_reconnects_after_the_connection_is_killed(server_urls: tuple[str, str]) -> None:
    client = LeanScriptClient(server_urls[1], ECHO)
    admin = aioredis.Redis.from_url(server_urls[1])
    try:
        await client.evalsha(["a"], ["1"])
        # Kill exactly this client's connection (other suites may share the Redis).
        assert client._protocol is not None and client._protocol.transport is not None
        host, port = client._protocol.transport.get_extra_info("sockname")[:2]
        assert await admin.client_kill_filter(_type="normal", addr=f"{host}:{port}") == 1
        await asyncio.sleep(0.05)
        assert await client.evalsha(["c"], ["3"]) == [b"c", b"3"]
    finally:
        await client.aclose()
        await admin.aclose()


async def test_unreachable_redis_fails_fast() -> None:
    client = LeanScriptClient("redis://127.0.0.1:1/0", ECHO, timeout=0.5)
    with pytest.raises(OSError):
        await client.evalsha(["a"], ["1"])
    await client.aclose()


async def test_a_server_that_stops_answering_is_dropped() -> None:
    """A peer that accepts and then never replies: waiting callers fail within ~timeout."""

    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        line = await reader.read(65536)
        if b"SCRIPT" in line:  # answer the script load, then go silent
            writer.write(b"$40\r\n" + b"a" * 40 + b"\r\n")
            await writer.drain()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanScriptClient(f"redis://127.0.0.1:{port}/0", ECHO, timeout=0.4)
    try:
        with pytest.raises(LeanConnectionError):
            await asyncio.wait_for(client.evalsha(["a"], ["1"]), 5)
    finally:
        await client.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_connection_refused_during_set_up_is_closed() -> None:
    """A peer that refuses the script load (NOAUTH: Redis restarted with a password) and keeps
    its end open: every attempt is a LeanRefusedError (503) and closes its socket, and
    a set-up that times out closes it too."""
    closed: list[bool] = []

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if b"SCRIPT" in data and len(closed) < 3:
                writer.write(b"-NOAUTH Authentication required.\r\n")
                await writer.drain()
        closed.append(True)  # the client closed its end
        writer.close()

    server = await asyncio.start_server(refusing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanScriptClient(f"redis://127.0.0.1:{port}/0", ECHO, timeout=0.3)
    try:
        for _ in range(3):
            with pytest.raises(LeanRefusedError):
                await client.evalsha(["a"], ["1"])
        with pytest.raises(TimeoutError):  # the fourth gets no answer at all
            await client.evalsha(["a"], ["1"])
        for _ in range(50):
            if len(closed) == 4:
                break
            await asyncio.sleep(0.01)
        assert len(closed) == 4
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_in_flight_requests_are_bounded(server_urls: tuple[str, str]) -> None:
    client = LeanScriptClient(server_urls[1], ECHO, max_in_flight=10)
    try:
        await client.evalsha(["k"], ["connect first"])
        # All 50 are sent in one event-loop pass, before any reply can be read.
        results = await asyncio.gather(
            *(client.evalsha(["k"], [n]) for n in range(50)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, LeanConnectionError)]
        assert len(refused) == 40
        assert results[:10] == [[b"k", str(n).encode()] for n in range(10)]
    finally:
        await client.aclose()


def test_works_on_uvloop(server_urls: tuple[str, str]) -> None:
    """The servers run on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def scenario() -> list[object]:
        client = LeanScriptClient(server_urls[1], ECHO)
        try:
            return list(await asyncio.gather(*(client.evalsha(["u"], [n]) for n in range(20))))
        finally:
            await client.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        replies = runner.run(scenario())
    assert replies == [[b"u", str(n).encode()] for n in range(20)]
