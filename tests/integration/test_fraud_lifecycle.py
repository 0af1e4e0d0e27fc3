"""The seeds' multi-server rule end to end (R11–R17): HTTP, the test clock, the worker, a real
SMTP server and a real webhook receiver. Every worker pass runs twice to show that nothing is
done twice."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from activation.config import Settings
from activation.runtime import Resources
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.integration.helpers import activate, advance_clock, create_license, set_clock
from tests.integration.receivers import Receiver, Smtp
from tests.integration.systems import wired

DAY = 86_400


@dataclasses.dataclass
class System:
    public: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    headers: dict[str, str]
    worker: Worker
    resources: Resources
    smtp: Smtp
    receiver: Receiver

    async def work(self) -> None:
        """Two worker passes: the second must find nothing left to do."""
        await self.worker.run_once()
        before = (len(self.smtp.mailbox.messages), len(self.receiver.requests))
        second = await self.worker.run_once()
        assert second.cases.steps == {}
        assert second.cases.opened == 0
        assert (len(self.smtp.mailbox.messages), len(self.receiver.requests)) == before

    async def phone_home(self, *fingerprints: str) -> list[dict[str, Any]]:
        key = self.license_key
        return [await activate(self.public, key, fingerprint) for fingerprint in fingerprints]

    async def next_day(self) -> None:
        await advance_clock(self.admin, self.headers, DAY)

    license_key: str = ""

    def subjects(self) -> list[str]:
        return [str(message["Subject"]).strip() for message in self.smtp.mailbox.messages]

    def webhook_types(self) -> list[str]:
        import orjson

        return [orjson.loads(body)["type"] for _, body, _ in self.receiver.requests]


@pytest.fixture
async def system(
    settings: Settings, smtp: Smtp, receiver: Receiver, admin_headers: dict[str, str]
) -> AsyncIterator[System]:
    async with wired(settings, smtp, receiver, WorkerMetrics()) as it:
        yield System(it.public, it.admin, admin_headers, it.worker, it.resources, smtp, receiver)


async def _start_case(system: System) -> None:
    await set_clock(system.admin, system.headers, "2026-11-23T12:00:00Z")
    created = await create_license(system.admin, system.headers, purchased_on="2026-09-01")
    system.license_key = created["key"]
    old, new = await system.phone_home("server-old", "server-new")
    assert old["code"] == "VALID"
    assert new["code"] == "GRACE"
    await system.work()


@pytest.mark.moves_clock
async def test_two_servers_for_44_days_end_disabled_R13_R14_R17(system: System) -> None:
    await _start_case(system)
    cases = await system.resources.pool.fetch("SELECT * FROM fraud_cases")
    assert [(c["stage"], c["status"]) for c in cases] == [("grace", "open")]

    # Days 1–29: both servers phone home daily; answers say GRACE; nobody is written to.
    for _ in range(29):
        await system.next_day()
        answers = await system.phone_home("server-old", "server-new")
        assert {answer["code"] for answer in answers} == {"GRACE"}
        await system.work()
    assert system.smtp.mailbox.messages == []
    assert system.receiver.requests == []

    # Day 30: grace is over → one e-mail, one team alert, one phone task; answers OVERDUE.
    await system.next_day()
    await system.work()
    answer = (await system.phone_home("server-new"))[0]
    assert (answer["valid"], answer["code"]) == (True, "OVERDUE")
    assert answer["installation"]["disable_at"] == "2027-01-06T12:00:00Z"
    assert len(system.smtp.mailbox.messages) == 1
    assert system.smtp.mailbox.recipients == [["acme@example.com"]]
    assert len(system.receiver.requests) == 1
    assert all(verified for _, _, verified in system.receiver.requests)
    tasks = await system.resources.pool.fetch("SELECT status FROM phone_tasks")
    assert [task["status"] for task in tasks] == ["open"]

    # Day 37: reminder e-mail with the disable date.
    for _ in range(7):
        await system.next_day()
        await system.phone_home("server-old", "server-new")
        await system.work()
    assert len(system.smtp.mailbox.messages) == 2
    assert "6 January 2027" in system.smtp.mailbox.messages[1].get_content()

    # Day 44: disabled, e-mail and alert; every process answers DISABLED.
    for _ in range(7):
        await system.next_day()
        await system.phone_home("server-old", "server-new")
        await system.work()
    answer = (await system.phone_home("server-new"))[0]
    assert (answer["valid"], answer["code"]) == (False, "DISABLED")
    assert len(system.smtp.mailbox.messages) == 3
    assert len(system.receiver.requests) == 2
    license = await (
        await system.admin.get(f"/admin/v1/licenses/{system.license_key}", headers=system.headers)
    ).json()
    assert license["status"] == "disabled"

    # Stays disabled across more passes and days until a person acts (R15).
    await system.next_day()
    await system.work()
    assert (await system.phone_home("server-new"))[0]["code"] == "DISABLED"
    webhook_ids = [headers["webhook-id"] for headers, _, _ in system.receiver.requests]
    assert len(set(webhook_ids)) == len(webhook_ids)


@pytest.mark.moves_clock
async def test_migration_finished_by_deactivation_resolves_without_mail_R15(
    system: System,
) -> None:
    await _start_case(system)
    for _ in range(10):
        await system.next_day()
        await system.phone_home("server-old", "server-new")
        await system.work()
    response = await system.public.post(
        "/v1/deactivations",
        json={"license_key": system.license_key, "fingerprint": "server-old"},
    )
    assert response.status == 200
    await system.work()
    cases = await system.resources.pool.fetch("SELECT stage, status FROM fraud_cases")
    assert [(c["stage"], c["status"]) for c in cases] == [("resolved", "resolved")]
    for _ in range(40):
        await advance_clock(system.admin, system.headers, DAY)
        assert (await system.phone_home("server-new"))[0]["code"] == "VALID"
    await system.work()
    assert system.smtp.mailbox.messages == []
    assert system.receiver.requests == []


@pytest.mark.moves_clock
async def test_old_server_going_silent_resolves_the_case_R11_R15(system: System) -> None:
    await _start_case(system)
    for _ in range(8):  # only the new server phones home; the old one falls out after 7 days
        await system.next_day()
        await system.phone_home("server-new")
        await system.work()
    cases = await system.resources.pool.fetch("SELECT status FROM fraud_cases")
    assert [c["status"] for c in cases] == ["resolved"]
    answer = (await system.phone_home("server-new"))[0]
    assert answer["code"] == "VALID"
    assert answer["installation"]["servers_active"] == 1
    assert system.smtp.mailbox.messages == []


async def test_failover_runs_two_servers_and_a_third_opens_a_case_R12(system: System) -> None:
    created = await create_license(system.admin, system.headers, failover=True)
    system.license_key = created["key"]
    answers = await system.phone_home("server-a", "server-b")
    assert [answer["code"] for answer in answers] == ["VALID", "VALID"]
    await system.work()
    assert await system.resources.pool.fetchval("SELECT count(*) FROM fraud_cases") == 0
    assert (await system.phone_home("server-c"))[0]["code"] == "GRACE"
    await system.work()
    assert await system.resources.pool.fetchval("SELECT count(*) FROM fraud_cases") == 1


async def test_leaked_key_is_flagged_at_once_R16(system: System) -> None:
    created = await create_license(system.admin, system.headers)
    system.license_key = created["key"]
    await system.phone_home(*(f"pirate-{n}" for n in range(6)))
    await system.work()
    case = await system.resources.pool.fetchrow("SELECT * FROM fraud_cases")
    assert case is not None
    assert (case["leak_suspected"], case["severity"], case["stage"]) == (True, "high", "grace")
    assert system.webhook_types() == ["leak_suspected"]
    # Flagged, not disabled: the ladder or a person disables (R16).
    assert (await system.phone_home("pirate-0"))[0]["code"] == "GRACE"


async def test_a_change_whose_redis_write_failed_reaches_the_cache_R17(system: System) -> None:
    """PostgreSQL committed, Redis never heard of it (as when Redis failed right after the
    commit): the next worker pass re-writes the license, and every process answers DISABLED."""
    created = await create_license(system.admin, system.headers)
    system.license_key = created["key"]
    assert (await system.phone_home("server-a"))[0]["code"] == "VALID"
    await system.work()  # the sweep has synced everything
    await system.resources.pool.execute(
        "UPDATE licenses SET status = 'disabled', disabled_reason = 'chargeback' WHERE key = $1",
        system.license_key,
    )
    assert (await system.phone_home("server-a"))[0]["code"] == "VALID"  # stale cache
    await system.work()
    answer = (await system.phone_home("server-a"))[0]
    assert (answer["code"], answer["detail"]) == (
        "DISABLED",
        "This license has been disabled: chargeback.",
    )
    unsynced = await system.resources.pool.fetchval(
        "SELECT count(*) FROM licenses WHERE NOT cache_synced"
    )
    assert unsynced == 0


@pytest.mark.moves_clock
async def test_a_pass_without_the_periodic_duties_only_ingests_and_sends(system: System) -> None:
    """The loop evaluates cases every few seconds, not every pass: a pass without the
    periodic duties ingests (and opens cases) but runs no escalation step."""
    await _start_case(system)
    await system.resources.clock.advance(30 * DAY)  # type: ignore[attr-defined]
    await system.phone_home("server-old", "server-new")
    light = await system.worker.run_once(periodic=False)
    assert (light.ingested, light.cases.steps) == (2, {})
    assert system.smtp.mailbox.messages == []
    full = await system.worker.run_once()
    assert full.cases.steps == {"grace_over": 1}
    assert len(system.smtp.mailbox.messages) == 1
