"""Fault 3: the ladder exactly once (R13, R14) while workers are SIGKILLed.

200 keys each run on two servers of one allowed (activations through the activation script
the API calls), three `fraud-worker` processes open the cases from the events, and the test
clock steps over days 30, 37 and 44 while every second one worker is SIGKILLed and a new one
started. Real receivers: an aiosmtpd SMTP server and an aiohttp webhook receiver.

Evidence: every case opened, one row per case and step, the distinct Message-IDs equal the
e-mails expected (3 per case) and the distinct webhook-ids the webhooks expected (2 per case),
every row sent; a message received twice only where a kill fell between acceptance and the
record, and then counted in the row's `resends` (`notifications_resent_total`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from activation.clock import RedisTestClock
from activation.config import Settings
from activation.runtime import Resources
from activation.store.redis_store import ActivationRequest, Recorded
from tests.faults.workers import (
    DAY,
    Fleet,
    fault_scale,
    seed_licenses,
    servers_seen,
    worker_env,
)
from tests.integration.helpers import license_keys
from tests.integration.receivers import free_port, smtp_sink, webhook_sink

KEYS = 200
WORKERS = 3
KILL_EVERY = 1.0
PHASE_LIMIT = 60.0
STEPS = (("grace_over", 30), ("reminder", 37), ("disable", 44))


async def over_the_limit(resources: Resources, keys: list[str], now: datetime) -> None:
    """Two servers phone home for every key (one allowed): the events open the cases."""
    requests = [
        ActivationRequest(key, server, "mail.example.com", "16.3.6989", "203.0.113.9", f"{n}{s}")
        for n, key in enumerate(keys)
        for s, server in enumerate(("server-a", "server-b"))
    ]
    for first in range(0, len(requests), 50):  # a cache miss reads PostgreSQL: keep it small
        chunk = requests[first : first + 50]
        outcomes = await asyncio.gather(*(resources.store.activate(r, now) for r in chunk))
        assert all(isinstance(o, Recorded) for o in outcomes), Counter(map(type, outcomes))


async def kill_and_restart(fleet: Fleet, stop: asyncio.Event, kills: list[int]) -> None:
    rng = random.Random(3)
    while not stop.is_set():
        await asyncio.sleep(KILL_EVERY)
        running = fleet.running
        if running:
            fleet.kill(rng.choice(running))
            kills.append(1)
        while len(fleet.running) < WORKERS:
            fleet.start()


async def until_count(resources: Resources, query: str, expected: int, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        value: int = await resources.pool.fetchval(query)
        if value >= expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@pytest.mark.moves_clock
async def test_r14_ladder_steps_and_notices_once_while_workers_are_killed(
    settings: Settings, resources: Resources, tmp_path: Path
) -> None:
    count = KEYS * fault_scale()
    clock = resources.clock
    assert isinstance(clock, RedisTestClock)
    keys = license_keys(count, random.Random(33))
    await seed_licenses(resources, keys, "ops@ladder.test")
    smtp_port, hook_port = free_port(), free_port()
    env = worker_env(
        settings,
        tmp_path,
        SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        FRAUD_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook",
        SMTP_TIMEOUT_SECONDS="2",
        WEBHOOK_TIMEOUT_SECONDS="2",
        OUTBOX_LEASE_SECONDS="8",
        INGEST_MIN_IDLE_MS="1000",  # entries of a killed worker are taken over after 1 s
    )
    fleet = Fleet(env, tmp_path)
    stop, kills = asyncio.Event(), list[int]()
    reached: dict[str, tuple[int, int, float]] = {}
    with smtp_sink(smtp_port) as mailbox:
        async with webhook_sink(hook_port) as hooks:
            try:
                for _ in range(WORKERS):
                    fleet.start()
                killer = asyncio.create_task(kill_and_restart(fleet, stop, kills))
                await over_the_limit(resources, keys, await clock.now())
                opened = await until_count(
                    resources, "SELECT count(*) FROM fraud_cases", count, PHASE_LIMIT
                )
                start = await resources.pool.fetchval("SELECT max(opened_at) FROM fraud_cases")
                for step, day in STEPS:
                    phase = time.monotonic()
                    moment = (start or await clock.now()) + day * DAY + timedelta(minutes=1)
                    await servers_seen(resources, keys, moment)
                    await clock.set(moment)
                    steps = await until_count(
                        resources,
                        f"SELECT count(*) FROM case_steps WHERE step = '{step}'",
                        count,
                        PHASE_LIMIT,
                    )
                    sent = await until_count(
                        resources,
                        "SELECT count(*) FROM notifications n JOIN case_steps s"
                        " ON s.case_id = n.case_id AND n.dedupe_key LIKE '%:' || s.step || ':%'"
                        f" WHERE s.step = '{step}' AND n.status = 'sent'",
                        count * (1 if step == "reminder" else 2),
                        PHASE_LIMIT,
                    )
                    reached[step] = (steps, sent, round(time.monotonic() - phase, 1))
                stop.set()
                await killer
                await asyncio.sleep(1.0)  # a late duplicate would arrive now
                mail_ids, hook_ids = list(mailbox.message_ids), list(hooks.ids)
                failed = fleet.failed_passes()
            finally:
                stop.set()
                fleet.close()

    rows = await resources.pool.fetch(
        "SELECT channel, status, count(*) AS n, sum(resends) AS resends FROM notifications"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )
    resends = {r["channel"]: int(r["resends"]) for r in rows if r["status"] == "sent"}
    statuses = {(r["channel"], r["status"]): r["n"] for r in rows}
    step_rows = await resources.pool.fetch(
        "SELECT step, count(*) AS n, count(DISTINCT case_id) AS cases FROM case_steps GROUP BY 1"
    )
    expected_mail, expected_hooks = 3 * count, 2 * count
    mail_dupes = len(mail_ids) - len(set(mail_ids))
    hook_dupes = len(hook_ids) - len(set(hook_ids))
    summary = (
        f"{count} keys, {WORKERS} workers, {len(kills)} SIGKILLs; cases opened {opened}; "
        f"per step (step rows, notices sent, seconds) {reached}; step rows "
        f"{[(r['step'], r['n'], r['cases']) for r in step_rows]}; e-mails {len(mail_ids)} "
        f"({len(set(mail_ids))} distinct, {expected_mail} expected, {mail_dupes} duplicates); "
        f"webhooks {len(hook_ids)} ({len(set(hook_ids))} distinct, {expected_hooks} expected, "
        f"{hook_dupes} duplicates); rows {statuses}; re-sends counted {resends}; "
        f"failed passes {failed}"
    )
    (tmp_path / "summary.txt").write_text(summary)
    assert opened == count, f"cases opened; {summary}"
    assert all(r["n"] == r["cases"] == count for r in step_rows) and len(step_rows) == 3, summary
    assert len(set(mail_ids)) == expected_mail, f"e-mails; {summary}"
    assert len(set(hook_ids)) == expected_hooks, f"webhooks; {summary}"
    assert statuses == {("email", "sent"): expected_mail, ("webhook", "sent"): expected_hooks}, (
        summary
    )
    assert mail_dupes <= resends.get("email", 0), f"e-mail duplicates not counted; {summary}"
    assert hook_dupes <= resends.get("webhook", 0), f"webhook duplicates not counted; {summary}"
    assert len(kills) >= 5, f"too few kills; {summary}"
