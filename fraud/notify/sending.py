"""Delivering the outbox (SPEC §7), apart from the pass that decides what to send.

One loop per channel leases due rows (`outbox.claim`) and sends each in its own task: at most
`concurrency` sends of a channel at once, each cut off after the channel's `timeout`. A hung
mail server therefore holds at most `concurrency` e-mails for `timeout` seconds and nothing
else: not the webhooks, not ingestion, not the escalation pass, not /healthz.

- `OutboxSender.run(clock, stopping)`: the worker's loop mode; when `stopping` is set the loops
  take no new rows and wait for the sends in hand, each bounded by its timeout.
- `OutboxSender.send_all_due(clock)`: everything due now (`fraud-worker --once`, tests), then
  return; a failed row is rescheduled by its backoff, so this ends.
- `send_due(pool, senders, now)`: the same at a fixed `now`.

The lease must outlast a send (connect included, the timeout bounds both) and its record, so a
live worker never loses its row to another: `SendOptions` refuses a lease shorter than the
longest timeout plus `LEASE_MARGIN`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

import asyncpg

from activation.clock import Clock, FixedClock
from activation.store.redis_store import StoreUnavailable
from fraud.notify.model import Channel, Sender, SendReport
from fraud.notify.outbox import DEFAULT_LEASE, Claimed, claim, mark_failed, mark_sent

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 30.0
DEFAULT_WEBHOOK_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 8
LEASE_MARGIN = timedelta(seconds=5)  # recording a send: one short UPDATE
POLL_SECONDS = 0.5
# The outbox's own failures (PostgreSQL away): the loop waits and tries again, never ends.
RECORD_FAILURES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, StoreUnavailable)

Event = Literal["sent", "retried", "dead", "resent"]
OnEvent = Callable[[Channel, Event], None]


@runtime_checkable
class Closable(Protocol):
    async def close(self) -> None: ...


def _ignore(channel: Channel, event: Event) -> None:
    return None


class ChannelLoop:
    """Leases and sends the due rows of one channel."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: Channel,
        sender: Sender,
        *,
        concurrency: int,
        timeout: float,
        lease: timedelta,
        max_attempts: int,
        batch: int,
        on_event: OnEvent,
    ) -> None:
        self._pool = pool
        self._channel = channel
        self._sender = sender
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        self._lease = lease
        self._max_attempts = max_attempts
        self._batch = max(1, batch)
        self._on_event = on_event

    async def run(
        self, clock: Clock, stopping: asyncio.Event, report: SendReport, *, until_idle: bool
    ) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        stop = asyncio.create_task(stopping.wait())
        try:
            while not stopping.is_set():
                free = self._concurrency - len(in_flight)
                claimed: list[Claimed] = []
                # Claim when half the slots are free: one statement leases a handful of rows.
                if free >= max(1, self._concurrency // 2) or not in_flight:
                    try:
                        now = await clock.now()
                        claimed = await claim(
                            self._pool, self._channel, now, min(free, self._batch), self._lease
                        )
                    except RECORD_FAILURES as error:
                        log.warning("outbox %s: claim failed, retrying: %r", self._channel, error)
                    for row in claimed:
                        task = asyncio.create_task(self._deliver(row, now, report))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                if until_idle and not claimed and not in_flight:
                    return
                saturated = bool(claimed) and len(claimed) == free
                await asyncio.wait(
                    {*in_flight, stop},
                    timeout=None if until_idle and in_flight else 0 if saturated else POLL_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            # Stopping takes no new rows; the sends in hand end within their timeout.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            stop.cancel()
            for task in in_flight:  # cancelled: nothing is recorded, the leases run out
                task.cancel()
            if isinstance(self._sender, Closable):  # idle connections kept for reuse
                await self._sender.close()

    async def _deliver(self, row: Claimed, now: datetime, report: SendReport) -> None:
        note = row.notification
        if row.resend:
            # An earlier claim ended without a record: the receiver may already have it.
            report.resent[self._channel] += 1
            self._on_event(self._channel, "resent")
            log.info("outbox %s: re-sending %s after a lost lease", self._channel, note.dedupe_key)
        try:
            async with asyncio.timeout(self._timeout):
                await self._sender.send(note)
        except Exception as error:  # any delivery failure is recorded, never raised
            await self._record_failure(row, error, now, report)
            return
        try:
            sent = await mark_sent(self._pool, row, now)
        except RECORD_FAILURES as error:  # the lease runs out: sent again, counted as resent
            log.warning("outbox %s: could not mark %d sent: %r", self._channel, note.id, error)
            return
        if sent:
            report.count(self._channel, "sent")
            self._on_event(self._channel, "sent")

    async def _record_failure(
        self, row: Claimed, error: Exception, now: datetime, report: SendReport
    ) -> None:
        if isinstance(error, TimeoutError):
            error = TimeoutError(f"no answer within {self._timeout:g} s")
        try:
            outcome = await mark_failed(
                self._pool, row, error, now, max_attempts=self._max_attempts
            )
        except RECORD_FAILURES as failure:
            log.warning("outbox %s: could not record a failure: %r", self._channel, failure)
            return
        if outcome is not None:
            report.count(self._channel, outcome)
            self._on_event(self._channel, outcome)


@dataclass(frozen=True)
class SendOptions:
    """How the outbox sends: per channel `concurrency` sends at once, each cut off after its
    channel's timeout; rows leased for `lease` (wall clock), `batch` per statement."""

    concurrency: int = DEFAULT_CONCURRENCY
    email_timeout: float = DEFAULT_TIMEOUT
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    lease: timedelta = DEFAULT_LEASE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    batch: int = 100

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"send concurrency must be at least 1, got {self.concurrency}")
        if min(self.email_timeout, self.webhook_timeout) <= 0:
            raise ValueError("send timeouts must be positive")
        if self.lease < timedelta(seconds=self.longest_timeout) + LEASE_MARGIN:
            raise ValueError(
                f"the outbox lease ({self.lease.total_seconds():g} s) must be at least the "
                f"longest send timeout ({self.longest_timeout:g} s) plus "
                f"{LEASE_MARGIN.total_seconds():g} s"
            )

    @property
    def longest_timeout(self) -> float:
        return max(self.email_timeout, self.webhook_timeout)

    def timeout(self, channel: Channel) -> float:
        return self.email_timeout if channel is Channel.EMAIL else self.webhook_timeout


class OutboxSender:
    """The channels' loops together; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        senders: Mapping[Channel, Sender],
        *,
        options: SendOptions | None = None,
        on_event: OnEvent = _ignore,
    ) -> None:
        options = options or SendOptions()
        self.options = options
        self._loops = [
            ChannelLoop(
                pool,
                channel,
                sender,
                concurrency=options.concurrency,
                timeout=options.timeout(channel),
                lease=options.lease,
                max_attempts=options.max_attempts,
                batch=options.batch,
                on_event=on_event,
            )
            for channel, sender in senders.items()
        ]

    async def run(self, clock: Clock, stopping: asyncio.Event) -> SendReport:
        """Until `stopping` is set (at once when no channel is configured)."""
        report = SendReport()
        await asyncio.gather(
            stopping.wait(),
            *(loop.run(clock, stopping, report, until_idle=False) for loop in self._loops),
        )
        return report

    async def send_all_due(self, clock: Clock) -> SendReport:
        report = SendReport()
        never = asyncio.Event()
        await asyncio.gather(
            *(loop.run(clock, never, report, until_idle=True) for loop in self._loops)
        )
        return report


async def send_due(
    pool: asyncpg.Pool,
    senders: Mapping[Channel, Sender],
    now: datetime,
    *,
    batch: int = 100,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    lease: timedelta = DEFAULT_LEASE,
    concurrency: int = DEFAULT_CONCURRENCY,
    send_timeout: float = DEFAULT_TIMEOUT,
) -> SendReport:
    """Send every message due at `now` once (`batch`: rows leased per statement); never
    raises for a failed delivery."""
    options = SendOptions(
        concurrency=concurrency,
        email_timeout=send_timeout,
        webhook_timeout=send_timeout,
        lease=lease,
        max_attempts=max_attempts,
        batch=batch,
    )
    return await OutboxSender(pool, senders, options=options).send_all_due(FixedClock(now))
