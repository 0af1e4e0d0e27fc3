"""Cases (R13) are written in the transaction that stores the events showing them, before the
stream entries are acknowledged (SPEC §9): an error between the events and their case rolls
both back, and the redelivery opens the case. The error is PostgreSQL's own, raised by a
trigger on `fraud_cases` that refuses the first case insert and accepts the next (a sequence
counts the attempts: it is not rolled back with the transaction)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import PassReport, Worker
from metrics import WorkerMetrics
from tests.integration.helpers import pending_total
from tests.integration.test_ingest import new_license, record

Client = TestClient[Any, Any]

REFUSE_FIRST_CASE = """
CREATE SEQUENCE test_case_attempts;
CREATE FUNCTION test_refuse_first_case() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('test_case_attempts') = 1 THEN
        RAISE EXCEPTION 'injected: case refused once' USING ERRCODE = '{sqlstate}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_first_case BEFORE INSERT ON fraud_cases
    FOR EACH ROW EXECUTE FUNCTION test_refuse_first_case();
"""
REMOVE = """
DROP TRIGGER IF EXISTS test_refuse_first_case ON fraud_cases;
DROP FUNCTION IF EXISTS test_refuse_first_case();
DROP SEQUENCE IF EXISTS test_case_attempts;
"""


@pytest.mark.parametrize(
    ("sqlstate", "passes"),
    [
        ("P0001", 2),  # not the row's fault: the pass fails, the next one redoes the batch
        ("23514", 1),  # a check violation: the batch is redone event by event in that pass
    ],
)
async def test_r13_an_error_before_the_ack_does_not_lose_the_case(
    resources: Resources,
    admin_client: Client,
    admin_headers: dict[str, str],
    sqlstate: str,
    passes: int,
) -> None:
    key = await new_license(admin_client, admin_headers)  # one server allowed
    await record(resources, key, "server-a")
    await record(resources, key, "server-b")  # over the limit: a case opens
    worker = Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics())
    await resources.pool.execute(REFUSE_FIRST_CASE.replace("{sqlstate}", sqlstate))
    failed = 0
    try:
        for _ in range(passes):
            try:
                await worker.drain_streams(PassReport())
            except asyncpg.PostgresError:
                failed += 1
        attempts = await resources.pool.fetchval("SELECT last_value FROM test_case_attempts")
    finally:
        await resources.pool.execute(REMOVE)
    cases = await resources.pool.fetch(
        "SELECT stage, servers_active FROM fraud_cases WHERE license_key = $1", key
    )
    events = await resources.pool.fetchval("SELECT count(*) FROM activation_events")
    dead = await resources.pool.fetchval("SELECT count(*) FROM dead_letters")
    summary = (
        f"{len(cases)} cases for the key over its limit after {passes} passes ({failed} failed, "
        f"{attempts} case inserts tried), {events} events stored, {dead} dead letters"
    )
    assert [(c["stage"], c["servers_active"]) for c in cases] == [("grace", 2)], summary
    assert (events, dead) == (2, 0), summary
    assert await pending_total(resources) == 0, summary
