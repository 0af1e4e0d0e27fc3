"""`fraud-worker`: the worker process (SPEC §10), its composition root.

    fraud-worker            loop until SIGTERM/SIGINT (finishing the pass in hand)
    fraud-worker --once     one pass of every duty, then exit (tests, cron)
    fraud-worker replay-dead-letters
                            ingest the dead letters that can be stored now (after a fix),
                            remove them, print the counts (fraud/dead_letters.py)

Serves `/healthz` (503 when no pass finished for a minute) and `/metrics` on
`--port` (default WORKER_PORT or 8082). Channels are configured by SMTP_URL / MAIL_FROM and
FRAUD_WEBHOOK_URL / FRAUD_WEBHOOK_SECRET; ESCALATION_LADDER (e.g.
`30:grace_over,37:reminder,44:disable`) overrides the default ladder. INGEST_BATCH_SIZE
(entries read per stream per batch, default 1000) and INGEST_MIN_IDLE_MS (how long an entry must
sit unacknowledged on a consumer before another consumer takes it over, default 30000: longer
than the slowest normal batch) tune the stream ingest. Sending: SEND_CONCURRENCY (sends at once
per channel, default 8), SMTP_TIMEOUT_SECONDS (30) and WEBHOOK_TIMEOUT_SECONDS (10) (one send,
connecting included), OUTBOX_LEASE_SECONDS (120; at least the longest timeout + 5). On SIGTERM
the worker finishes its pass and the sends in hand: it exits within the longest send timeout
plus the pass in hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from activation.config import Settings, SettingsError, warn_unsafe_modes
from activation.logs import configure_logging
from activation.runtime import open_resources
from activation.web.expect import add_routes
from activation.web.wire import ProblemAppRunner
from fraud.case_opening import CaseOpener
from fraud.dead_letters import replay_dead_letters
from fraud.escalation import Ladder, ladder_from_settings
from fraud.notify.email import SmtpSender
from fraud.notify.outbox import Channel, Sender
from fraud.notify.sending import SendOptions
from fraud.notify.webhook import WebhookSender
from fraud.worker import Worker
from metrics import WorkerMetrics

log = logging.getLogger("fraud")

HEALTHY_WITHIN_SECONDS = 60.0


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging()
    parser = argparse.ArgumentParser(prog="fraud-worker", description=__doc__)
    parser.add_argument("command", nargs="?", choices=("run", "replay-dead-letters"), default="run")
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    parser.add_argument("--port", type=int, default=None, help="health/metrics port")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        send_options(settings)
        escalation_ladder(settings)
    except SettingsError as error:
        sys.exit(f"configuration error: {error}")
    configure_logging(settings.log_format, settings.log_level)
    warn_unsafe_modes(settings)
    if settings.database_url is None or settings.redis_url is None:
        sys.exit("DATABASE_URL and REDIS_URL must be set")
    port = args.port if args.port is not None else settings.worker_port
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        if args.command == "replay-dead-letters":
            runner.run(replay(settings))
        else:
            runner.run(run(settings, once=args.once, port=port))


@contextlib.asynccontextmanager
async def build_worker(settings: Settings) -> AsyncIterator[Worker]:
    ladder = escalation_ladder(settings)
    async with (
        open_resources(settings, signing=False) as resources,
        aiohttp.ClientSession() as session,
    ):
        sending = send_options(settings)
        senders = build_senders(settings, session, sending)
        try:
            yield Worker(
                resources,
                ladder,
                senders,
                WorkerMetrics(),
                batch_size=settings.ingest_batch_size,
                min_idle_ms=settings.ingest_min_idle_ms,
                sending=sending,
            )
        finally:
            email = senders.get(Channel.EMAIL)
            if isinstance(email, SmtpSender):
                await email.close()


async def replay(settings: Settings) -> None:
    """Replay the dead letters, opening what they show as the worker would (cases, leaks)."""
    ladder = escalation_ladder(settings)
    async with open_resources(settings, signing=False) as resources:
        opener = CaseOpener(
            resources.redis, resources.layout, ladder, leak_threshold=settings.leak_threshold
        )
        now = await resources.clock.now()
        report = await replay_dead_letters(resources.pool, functools.partial(opener.write, now=now))
    print(
        f"replayed {report.replayed} dead letters ({report.inserted} new events, "
        f"{report.replayed - report.inserted} stored already), {report.still_failing} still "
        f"refused, {report.cases_opened} cases opened",
        flush=True,
    )


def escalation_ladder(settings: Settings) -> Ladder:
    """The ladder of ESCALATION_LADDER and GRACE_DAYS (R14); a malformed one is refused."""
    try:
        return ladder_from_settings(settings.grace_days, settings.escalation_ladder)
    except ValueError as error:
        raise SettingsError(f"ESCALATION_LADDER: {error}") from None


def send_options(settings: Settings) -> SendOptions:
    """How the outbox sends, from SEND_CONCURRENCY, SMTP_TIMEOUT_SECONDS, WEBHOOK_TIMEOUT_SECONDS
    and OUTBOX_LEASE_SECONDS; a lease shorter than the longest timeout is refused."""
    try:
        return SendOptions(
            concurrency=settings.send_concurrency,
            email_timeout=settings.smtp_timeout_seconds,
            webhook_timeout=settings.webhook_timeout_seconds,
            lease=timedelta(seconds=settings.outbox_lease_seconds),
        )
    except ValueError as error:
        raise SettingsError(f"OUTBOX_LEASE_SECONDS: {error}") from None


def build_senders(
    settings: Settings, session: aiohttp.ClientSession, options: SendOptions | None = None
) -> dict[Channel, Sender]:
    """A channel without configuration keeps its outbox rows pending (sent once configured)."""
    options = options or SendOptions()
    senders: dict[Channel, Sender] = {}
    if settings.smtp_url:
        senders[Channel.EMAIL] = SmtpSender(
            settings.smtp_url, settings.mail_from, timeout=options.email_timeout
        )
    if settings.fraud_webhook_url and settings.fraud_webhook_secret:
        senders[Channel.WEBHOOK] = WebhookSender(
            settings.fraud_webhook_url,
            settings.fraud_webhook_secret,
            session,
            timeout=options.webhook_timeout,
        )
    return senders


async def run(settings: Settings, *, once: bool, port: int) -> None:
    async with build_worker(settings) as worker:
        if once:
            report = await worker.run_alone()
            print(
                f"ingested {report.ingested} events, opened {report.cases.opened} cases, "
                f"steps {report.cases.steps}, resolved {report.cases.resolved}",
                flush=True,
            )
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stopping.set)
        runner = ProblemAppRunner(health_app(worker), access_log=None)
        await web.TCPSite(await runner.setup(), settings.host, port).start()
        log.info("fraud worker running; health and metrics on http://%s:%d", settings.host, port)
        try:
            await worker.run_forever()
        finally:
            await runner.cleanup()


WORKER = web.AppKey("worker", Worker)


def health_app(worker: Worker) -> web.Application:
    app = web.Application()
    app[WORKER] = worker
    add_routes(app.router, [web.get("/healthz", _healthz), web.get("/metrics", _metrics)])
    return app


async def _healthz(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    age = time.time() - worker.last_pass_at
    healthy = age < HEALTHY_WITHIN_SECONDS
    return web.json_response(
        {"status": "ok" if healthy else "stale", "seconds_since_pass": round(age, 1)},
        status=200 if healthy else 503,
    )


async def _metrics(request: web.Request) -> web.Response:
    output = generate_latest(request.app[WORKER].metrics.registry)
    return web.Response(body=output, headers={"Content-Type": CONTENT_TYPE_LATEST})
