"""The baseline of the benchmark: a bare aiohttp + uvloop endpoint on the same machine.

One `POST /v1/activations` route that reads the request body (any real endpoint must) and
answers a constant small JSON body. Nothing else: no parsing, no Redis, no signature. The
activation server's throughput is reported as a ratio of this one's (SPEC §9).

    python bench/bare.py --port 18080 [--host 127.0.0.1] [--processes N] [--low-level]

`--low-level` serves the same route on aiohttp's low-level `web.Server` (what the activation
server's public API runs on) instead of a `web.Application`: the benchmark reports the ratio
against both, so neither hides the other. With `--processes N` it starts N processes sharing
the port (SO_REUSEPORT), like `activation-server serve --processes N`, and stops them on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from collections.abc import Sequence

from aiohttp import web

from activation.cli import supervise

BODY = b'{"valid":true,"code":"VALID"}'


async def handle(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def health(request: web.BaseRequest) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def handle_low_level(request: web.BaseRequest) -> web.StreamResponse:
    if request.path == "/readyz":
        return await health(request)
    return await handle(request)


async def serve_runner(runner: web.BaseRunner, host: str, port: int, reuse_port: bool) -> None:
    """Serve `runner` on `host:port` until SIGTERM/SIGINT (bench/floor.py serves the same way)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
    await site.start()
    # Same start-up GC treatment as the activation server, so the comparison is like for like.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    await stop.wait()
    await runner.cleanup()


async def _serve(host: str, port: int, reuse_port: bool, low_level: bool) -> None:
    runner: web.BaseRunner
    if low_level:
        runner = web.ServerRunner(web.Server(handle_low_level, access_log=None))
    else:
        app = web.Application()
        app.router.add_post("/v1/activations", handle)
        app.router.add_get("/readyz", health)
        runner = web.AppRunner(app, access_log=None)
    await serve_runner(runner, host, port, reuse_port)


def serve(host: str, port: int, reuse_port: bool, low_level: bool) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(host, port, reuse_port, low_level))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--low-level", action="store_true", help="web.Server, no Application")
    args = parser.parse_args(argv)
    if args.processes <= 1:
        serve(args.host, args.port, reuse_port=False, low_level=args.low_level)
        return
    # The project's supervisor only starts and stops the processes; the endpoint is bare.
    supervise(serve, (args.host, args.port, True, args.low_level), args.processes, "bare")


if __name__ == "__main__":
    main()
