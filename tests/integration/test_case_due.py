"""A worker pass looks at the cases that are due, not at every open case (R11, R13–R15): HTTP,
the test clock and the real worker; `PassReport.cases.evaluated` counts the cases a pass looked
at."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from activation.config import Settings
from activation.runtime import Resources
from fraud.worker import PassReport, Worker
from metrics import WorkerMetrics
from tests.integration.helpers import activate, create_license, set_clock
from tests.integration.receivers import Receiver, Smtp
from tests.integration.systems import wired

# Every test steps the clock to the days a case is due on.
pytestmark = pytest.mark.moves_clock
OPENED = "2026-11-23T12:00:00Z"


@dataclasses.dataclass
class System:
    public: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    headers: dict[str, str]
    worker: Worker
    resources: Resources
    key: str = ""

    async def at(self, moment: str) -> None:
        await set_clock(self.admin, self.headers, moment)

    async def phone_home(self, *fingerprints: str) -> list[str]:
        return [(await activate(self.public, self.key, fp))["code"] for fp in fingerprints]

    async def case(self) -> Any:
        return await self.resources.pool.fetchrow(
            "SELECT id, status, stage, opened_at, next_check_at FROM fraud_cases "
            "WHERE license_key = $1 ORDER BY id DESC LIMIT 1",
            self.key,
        )

    async def act(self, case_id: int, **body: Any) -> None:
        response = await self.admin.post(
            f"/admin/v1/cases/{case_id}/actions", json=body, headers=self.headers
        )
        assert response.status == 200, await response.text()


@pytest.fixture
async def system(
    settings: Settings, smtp: Smtp, receiver: Receiver, admin_headers: dict[str, str]
) -> AsyncIterator[System]:
    async with wired(settings, smtp, receiver, WorkerMetrics()) as it:
        yield System(it.public, it.admin, admin_headers, it.worker, it.resources)


async def _open_case(system: System) -> PassReport:
    await system.at(OPENED)
    system.key = (await create_license(system.admin, system.headers))["key"]
    assert await system.phone_home("server-old", "server-new") == ["VALID", "GRACE"]
    return await system.worker.run_once()


async def test_a_pass_looks_only_at_due_cases_and_resolves_on_time_without_events_R11_R15(
    system: System,
) -> None:
    """The old server phones home once, at the opening; the new one the next day, then nobody:
    no event tells the worker anything, yet the case resolves the second the old server leaves
    the 7-day window (R11, R15), and no pass before looks at it."""
    first = await _open_case(system)
    assert (first.cases.opened, first.cases.evaluated) == (1, 1), first.cases
    again = await system.worker.run_once()
    assert again.cases.evaluated == 0, again.cases
    await system.at("2026-11-24T12:00:00Z")
    assert await system.phone_home("server-new") == ["GRACE"]  # still over: nothing to look at
    quiet = await system.worker.run_once()
    assert (quiet.ingested, quiet.cases.evaluated) == (1, 0), quiet
    await system.at("2026-11-30T12:00:00Z")  # the old server is still active (R11: inclusive)
    edge = await system.worker.run_once()
    assert edge.cases.evaluated == 0, edge.cases
    assert (await system.case())["status"] == "open"
    await system.at("2026-11-30T12:00:02Z")  # the test clock ticks: a second past, plus one
    gone = await system.worker.run_once()
    assert (gone.cases.evaluated, gone.cases.resolved) == (1, 1), gone.cases
    assert (await system.case())["status"] == "resolved"


async def test_a_reviewer_action_makes_the_case_due_at_once(system: System) -> None:
    await _open_case(system)
    case_id = (await system.case())["id"]
    assert (await system.worker.run_once()).cases.evaluated == 0
    await system.act(case_id, action="hold", note="customer migrating")
    held = await system.worker.run_once()
    assert held.cases.evaluated == 1, held.cases
    assert (await system.worker.run_once()).cases.evaluated == 0
    await system.act(case_id, action="release_hold")
    released = await system.worker.run_once()
    assert released.cases.evaluated == 1, released.cases


async def test_a_disabled_case_is_never_due_and_enabling_the_license_resolves_it_R13_R15(
    system: System,
) -> None:
    """The ladder disables the key on day 44 (R14); the case stays in the open queue as stage
    disabled but no pass looks at it again, whatever its servers do. Enabling the license is
    the case's `enable` (R15): the case resolves, and the next activation still over the limit
    opens a new case with a fresh grace (R13)."""
    await _open_case(system)
    await system.at("2027-01-06T12:00:05Z")
    await system.phone_home("server-old", "server-new")
    ladder = await system.worker.run_once()
    assert ladder.cases.steps == {"grace_over": 1, "reminder": 1, "disable": 1}, ladder.cases
    disabled = await system.case()
    assert (disabled["status"], disabled["stage"]) == ("open", "disabled")
    for day in ("07", "08"):
        await system.at(f"2027-01-{day}T12:00:00Z")
        assert await system.phone_home("server-old", "server-new") == ["DISABLED", "DISABLED"]
        later = await system.worker.run_once()
        assert later.cases.evaluated == 0, later.cases
    listed = await system.admin.get("/admin/v1/cases?status=open", headers=system.headers)
    items = (await listed.json())["items"]
    assert [(item["id"], item["stage"]) for item in items] == [(disabled["id"], "disabled")]

    enabled = await system.admin.post(
        f"/admin/v1/licenses/{system.key}/enable", headers=system.headers
    )
    assert enabled.status == 200, await enabled.text()
    body = await enabled.json()
    assert (body["status"], body["case"]) == ("active", None)
    assert (await system.case())["status"] == "resolved"
    await system.at("2027-01-09T12:00:00Z")
    # Both servers are still active: over the limit again, from now (R13).
    assert await system.phone_home("server-old", "server-new") == ["GRACE", "GRACE"]
    reopened = await system.worker.run_once()
    assert reopened.cases.opened == 1, reopened.cases
    new_case = await system.case()
    assert new_case["id"] != disabled["id"]
    assert (new_case["status"], new_case["stage"]) == ("open", "grace")
    assert new_case["opened_at"].isoformat().startswith("2027-01-09T12:00:00"), new_case


async def test_redis_back_without_its_data_makes_every_open_case_due_R13(system: System) -> None:
    """A stream whose group vanished means Redis lost its data, the case summaries the answers
    report (GRACE with the case's `grace_ends_at`) among them: the next pass evaluates every
    open case in full and writes them again."""
    await _open_case(system)
    assert (await system.worker.run_once()).cases.evaluated == 0
    lic = system.resources.layout.for_license(system.key, 0)
    await system.resources.redis.hdel(lic.license, "stage", "grace_ends", "disable_at")
    await system.resources.redis.delete(lic.stream)
    await system.at("2026-11-24T12:00:00Z")
    assert await system.phone_home("server-new") == ["GRACE"]
    report = await system.worker.run_once()
    assert report.cases.evaluated == 1, report.cases
    assert await system.resources.redis.hget(lic.license, "stage") == b"grace"


async def test_open_cases_are_indexed_by_their_next_check_only(resources: Resources) -> None:
    """The worker's due query reads open cases by `next_check_at`; `next_due_at`, which no query
    filters or sorts by, has no index to keep up (migration 0008)."""
    rows = await resources.pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'fraud_cases'"
    )
    indexes = {row["indexname"] for row in rows}
    assert "fraud_cases_check_idx" in indexes
    assert "fraud_cases_due_idx" not in indexes
