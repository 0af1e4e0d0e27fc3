"""The bare endpoint of the benchmark: aiohttp's low-level server answering a constant JSON.

    python bench/bare.py PORT

One `POST /v1/activations` that reads the request body (any real endpoint must) and answers a
small constant JSON body; nothing else: no parsing, no Redis, no signature. It runs the way
the activation server's public API runs (aiohttp's low-level `web.Server` on uvloop, no
access log, the same collector settings), so activations/s over its requests/s is what the
activation's own work costs on this stack. `GET /readyz` answers 200 for the harness.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable

import uvloop
from aiohttp import web

BODY = b'{"valid":true,"code":"VALID"}'
READY = b'{"status":"ok"}'
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


async def handle(request: web.BaseRequest) -> web.Response:
    if request.path == "/readyz":
        return web.Response(body=READY, content_type="application/json")
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def serve_until_stopped(handler: Handler, port: int) -> None:
    """Serve `handler` on aiohttp's low-level server at 127.0.0.1:`port` until SIGTERM/SIGINT
    (bench/floor.py serves so too)."""
    server = web.Server(handler, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.ServerRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    # What the activation server does after start-up, so the comparison is like for like.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    port = int(sys.argv[1])
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_until_stopped(handle, port))


if __name__ == "__main__":
    main()
