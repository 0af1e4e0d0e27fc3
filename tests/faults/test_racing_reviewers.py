"""Fault 5: workers and reviewers on the same cases (R14, R15, R17).

Cases sit one second before their disable moment with none of their steps run yet (the
workers were down), so the three `fraud-worker` processes race each other on the first pass
(grace_over and reminder) and the reviewers on the disable: 20 concurrent admin clients act on
the same cases through the admin API of a real `activation-server` (disable, enable, resolve,
hold, release_hold, extend, grant_exception, log_call) while the disable moment passes.

Evidence: at most one disable per case (the worker's step or a reviewer's), one row per step,
the license disabled exactly when its case is open in stage DISABLED, one `case.*` audit row
per successful action, no 5xx, and no worker pass that failed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from activation.clock import RedisTestClock
from activation.config import Settings
from activation.runtime import Resources
from tests.conftest import BOOTSTRAP_TOKEN
from tests.faults.workers import (
    DAY,
    Fleet,
    fault_scale,
    open_cases,
    seed_licenses,
    servers_seen,
)
from tests.integration.helpers import license_keys
from tests.integration.servers import Server, server_env, serving

CASES = 100
WORKERS = 3
CLIENTS = 20
ACTING_SECONDS = 12.0  # two periodic passes of every worker (every 5 s) after the moment
ACTIONS: dict[str, int] = {  # weights: mostly actions that take the lock and keep the case
    "log_call": 50,  # open and due, so the workers' disable step races them
    "disable": 4,
    "enable": 4,
    "hold": 3,
    "release_hold": 3,
    "resolve": 2,
    "extend": 1,
    "grant_exception": 2,
}


def body_of(action: str) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action, "note": "fault test"}
    if action == "extend":
        body["days"] = 1
    if action == "grant_exception":
        body["max_servers"] = 1  # still over the limit: the case stays open
    return body


async def reviewer(
    session: aiohttp.ClientSession,
    admin: str,
    case_ids: list[int],
    until: float,
    statuses: Counter[int],
    rng: random.Random,
) -> None:
    names, weights = list(ACTIONS), list(ACTIONS.values())
    headers = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
    while time.monotonic() < until:
        case_id = rng.choice(case_ids)
        action = rng.choices(names, weights)[0]
        async with session.post(
            f"{admin}/admin/v1/cases/{case_id}/actions", json=body_of(action), headers=headers
        ) as response:
            await response.read()
            statuses[response.status] += 1
        await asyncio.sleep(rng.uniform(0.02, 0.08))


@pytest.fixture
def admin_server(settings: Settings, tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """A real `activation-server` with the test clock, and its environment."""
    assert settings.database_url is not None and settings.redis_url is not None
    env = server_env(
        settings.database_url, settings.redis_url, settings.redis_prefix, tmp_path, TEST_CLOCK="1"
    )
    with serving(env, tmp_path) as server:
        yield server, env


@pytest.mark.moves_clock
async def test_r14_r15_racing_workers_and_reviewers_disable_once_and_fail_no_pass(
    admin_server: tuple[Server, dict[str, str]], resources: Resources, tmp_path: Path
) -> None:
    count = CASES * fault_scale()
    rng = random.Random(5)
    clock = resources.clock
    assert isinstance(clock, RedisTestClock)
    server, env = admin_server
    if True:
        keys = license_keys(count, rng)
        await seed_licenses(resources, keys, "ops@racing.test")
        now = await clock.now()
        opened_at = now - 44 * DAY + timedelta(seconds=30)
        await open_cases(resources, keys, opened_at)
        await servers_seen(resources, keys, now)
        case_ids = [row["id"] for row in await resources.pool.fetch("SELECT id FROM fraud_cases")]

        fleet = Fleet(env | {"TEST_CLOCK": "1"}, tmp_path)
        try:
            workers = [fleet.start() for _ in range(WORKERS)]
            # Their first passes race on grace_over and reminder (due for 14 and 7 days).
            await asyncio.gather(*(asyncio.to_thread(fleet.wait_healthy, w) for w in workers))
            moment = opened_at + 44 * DAY
            await clock.set(moment - timedelta(seconds=1))
            await servers_seen(resources, keys, moment - timedelta(seconds=1))
            statuses: Counter[int] = Counter()
            until = time.monotonic() + ACTING_SECONDS
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(
                    *(
                        reviewer(session, server.admin, case_ids, until, statuses, rng)
                        for _ in range(CLIENTS)
                    )
                )
            running_at_the_end = len(fleet.running)
            exits = [fleet.terminate(w, grace=30.0) for w in workers]
            alive_to_the_end = sum(w.process.returncode == 0 for w in workers)
            failed = fleet.failed_passes()
            tracebacks = fleet.tracebacks()
        finally:
            fleet.close()

    disables = await resources.pool.fetch(
        """SELECT c.id,
                  (SELECT count(*) FROM case_steps s WHERE s.case_id = c.id
                     AND s.step = 'disable') AS by_worker,
                  (SELECT count(*) FROM case_events e WHERE e.case_id = c.id
                     AND e.kind = 'disable') AS by_reviewer,
                  (SELECT count(*) FROM audit_log a WHERE a.target = 'license:' || c.license_key
                     AND a.action = 'license.disable') AS audited
           FROM fraud_cases c"""
    )
    twice = [r["id"] for r in disables if r["by_worker"] + r["by_reviewer"] > 1]
    audited_twice = [r["id"] for r in disables if r["audited"] > 1]
    by_worker = sum(r["by_worker"] for r in disables)
    by_reviewer = sum(r["by_reviewer"] for r in disables)
    mismatched = await resources.pool.fetch(
        """SELECT c.id, c.status, c.stage, l.status AS license_status
           FROM fraud_cases c JOIN licenses l ON l.key = c.license_key
           WHERE (c.status = 'open' AND c.stage = 'disabled') <> (l.status = 'disabled')"""
    )
    audit_rows = await resources.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action LIKE 'case.%'"
    )
    steps = await resources.pool.fetch(
        "SELECT step, count(*) AS n FROM case_steps GROUP BY step ORDER BY step"
    )
    stages = await resources.pool.fetch(
        "SELECT status, stage, count(*) AS n FROM fraud_cases GROUP BY 1, 2 ORDER BY 1, 2"
    )
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    summary = (
        f"{count} cases, {WORKERS} workers, {CLIENTS} clients; answers {dict(statuses)}; "
        f"disables: {by_worker} by the worker, {by_reviewer} by reviewers; "
        f"steps {[(r['step'], r['n']) for r in steps]}; "
        f"cases {[(r['status'], r['stage'], r['n']) for r in stages]}; "
        f"worker passes failed {failed}, tracebacks {tracebacks}, "
        f"workers running at the end {running_at_the_end}, exiting cleanly "
        f"{alive_to_the_end}/{WORKERS} in {[round(s, 1) for s in exits]} s"
    )
    (tmp_path / "summary.txt").write_text(summary)
    assert server_errors == 0, f"{server_errors} answers 5xx; {summary}"
    assert failed == 0, f"{failed} worker passes failed; {summary}"
    assert tracebacks == 0, f"{tracebacks} tracebacks in the worker logs; {summary}"
    assert running_at_the_end == alive_to_the_end == WORKERS, summary
    assert not twice, f"{len(twice)} cases disabled twice: {twice[:10]}; {summary}"
    assert not audited_twice, f"{len(audited_twice)} licenses disabled twice; {summary}"
    assert not mismatched, (
        f"{len(mismatched)} licenses whose status does not match the case: "
        f"{[dict(r) for r in mismatched[:5]]}; {summary}"
    )
    assert audit_rows == statuses[200], (
        f"{audit_rows} case.* audit rows for {statuses[200]} successful actions; {summary}"
    )
    assert by_worker + by_reviewer > 0, f"nothing was disabled: no race; {summary}"
    assert all(r["n"] <= count for r in steps), summary
