"""The worker's M&S duties end to end (R1, R5, R6): the test clock moves, the worker runs
(twice per step: nothing happens twice), e-mail goes over real SMTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from activation.config import Settings
from metrics import WorkerMetrics
from tests.conftest import BOOTSTRAP_TOKEN
from tests.integration.helpers import activate, create_license, set_clock
from tests.integration.receivers import Receiver, Smtp
from tests.integration.systems import Wired, wired

# Every test walks the clock through an M&S schedule.
pytestmark = pytest.mark.moves_clock
HEADERS = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}


@pytest.fixture
async def system(settings: Settings, smtp: Smtp, receiver: Receiver) -> AsyncIterator[Wired]:
    async with wired(settings, smtp, receiver, WorkerMetrics()) as it:
        yield it


async def _work_twice(system: Wired, smtp: Smtp) -> int:
    """Run the worker twice; the number of e-mails the first pass sent."""
    before = len(smtp.mailbox.messages)
    await system.worker.run_once()
    sent = len(smtp.mailbox.messages) - before
    await system.worker.run_once()
    assert len(smtp.mailbox.messages) - before == sent, "the second pass sent again"
    return sent


# Covered through 2027-08-31 (purchased 2026-09-01): the days of the schedule, and how many
# reminders the worker sends on each.
SCHEDULE = [
    ("2027-06-01T09:00:00Z", 0),  # 91 days before: nothing yet
    ("2027-07-02T09:00:00Z", 1),  # 60 days before the last covered day
    ("2027-07-20T09:00:00Z", 0),
    ("2027-08-01T09:00:00Z", 1),  # 30 days
    ("2027-08-17T09:00:00Z", 1),  # 14 days
    ("2027-08-24T09:00:00Z", 1),  # 7 days
    ("2027-08-30T09:00:00Z", 1),  # 1 day
    ("2027-08-31T09:00:00Z", 0),  # the last covered day itself has no reminder
    ("2027-09-01T09:00:00Z", 1),  # the day it lapses
    ("2027-09-10T09:00:00Z", 0),
]


@pytest.mark.parametrize(("day", "expected"), SCHEDULE, ids=[day[:10] for day, _ in SCHEDULE])
async def test_reminder_schedule_each_once_R6(
    system: Wired, smtp: Smtp, day: str, expected: int
) -> None:
    """Walks the clock to `day` through every earlier step of the schedule, so each case
    checks the reminders of its own day only (each reminder is sent once)."""
    await set_clock(system.admin, HEADERS, "2026-09-01T09:00:00Z")
    created = await create_license(system.admin, HEADERS, purchased_on="2026-09-01")
    assert created["ms_covered_through"] == "2027-08-31"
    steps = [step for step, _ in SCHEDULE if step <= day]
    for step in steps:
        await set_clock(system.admin, HEADERS, step)
        sent = await _work_twice(system, smtp)
    assert sent == expected
    assert len(smtp.mailbox.messages) == sum(n for step, n in SCHEDULE if step <= day)
    if expected:
        assert smtp.mailbox.recipients[-1] == ["acme@example.com"]
        assert created["key"] in smtp.mailbox.messages[-1].get_content()


async def test_a_worker_that_was_down_sends_only_the_latest_reminder_R6(
    system: Wired, smtp: Smtp
) -> None:
    await set_clock(system.admin, HEADERS, "2026-09-01T09:00:00Z")
    await create_license(system.admin, HEADERS, purchased_on="2026-09-01")
    await set_clock(system.admin, HEADERS, "2027-08-25T09:00:00Z")  # 6 days left
    assert await _work_twice(system, smtp) == 1  # the 7-day one; 60, 30 and 14 are skipped
    assert "6 days left" in smtp.mailbox.messages[-1].get_content()
    duties = await system.resources.pool.fetch("SELECT duty FROM ms_duties")
    assert [row["duty"] for row in duties] == ["reminder:7"]


async def test_auto_renewal_on_the_last_covered_day_R5(system: Wired, smtp: Smtp) -> None:
    await set_clock(system.admin, HEADERS, "2026-09-01T09:00:00Z")
    created = await create_license(system.admin, HEADERS, purchased_on="2026-09-01")
    key = created["key"]
    response = await system.admin.put(
        f"/admin/v1/licenses/{key}/auto-renew", json={"enabled": True}, headers=HEADERS
    )
    assert response.status == 200
    await set_clock(system.admin, HEADERS, "2027-08-30T09:00:00Z")
    assert await _work_twice(system, smtp) == 0  # auto-renewing licenses get no reminders
    await set_clock(system.admin, HEADERS, "2027-08-31T09:00:00Z")
    await _work_twice(system, smtp)
    view = await (await system.admin.get(f"/admin/v1/licenses/{key}", headers=HEADERS)).json()
    assert view["ms_covered_through"] == "2028-08-31"
    kinds = [t["kind"] for t in view["ms_transactions"]]
    assert kinds.count("auto_renewal") == 1
    # The hot path sees the new coverage at once (the cache was re-written).
    answer = await activate(system.public, key)
    assert answer["license"]["ms_covered_through"] == "2028-08-31"
    assert answer["license"]["ms_status"] == "protected"


async def test_trial_expiry_is_recorded_once_R1(system: Wired, smtp: Smtp) -> None:
    await set_clock(system.admin, HEADERS, "2026-11-01T09:00:00Z")
    created = await create_license(
        system.admin, HEADERS, kind="trial", purchased_on="2026-11-01", trial_days=30
    )
    await set_clock(system.admin, HEADERS, "2026-12-01T09:00:00Z")  # day 31
    await _work_twice(system, smtp)
    rows = await system.resources.pool.fetch(
        "SELECT action FROM audit_log WHERE target = $1 AND action = 'license.trial_expired'",
        f"license:{created['key']}",
    )
    assert len(rows) == 1
    assert (await activate(system.public, created["key"]))["code"] == "EXPIRED"
