"""The fraud worker: a thin loop around one testable pass.

`Worker.run_once()` reads the clock once and does every duty in order: drain the activation
streams into PostgreSQL, open cases for keys over their limit and flag leaks, evaluate open
cases (escalation, auto-resolution), M&S duties; then it sends every notification due.
`run_forever()` repeats the pass until SIGTERM, while the outbox's own loops send apart from it
(fraud/notify/sending.py): a hung mail server or webhook receiver delays only its channel. On
SIGTERM the pass in hand finishes, the senders take no new rows and finish the sends in hand
(each bounded by its channel's timeout), then it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from redis.exceptions import RedisClusterException, RedisError

from activation.runtime import Resources
from activation.store.redis_store import StoreUnavailable
from fraud import retention
from fraud.cache_sync import CacheSync
from fraud.case_opening import CaseOpener
from fraud.case_runner import CaseReport, CaseRunner
from fraud.escalation import Ladder
from fraud.ingest import IngestReport, StreamIngest, is_transient
from fraud.ms_duties import DutyReport, MsDuties
from fraud.notify.outbox import Channel, Sender, SendReport
from fraud.notify.sending import Event, OutboxSender, SendOptions
from metrics import WorkerMetrics

log = logging.getLogger(__name__)

# An outage of Redis or PostgreSQL fails one pass, never the loop: nothing was acknowledged that
# was not committed, so the next pass picks up where this one stopped.
PASS_FAILURES = (
    OSError,
    RedisError,
    RedisClusterException,
    StoreUnavailable,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


# Failed passes are retried after 0.5, 1, 2, 4, then every 5 s: an outage costs little CPU and
# ingestion resumes within 5 s of the dependency's return.
MAX_RETRY_PAUSE_S = 5.0


def retry_pause(failures: int, first: float) -> float:
    """Seconds to wait after the `failures`-th failed pass in a row (≥ 1)."""
    return float(min(first * 2 ** (failures - 1), MAX_RETRY_PAUSE_S))


@dataclass
class PassReport:
    ingested: int = 0
    reclaimed: int = 0
    dead: int = 0
    cases: CaseReport = field(default_factory=CaseReport)
    notifications: SendReport | None = None
    duties: DutyReport = field(default_factory=DutyReport)


class Worker:
    def __init__(
        self,
        resources: Resources,
        ladder: Ladder,
        senders: Mapping[Channel, Sender],
        metrics: WorkerMetrics,
        *,
        consumer: str | None = None,
        batch_size: int = 1000,
        min_idle_ms: int = 30_000,
        sending: SendOptions | None = None,
    ) -> None:
        settings = resources.settings
        self.resources = resources
        self.metrics = metrics
        self.ingest = StreamIngest(
            resources.redis,
            resources.pool,
            resources.layout.streams(),
            consumer or f"{socket.gethostname()}-{os.getpid()}",
            batch_size=batch_size,
            min_idle_ms=min_idle_ms,
            cluster=settings.redis_cluster,
        )
        self.cases = CaseRunner(
            resources.pool,
            resources.redis,
            resources.layout,
            resources.store,
            ladder,
            active_window=settings.active_window,
        )
        self.opener = CaseOpener(
            resources.redis,
            resources.layout,
            ladder,
            leak_threshold=settings.leak_threshold,
        )
        self.duties = MsDuties(resources.pool, resources.store)
        self.cache_sync = CacheSync(resources.pool, resources.store)
        self.senders = senders
        self.outbox = OutboxSender(
            resources.pool, senders, options=sending or SendOptions(), on_event=self._sent
        )
        self.stopping = asyncio.Event()
        self.last_pass_at = 0.0

    async def drain_streams(self, report: PassReport) -> None:
        """Store batches until the streams are empty, reading and parsing the next batch while
        PostgreSQL commits the current one (acknowledged only after its commit)."""
        now = await self.resources.clock.now()
        # Cases and leak flags are written in each batch's own transaction (R13, R16).
        opens = functools.partial(self.opener.write, now=now)
        upcoming = asyncio.create_task(self.ingest.fetch(reclaim=True))
        try:
            while True:
                current = await upcoming
                self._count_resets(current.resets)
                if current.resets:  # Redis lost its data: the case summaries with it
                    await self.cases.recheck_all()
                if current.empty:
                    return
                storing = asyncio.create_task(self.ingest.store(current, opens))
                upcoming = asyncio.create_task(self.ingest.fetch(reclaim=False))
                batch: IngestReport = await storing
                self._record(batch, report)
                report.cases.opened += batch.opened.cases
                report.cases.leaks += batch.opened.leaks
                self.metrics.cases_opened.inc(batch.opened.cases)
        finally:
            if not upcoming.done():
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upcoming

    def _count_resets(self, resets: int) -> None:
        """Streams whose consumer group had vanished (Redis came back without its data)."""
        self.metrics.stream_resets.inc(resets)

    def _record(self, batch: IngestReport, report: PassReport) -> None:
        report.ingested += batch.inserted
        report.reclaimed += batch.reclaimed
        report.dead += batch.dead
        self.metrics.events_ingested.inc(batch.inserted)
        self.metrics.events_reclaimed.inc(batch.reclaimed)
        self.metrics.dead_letters.inc(batch.dead)
        if batch.reclaimed:
            log.info("reclaimed=%d entries from a stalled consumer, stored", batch.reclaimed)
        # A long drain is progress, not a stall: keep /healthz green batch by batch.
        self.last_pass_at = time.time()

    async def run_once(self, *, periodic: bool = True, send: bool = True) -> PassReport:
        """One pass. Ingest and the cache safety net run every pass; `periodic` adds the
        duties whose deadlines are hours or days apart (evaluating the cases due, M&S
        duties, the gauges), which the loop runs every few seconds, not every pass. `send`
        then sends everything due (the loop leaves that to its sender loops)."""
        started = time.perf_counter()
        report = PassReport()
        await self.drain_streams(report)
        await self.ingest.trim()  # every pass: the streams hold only what is not acknowledged
        resynced = await self.cache_sync.run_once()
        if resynced:
            log.info("re-wrote %d licenses into the Redis cache", resynced)
        now = await self.resources.clock.now()
        if periodic:
            await self._periodic(report, now)
        self.metrics.pass_duration.observe(time.perf_counter() - started)
        self.last_pass_at = time.time()
        self.metrics.last_pass.set(self.last_pass_at)
        if send:
            report.notifications = await self.outbox.send_all_due(self.resources.clock)
        return report

    async def run_alone(self) -> PassReport:
        """`fraud-worker --once`: one pass, then this consumer leaves the streams' group where
        it holds nothing, so a run a day (cron) does not leave a consumer a day behind."""
        report = await self.run_once()
        await self.ingest.leave()
        return report

    def _sent(self, channel: Channel, event: Event) -> None:
        if event == "resent":
            self.metrics.notifications_resent.labels(channel).inc()
        else:
            self.metrics.notifications.labels(channel, event).inc()

    async def _periodic(self, report: PassReport, now: datetime) -> None:
        evaluated = await self.cases.evaluate_due(now)
        report.cases.evaluated = evaluated.evaluated
        report.cases.resolved = evaluated.resolved
        report.cases.steps = evaluated.steps
        report.cases.disabled = evaluated.disabled
        for step, count in evaluated.steps.items():
            self.metrics.escalation_steps.labels(step).inc(count)
        self.metrics.keys_disabled.labels("fraud_escalation").inc(evaluated.disabled)
        report.duties = await self.duties.run(now)
        await retention.run(self.resources.pool, now, self.resources.settings)
        self.metrics.ms_reminders.inc(report.duties.reminders)
        await self._observe()

    async def _observe(self) -> None:
        waiting, pending = await self.ingest.lag()
        self.metrics.stream_lag.set(waiting)
        self.metrics.stream_pending.set(pending)
        async with self.resources.redis.pipeline(transaction=False) as pipe:
            for stream in self.resources.layout.streams():
                pipe.xlen(stream)
            lengths = await pipe.execute()
        self.metrics.stream_length.set(sum(lengths))
        rows = await self.resources.pool.fetch(
            "SELECT stage, count(*) AS n FROM fraud_cases GROUP BY stage"
        )
        counts = {row["stage"]: row["n"] for row in rows}
        for stage in ("grace", "overdue", "disabled", "resolved"):
            self.metrics.cases.labels(stage).set(counts.get(stage, 0))

    async def run_forever(
        self, idle_sleep: float = 0.5, forget_every: float = 10.0, periodic_every: float = 5.0
    ) -> None:
        sending = asyncio.create_task(self.outbox.run(self.resources.clock, self.stopping))
        sending.add_done_callback(self._sending_ended)
        try:
            await self._passes(idle_sleep, forget_every, periodic_every)
        finally:
            self.stopping.set()
            await sending
        log.info("worker stopped after finishing its pass and its sends in hand")

    def _sending_ended(self, sending: asyncio.Task[SendReport]) -> None:
        if self.stopping.is_set():
            return
        # A bug, not an outage (those are retried inside): stop, so the process restarts.
        error = None if sending.cancelled() else sending.exception()
        log.error("the outbox sender stopped unexpectedly: %r", error)
        self.stopping.set()

    async def _passes(self, idle_sleep: float, forget_every: float, periodic_every: float) -> None:
        last_forget = last_periodic = 0.0
        failures = 0
        while not self.stopping.is_set():
            pause = idle_sleep
            try:
                periodic = time.monotonic() - last_periodic >= periodic_every
                report = await self.run_once(periodic=periodic, send=False)
                if periodic:
                    last_periodic = time.monotonic()
                if time.monotonic() - last_forget > forget_every:
                    await self.ingest.forget_idle_consumers()
                    last_forget = time.monotonic()
                failures = 0
            except PASS_FAILURES as error:
                # Fail-closed per pass: nothing was acknowledged that was not committed. An
                # outage of any length only delays the events (fraud/ingest.py).
                failures += 1
                pause = retry_pause(failures, idle_sleep)
                log.warning(
                    "worker pass failed (%s), retrying in %.1f s: %r",
                    "outage" if is_transient(error) else "error",
                    pause,
                    error,
                )
                self.metrics.pass_failures.inc()
                report = PassReport()
            if report.ingested or report.reclaimed or report.dead:
                log.info(
                    "pass: ingested=%d reclaimed=%d dead=%d",
                    report.ingested,
                    report.reclaimed,
                    report.dead,
                )
            if report.ingested == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), pause)
        log.info("worker stopped after finishing its pass")
