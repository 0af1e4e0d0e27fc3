"""Fault 4: a mail server and a webhook receiver that accept connections and never answer
(SPEC §7: a failing channel never blocks the others or the state machine).

Two `fraud-worker` processes (3 s send timeouts) face 120 due messages (60 cases at their
grace end: an e-mail and a webhook each) on hung servers, while activations keep arriving and
the clock reaches the cases' reminder day. Evidence: every activation is in PostgreSQL within
5 s, /healthz answers 200 throughout, the 60 reminder steps run within one periodic interval,
SIGTERM stops a worker within its longest send timeout (plus margin, far inside the 90 s
grace), and once real servers answer on the same ports every message arrives exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from activation.clock import RedisTestClock
from activation.config import Settings
from activation.runtime import Resources
from tests.faults.workers import (
    DAY,
    Fleet,
    HungServer,
    fault_scale,
    open_cases,
    produce_activations,
    seed_licenses,
    servers_seen,
    worker_env,
)
from tests.integration.helpers import license_keys
from tests.integration.receivers import free_port, smtp_sink, webhook_sink

CASES = 60
WORKERS = 2
SEND_TIMEOUT = 3.0
HANG_SECONDS = 15.0
LAG_LIMIT = 5.0
STEP_LIMIT = 12.0  # the periodic interval (5 s) plus a pass, with margin
STOP_MARGIN = 5.0
GRACE = 90.0  # deploy/k8s worker terminationGracePeriodSeconds


@dataclass
class Watch:
    lags: list[float] = field(default_factory=list)
    health: dict[int, int] = field(default_factory=dict)


async def produce_and_time(
    resources: Resources, keys: list[str], until: float, watch: Watch
) -> None:
    """Bursts of activations; the time until each burst is all in PostgreSQL."""
    clock = resources.clock
    while time.monotonic() < until:
        produced_at = time.monotonic()
        ids = await produce_activations(resources, keys, 20, await clock.now())
        while True:
            stored = await resources.pool.fetchval(
                "SELECT count(*) FROM activation_events WHERE event_id = ANY($1::text[])", ids
            )
            if stored == len(ids) or time.monotonic() - produced_at > 3 * LAG_LIMIT:
                break
            await asyncio.sleep(0.05)
        watch.lags.append(time.monotonic() - produced_at)
        await asyncio.sleep(0.3)


async def watch_health(fleet: Fleet, until: float, watch: Watch) -> None:
    while time.monotonic() < until:
        for worker in fleet.running:
            status = await asyncio.to_thread(worker.healthz)
            watch.health[status] = watch.health.get(status, 0) + 1
        await asyncio.sleep(0.5)


async def wait_for(check: str, resources: Resources, expected: int, within: float) -> float:
    """Seconds until `check` (a count query) reaches `expected`; `within` + 1 when it did not."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await resources.pool.fetchval(check) >= expected:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return within + 1


@pytest.mark.moves_clock
async def test_r14_hung_mail_server_and_webhook_receiver_delay_only_their_channel(
    settings: Settings, resources: Resources, tmp_path: Path
) -> None:
    count = CASES * fault_scale()
    rng = random.Random(4)
    clock = resources.clock
    assert isinstance(clock, RedisTestClock)
    smtp_port, hook_port = free_port(), free_port()
    hung_smtp, hung_hook = HungServer(smtp_port), HungServer(hook_port)
    await hung_smtp.start()
    await hung_hook.start()

    keys = license_keys(count, rng)
    await seed_licenses(resources, keys, "ops@hung.test")
    busy = license_keys(50, rng)
    await seed_licenses(resources, busy, "ops@busy.test", max_servers=2)
    now = await clock.now()
    opened_at = now - 30 * DAY
    await open_cases(resources, keys, opened_at)
    await servers_seen(resources, keys, now)

    env = worker_env(
        settings,
        tmp_path,
        SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        FRAUD_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook",
        SMTP_TIMEOUT_SECONDS=str(SEND_TIMEOUT),
        WEBHOOK_TIMEOUT_SECONDS=str(SEND_TIMEOUT),
        OUTBOX_LEASE_SECONDS="10",
    )
    fleet = Fleet(env, tmp_path)
    watch = Watch()
    try:
        workers = [fleet.start() for _ in range(WORKERS)]
        await asyncio.gather(*(asyncio.to_thread(fleet.wait_healthy, w) for w in workers))
        due = await wait_for(
            "SELECT count(*) FROM notifications", resources, 2 * count, within=STEP_LIMIT
        )
        until = time.monotonic() + HANG_SECONDS
        watching = asyncio.gather(
            produce_and_time(resources, busy, until, watch), watch_health(fleet, until, watch)
        )
        await asyncio.sleep(2.0)
        # The reminder day while both channels hang.
        reminder_at = opened_at + 37 * DAY
        await clock.set(reminder_at)
        await servers_seen(resources, keys, reminder_at)
        reminders = await wait_for(
            "SELECT count(*) FROM case_steps WHERE step = 'reminder'",
            resources,
            count,
            within=STEP_LIMIT,
        )
        await watching
        stop_seconds = fleet.terminate(workers[0], grace=GRACE)
        attempts_while_hung = await resources.pool.fetchval(
            "SELECT count(*) FROM notifications WHERE attempts > 0"
        )
        accepted = (hung_smtp.accepted, hung_hook.accepted)

        # The receivers recover on the same ports; every row is due again an hour later.
        await hung_smtp.close()
        await hung_hook.close()
        expected_mail, expected_hooks = 2 * count, count
        with smtp_sink(smtp_port) as mailbox:
            async with webhook_sink(hook_port) as hooks:
                await clock.set(reminder_at + timedelta(hours=2))
                delivered = await wait_for(
                    "SELECT count(*) FROM notifications WHERE status = 'sent'",
                    resources,
                    expected_mail + expected_hooks,
                    within=60.0,
                )
                await asyncio.sleep(1.0)  # anything sent twice would arrive now
                mail_ids, hook_ids = list(mailbox.message_ids), list(hooks.ids)
                bad_signatures = hooks.bad_signatures
        failed = fleet.failed_passes()
    finally:
        fleet.close()
        await hung_smtp.close()
        await hung_hook.close()

    statuses = await resources.pool.fetch(
        "SELECT channel, status, count(*) AS n FROM notifications GROUP BY 1, 2 ORDER BY 1, 2"
    )
    summary = (
        f"{count} cases, {2 * count} messages due after {due:.1f} s; hung servers accepted "
        f"{accepted} connections, {attempts_while_hung} rows attempted while hung; "
        f"activation bursts {len(watch.lags)}, max lag {max(watch.lags, default=-1):.2f} s; "
        f"/healthz answers {watch.health}; reminders recorded after {reminders:.1f} s; "
        f"SIGTERM exit after {stop_seconds:.1f} s; after recovery: delivered in "
        f"{delivered:.1f} s, e-mails {len(mail_ids)} ({len(set(mail_ids))} distinct, "
        f"{expected_mail} expected), webhooks {len(hook_ids)} ({len(set(hook_ids))} distinct, "
        f"{expected_hooks} expected); rows {[tuple(r) for r in statuses]}; "
        f"failed passes {failed}"
    )
    (tmp_path / "summary.txt").write_text(summary)
    assert watch.lags and max(watch.lags) < LAG_LIMIT, f"stream lag over {LAG_LIMIT} s; {summary}"
    assert set(watch.health) == {200}, f"/healthz was not always 200; {summary}"
    assert reminders <= STEP_LIMIT, f"reminder steps late; {summary}"
    assert attempts_while_hung > 0, f"the hung servers were never tried; {summary}"
    assert stop_seconds < min(GRACE, SEND_TIMEOUT + STOP_MARGIN), f"slow stop; {summary}"
    assert delivered <= 60.0, f"not everything delivered after recovery; {summary}"
    assert len(mail_ids) == len(set(mail_ids)) == expected_mail, summary
    assert len(hook_ids) == len(set(hook_ids)) == expected_hooks, summary
    assert bad_signatures == 0, summary
    assert failed == 0, summary
