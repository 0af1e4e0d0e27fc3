"""`activation-server`: serve the public and admin APIs, or run the migrations (SPEC §10).

    activation-server [serve] [--host H] [--public-port P] [--admin-port A] [--processes N]
    activation-server migrate
    activation-server rebuild-cache
    activation-server keys new [--out FILE]

With `--processes N` the parent starts N server processes that share both ports
(SO_REUSEPORT: the kernel spreads connections) and stops them on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from activation.config import Settings, SettingsError, warn_unsafe_modes
from activation.logs import configure_logging
from activation.store.migrate import migrate

if TYPE_CHECKING:
    from activation.api.app import PublicApi
    from activation.runtime import Resources
    from activation.web.wire import ProblemAppRunner

log = logging.getLogger("activation")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activation-server", description=__doc__)
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", "rebuild-cache"]
    )
    parser.add_argument("--host", help="address to bind (default HOST or 127.0.0.1)")
    parser.add_argument("--public-port", type=int, help="public API port (default 8080)")
    parser.add_argument("--admin-port", type=int, help="admin API and console port (default 8081)")
    parser.add_argument("--processes", type=int, default=1, help="server processes (default 1)")
    return parser


def server_main(argv: Sequence[str] | None = None) -> None:
    configure_logging()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["keys"]:
        keys_main(arguments[1:])
        return
    args = _parser().parse_args(arguments)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        sys.exit(f"configuration error: {error}")
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.public_port is not None:
        overrides["public_port"] = args.public_port
    if args.admin_port is not None:
        overrides["admin_port"] = args.admin_port
    settings = settings.with_overrides(**overrides)
    configure_logging(settings.log_format, settings.log_level)
    warn_unsafe_modes(settings)
    if settings.database_url is None or settings.redis_url is None:
        sys.exit("DATABASE_URL and REDIS_URL must be set (or use activation-dev)")
    if args.command == "migrate":
        applied = asyncio.run(run_migrations(settings.database_url))
        print(f"applied migrations: {applied or 'none (up to date)'}")
        return
    if args.command == "rebuild-cache":
        count = asyncio.run(_rebuild_cache(settings))
        print(f"rebuilt the Redis cache of {count} licenses")
        return
    if args.processes <= 1:
        serve(settings)
        return
    run_processes(settings, args.processes)


def keys_main(argv: Sequence[str]) -> None:
    """`keys new [--out FILE]`: a new signing key file (mode 0600), its id and public key
    printed; no settings needed (the rotation steps are in the README)."""
    from pathlib import Path

    from activation.api.keyring import write_private_key

    parser = argparse.ArgumentParser(prog="activation-server keys")
    parser.add_argument("action", choices=["new"])
    parser.add_argument("--out", help="the new key's file (default signing-key-<id>.pem)")
    args = parser.parse_args(argv)
    try:
        path, key = write_private_key(Path(args.out) if args.out else None)
    except FileExistsError as error:
        sys.exit(f"{error.filename} exists already; not replaced")
    document = key.document(current=False)
    print(f"file: {path}")
    print(f"id: {key.id}")
    print(f"public_key: {document['public_key']}")


async def run_migrations(database_url: str) -> list[int]:
    connection = await asyncpg.connect(database_url)
    try:
        return await migrate(connection)
    finally:
        await connection.close()


async def _rebuild_cache(settings: Settings) -> int:
    from activation.runtime import open_resources
    from activation.store.cache_write import rebuild_cache

    async with open_resources(settings) as resources:
        return await rebuild_cache(resources.pool, resources.store)


Companion = Callable[["Resources", asyncio.Event], Coroutine[Any, Any, None]]


def serve(
    settings: Settings, *, reuse_port: bool = False, companion: Companion | None = None
) -> None:
    """Run both apps in this process until SIGTERM/SIGINT; `companion` (activation-dev's
    worker) runs beside them on the same resources until the stop event is set."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(settings, reuse_port=reuse_port, companion=companion))


async def _serve(settings: Settings, *, reuse_port: bool, companion: Companion | None) -> None:
    from activation.runtime import open_resources, public_api
    from metrics.tally import fold_periodically

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(settings) as resources:
        public = public_api(resources)
        async with fold_periodically(resources.metrics.registry):
            runners = await _start_sites(settings, resources, public, reuse_port)
            # Objects alive after start-up live for the whole process: keep the collector off
            # them.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 50, 100)
            log.info(
                "serving public API on http://%s:%d and admin on http://%s:%d",
                settings.host,
                settings.public_port,
                settings.host,
                settings.admin_port,
            )
            companion_task = asyncio.create_task(companion(resources, stop)) if companion else None
            await stop.wait()
            if companion_task is not None:
                await companion_task
            for runner in runners:
                await runner.cleanup()


async def _start_sites(
    settings: Settings, resources: Resources, public: PublicApi, reuse_port: bool
) -> list[web.ServerRunner | ProblemAppRunner]:
    """The public API on aiohttp's low-level server (see api/app.py), the admin API and
    console on an Application."""
    from activation.web.wire import ProblemAppRunner
    from fraud.admin_app import create_admin_app

    public_runner = web.ServerRunner(public.server())
    await public_runner.setup()
    admin = ProblemAppRunner(
        create_admin_app(resources),
        access_log=None,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        head_timeout=settings.request_head_timeout_seconds,
    )
    runners: list[web.ServerRunner | ProblemAppRunner] = [public_runner, admin]
    sites = ((public_runner, settings.public_port), (await admin.setup(), settings.admin_port))
    for runner, port in sites:
        site = web.TCPSite(runner, settings.host, port, reuse_port=reuse_port, backlog=1024)
        await site.start()
    return runners


def run_processes(settings: Settings, count: int) -> None:
    """The children share one fresh metrics directory (prometheus-client's multiprocess
    mode, see metrics/): whichever child answers `/metrics` reports the sum of all of them."""
    from metrics import MULTIPROC_ENV, mark_dead

    metrics_dir = tempfile.mkdtemp(prefix="activation-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # before spawning: the children inherit it
    try:
        supervise(_child, (settings,), count, "activation", on_exit=mark_dead)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def supervise(
    target: Callable[..., None],
    args: tuple[object, ...],
    count: int,
    name: str,
    on_exit: Callable[[int], None] | None = None,
) -> None:
    """Run `count` spawned processes of `target(*args)` until they end; SIGTERM/SIGINT to
    this process terminates them all. `on_exit(pid)` runs as each one is reaped."""
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=target, args=args, name=f"{name}-{n}") for n in range(count)]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
        if on_exit is not None and child.pid is not None:
            on_exit(child.pid)


def _child(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level)
    serve(settings, reuse_port=True)
