"""Durable ingest (SPEC §9 "No data lost") against real Redis and PostgreSQL:
activation events written by the real activation script reach `activation_events` exactly once
and keep `installations` current, whatever the delivery history (replays, redeliveries after a
consumer died, malformed entries, two consumers at once), and trimming never drops an entry the
group has not acknowledged."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from activation.store.redis_store import ActivationRequest, Recorded
from fraud.escalation import DEFAULT_LADDER
from fraud.ingest import GROUP, IngestReport, StreamIngest, is_transient
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.integration.helpers import activate, activation_body, create_license, pending_total

Client = TestClient[Any, Any]


def make_ingest(
    resources: Resources, consumer: str = "test-consumer", **options: Any
) -> StreamIngest:
    return StreamIngest(
        resources.redis, resources.pool, resources.layout.streams(), consumer, **options
    )


async def drain(ingest: StreamIngest) -> IngestReport:
    """run_once until a pass finds nothing; the totals of every pass."""
    total = IngestReport()
    while True:
        report = await ingest.run_once()
        total.events += report.events
        total.inserted += report.inserted
        total.dead += report.dead
        total.reclaimed += report.reclaimed
        if not report.events and not report.dead:
            return total


async def stream_event_ids(resources: Resources) -> list[str]:
    """The event id of every entry in every shard stream (what the activation script wrote)."""
    ids: list[str] = []
    for stream in resources.layout.streams():
        for _, fields in await resources.redis.xrange(stream):
            ids.append(fields[b"id"].decode())
    return ids


async def stored_event_ids(resources: Resources) -> list[str]:
    rows = await resources.pool.fetch("SELECT event_id FROM activation_events")
    return [row["event_id"] for row in rows]


async def stream_length(resources: Resources) -> int:
    return sum([int(await resources.redis.xlen(s)) for s in resources.layout.streams()])


async def new_license(admin: Client, headers: dict[str, str], **fields: Any) -> str:
    key: str = (await create_license(admin, headers, **fields))["key"]
    return key


async def record(
    resources: Resources, key: str, fingerprint: str, *, op: str = "a", at: datetime | None = None
) -> str:
    """One activation (or deactivation) through the real activation script; its event id."""
    event_id = os.urandom(16).hex()
    request = ActivationRequest(
        license_key=key,
        fingerprint=fingerprint,
        hostname=f"{fingerprint}.example.com" if op == "a" else "",
        version="16.3.6989" if op == "a" else "",
        ip="203.0.113.7",
        event_id=event_id,
    )
    now = at or datetime.now(UTC)
    run = resources.store.activate if op == "a" else resources.store.deactivate
    outcome = await run(request, now)
    assert isinstance(outcome, Recorded), outcome
    return event_id


# --------------------------------------------------------------------------- exactly once


async def test_activations_land_once_with_installation_details(
    resources: Resources, public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    key = await new_license(admin_client, admin_headers, max_servers=2)
    await activate(public_client, key, "server-a")
    await activate(public_client, key, "server-b", hostname="mail-b.example.com")
    await activate(public_client, key, "server-a", version="16.4.7001", hostname="mx1.example")
    written = await stream_event_ids(resources)
    assert len(written) == 3

    ingest = make_ingest(resources)
    report = await ingest.run_once()
    assert (report.inserted, report.dead, report.reclaimed) == (3, 0, 0)
    assert sorted(await stored_event_ids(resources)) == sorted(written)
    assert await pending_total(resources) == 0

    events = await resources.pool.fetch(
        "SELECT * FROM activation_events WHERE fingerprint = 'server-a' ORDER BY occurred_at"
    )
    assert [e["kind"] for e in events] == ["activation", "activation"]
    assert events[0]["hostname"] == "server-a.example.com"
    assert events[0]["version"] == "16.3.6989"
    rows = {
        row["fingerprint"]: row
        for row in await resources.pool.fetch(
            "SELECT * FROM installations WHERE license_key = $1", key
        )
    }
    assert set(rows) == {"server-a", "server-b"}
    server_a = rows["server-a"]
    # The latest activation's details, the first one's first-seen time.
    assert server_a["hostname"] == "mx1.example"
    assert server_a["version"] == "16.4.7001"
    assert server_a["ip"] == "127.0.0.1"
    assert server_a["first_seen_at"] == events[0]["occurred_at"]
    assert server_a["last_seen_at"] == events[1]["occurred_at"]
    assert server_a["deactivated_at"] is None
    assert rows["server-b"]["hostname"] == "mail-b.example.com"
    assert rows["server-b"]["first_seen_at"] == rows["server-b"]["last_seen_at"]

    # A second pass finds nothing new; a full replay of every stream inserts nothing either.
    again = await ingest.run_once()
    assert (again.inserted, len(again.events)) == (0, 0)
    for stream in resources.layout.streams():
        if await resources.redis.exists(stream):
            await resources.redis.xgroup_setid(stream, GROUP, "0")
    replay = await drain(ingest)
    assert len(replay.events) == 3
    assert replay.inserted == 0
    assert await resources.pool.fetchval("SELECT count(*) FROM activation_events") == 3
    after = await resources.pool.fetchrow(
        "SELECT * FROM installations WHERE license_key = $1 AND fingerprint = 'server-a'", key
    )
    assert dict(after) == dict(server_a)


async def test_redelivered_entry_of_a_dead_consumer_is_stored_once(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    key = await new_license(admin_client, admin_headers)
    ids = [await record(resources, key, "server-a") for _ in range(3)]
    ingest_b = make_ingest(resources, "consumer-b", min_idle_ms=0)
    await ingest_b.ensure_groups()
    # Consumer A reads the entries and dies before acknowledging them.
    streams = dict.fromkeys(resources.layout.streams(), ">")
    delivered = await resources.redis.xreadgroup(GROUP, "consumer-a", streams)
    assert sum(len(items) for _, items in delivered) == 3
    assert await pending_total(resources) == 3

    # A consumer that waits for a minute of idleness does not take them yet.
    patient = await make_ingest(resources, "consumer-c", min_idle_ms=60_000).run_once()
    assert (patient.reclaimed, len(patient.events)) == (0, 0)

    report = await ingest_b.run_once()
    assert report.reclaimed == 3
    assert report.inserted == 3
    assert sorted(await stored_event_ids(resources)) == sorted(ids)
    assert await pending_total(resources) == 0
    assert (await drain(ingest_b)).events == []


async def test_entry_committed_but_not_acknowledged_is_not_stored_twice(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """The crash between COMMIT and XACK: the redelivery is a no-op in PostgreSQL."""
    key = await new_license(admin_client, admin_headers)
    ids = [await record(resources, key, f"server-{n}") for n in range(4)]
    crashing = make_ingest(resources, "consumer-a")

    async def die_before_ack(acked: list[tuple[str, bytes]]) -> None:
        return None

    crashing._ack = die_before_ack  # type: ignore[method-assign]
    first = await crashing.run_once()
    assert first.inserted == 4
    assert await pending_total(resources) == 4

    second = await make_ingest(resources, "consumer-b", min_idle_ms=0).run_once()
    assert second.reclaimed == 4
    assert second.inserted == 0
    assert sorted(await stored_event_ids(resources)) == sorted(ids)
    assert await resources.pool.fetchval("SELECT count(*) FROM installations") == 4
    assert await pending_total(resources) == 0


# --------------------------------------------------------------------------- dead letters


async def test_malformed_entries_go_to_dead_letters_and_do_not_block_the_rest(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    key = await new_license(admin_client, admin_headers)
    good_before = [await record(resources, key, "server-a")]
    stream = resources.layout.for_license(key, 0).stream
    fields = {
        "id": "hand-1",
        "op": "a",
        "key": key,
        "fp": "server-x",
        "host": "x",
        "ver": "1.0",
        "ip": "198.51.100.1",
        "at": "1767225600.5",
        "active": "1",
        "allowed": "1",
        "recent": "1",
    }
    bad: dict[str, dict[str, str]] = {
        "missing field": {k: v for k, v in fields.items() if k != "key"},
        "not a number": {**fields, "id": "hand-2", "at": "yesterday"},
        "time out of range": {**fields, "id": "hand-3", "at": "1e20"},
        "unknown license": {**fields, "id": "hand-4", "key": "NOPE0-NOPE0-NOPE0-NOPE0-NOPE0"},
    }
    bad_entries = {
        (await resources.redis.xadd(stream, entry)).decode(): why for why, entry in bad.items()
    }
    good_after = [await record(resources, key, "server-b")]

    report = await drain(make_ingest(resources))
    assert report.dead == len(bad)
    assert report.inserted == 2
    assert sorted(await stored_event_ids(resources)) == sorted(good_before + good_after)
    assert await pending_total(resources) == 0
    letters = await resources.pool.fetch("SELECT * FROM dead_letters ORDER BY entry_id")
    assert {row["entry_id"]: row["stream"] for row in letters} == dict.fromkeys(bad_entries, stream)
    for row in letters:
        assert row["error"]
    by_entry = {row["entry_id"]: row for row in letters}
    missing = by_entry[next(e for e, why in bad_entries.items() if why == "missing field")]
    assert "malformed" in missing["error"]
    # Every dead letter keeps its payload, so it can be inspected and replayed by hand.
    unknown = by_entry[next(e for e, why in bad_entries.items() if why == "unknown license")]
    assert '"hand-4"' in unknown["fields"]
    assert "NOPE0" in unknown["fields"]

    # Nothing is redelivered, nothing dead-lettered twice.
    assert (await drain(make_ingest(resources, "other", min_idle_ms=0))).events == []
    assert await resources.pool.fetchval("SELECT count(*) FROM dead_letters") == len(bad)


# --------------------------------------------------------------------------- concurrency


async def test_two_consumers_at_once_store_every_event_exactly_once(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    keys = [await new_license(admin_client, admin_headers, max_servers=3) for _ in range(6)]
    servers = [f"server-{n}" for n in range(4)]
    produced: list[str] = []
    producing = True

    async def produce() -> None:
        nonlocal producing
        for round_ in range(25):
            produced.extend(
                await asyncio.gather(
                    *(record(resources, key, fp) for key in keys for fp in servers)
                )
            )
            if round_ % 5 == 0:
                await asyncio.sleep(0)
        producing = False

    async def consume(name: str) -> IngestReport:
        ingest = make_ingest(resources, name, batch_size=7)
        total = IngestReport()
        while True:
            report = await ingest.run_once()
            total.events += report.events
            total.inserted += report.inserted
            if not report.events and not producing:
                return total
            if not report.events:
                await asyncio.sleep(0.001)

    await make_ingest(resources).ensure_groups()
    _, first, second = await asyncio.gather(produce(), consume("c1"), consume("c2"))
    assert len(produced) == 6 * 4 * 25
    assert len(first.events) > 0
    assert len(second.events) > 0
    # Each entry was delivered to exactly one of them and written exactly once.
    assert len(first.events) + len(second.events) == len(produced)
    assert first.inserted + second.inserted == len(produced)
    stored = await stored_event_ids(resources)
    assert len(stored) == len(set(stored)) == len(produced)
    assert set(stored) == set(produced)
    assert await resources.pool.fetchval("SELECT count(*) FROM installations") == 6 * 4
    assert await pending_total(resources) == 0


async def test_three_consumers_over_a_backlog_do_not_deadlock(resources: Resources) -> None:
    """Batches of different consumers share installation rows: each batch upserts them in key
    order, so two transactions never lock the same rows in opposite orders (which PostgreSQL
    would answer with DeadlockDetectedError). The race is timing-dependent: a pass shows no
    deadlock happened, not that none can."""
    # All in one shard: every batch then holds rows of most of these servers.
    candidates = (f"DEADL-{n:05d}-AAAAA-BBBBB-CCCCC" for n in range(10_000))
    keys = [k for k in candidates if resources.layout.shard_of(k) == 0][:40]
    customer = await resources.pool.fetchval(
        "INSERT INTO customers (name, email) VALUES ('Backlog', 'ops@backlog.test') RETURNING id"
    )
    await resources.pool.execute(
        "INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on)"
        " SELECT k, $2, 'smartermail', 'perpetual', 'enterprise', '2026-01-05'"
        " FROM unnest($1::text[]) AS k",
        keys,
        customer,
    )
    rng = random.Random(5)
    start = datetime.now(UTC).timestamp()
    ids = []
    async with resources.redis.pipeline(transaction=False) as pipe:
        for n in range(12000):
            key = rng.choice(keys)
            fingerprint = f"server-{rng.randrange(4)}"
            ids.append(os.urandom(16).hex())
            pipe.xadd(
                resources.layout.for_license(key, 0).stream,
                {"id": ids[-1], "op": "a", "key": key, "fp": fingerprint, "host": "h",
                 "ver": "16.3.6989", "ip": "192.0.2.1", "at": repr(start + n / 1000),
                 "active": "1", "allowed": "1", "recent": "1"},
            )  # fmt: skip
        await pipe.execute()
    consumers = [make_ingest(resources, f"c{n}", batch_size=400) for n in range(3)]
    await consumers[0].ensure_groups()
    reports = await asyncio.gather(*(drain(consumer) for consumer in consumers))
    assert sum(report.inserted for report in reports) == len(ids)
    assert sorted(await stored_event_ids(resources)) == sorted(ids)
    assert await resources.pool.fetchval("SELECT count(*) FROM installations") == 160
    assert await pending_total(resources) == 0


# --------------------------------------------------------------------------- trimming


async def test_trim_removes_only_acknowledged_entries(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    keys = [await new_license(admin_client, admin_headers) for _ in range(3)]
    ingest = make_ingest(resources)
    acked = [await record(resources, key, "server-a") for key in keys for _ in range(2)]
    assert (await drain(ingest)).inserted == 6
    # Read by a consumer that has not acknowledged them (yet).
    in_flight = [await record(resources, key, "server-a") for key in keys]
    streams = dict.fromkeys(resources.layout.streams(), ">")
    await resources.redis.xreadgroup(GROUP, "slow-consumer", streams)
    # Not delivered to anyone yet.
    waiting = [await record(resources, keys[0], "server-b")]
    assert await stream_length(resources) == 10
    assert await pending_total(resources) == 3

    removed = await ingest.trim()
    assert removed == len(acked)
    left = set(await stream_event_ids(resources))
    assert left == set(in_flight + waiting)
    assert await ingest.trim() == 0

    # Once everything is acknowledged, trimming empties the streams; nothing was lost.
    await drain(make_ingest(resources, "rescuer", min_idle_ms=0))
    assert await ingest.trim() == 4
    assert await stream_length(resources) == 0
    assert set(await stored_event_ids(resources)) == set(acked + in_flight + waiting)


async def test_trim_respects_every_group_on_the_stream(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    key = await new_license(admin_client, admin_headers)
    ids = [await record(resources, key, "server-a") for _ in range(3)]
    stream = resources.layout.for_license(key, 0).stream
    # Another reader of the same stream (say, an audit export) that has read nothing yet.
    await resources.redis.xgroup_create(stream, "audit", id="0")
    ingest = make_ingest(resources)
    assert (await drain(ingest)).inserted == 3
    assert await ingest.trim() == 0
    assert set(await stream_event_ids(resources)) == set(ids)


# --------------------------------------------------------------------------- deactivation


async def test_deactivation_sets_deactivated_at_and_a_later_activation_clears_it(
    resources: Resources, public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    key = await new_license(admin_client, admin_headers, max_servers=2)
    await activate(public_client, key, "server-a")
    await activate(public_client, key, "server-b")
    response = await public_client.post(
        "/v1/deactivations", json={"license_key": key, "fingerprint": "server-a"}
    )
    assert response.status == 200, await response.text()
    ingest = make_ingest(resources)
    assert (await drain(ingest)).inserted == 3

    deactivation = await resources.pool.fetchrow(
        "SELECT * FROM activation_events WHERE kind = 'deactivation'"
    )
    assert deactivation["fingerprint"] == "server-a"
    rows = {
        row["fingerprint"]: row
        for row in await resources.pool.fetch(
            "SELECT * FROM installations WHERE license_key = $1", key
        )
    }
    assert rows["server-a"]["deactivated_at"] == deactivation["occurred_at"]
    assert rows["server-a"]["hostname"] == "server-a.example.com"  # kept from the activation
    assert rows["server-b"]["deactivated_at"] is None

    # The server comes back later: active again, deactivation forgotten.
    later = datetime.now(UTC) + timedelta(seconds=5)
    await record(resources, key, "server-a", at=later)
    assert (await drain(ingest)).inserted == 1
    back = await resources.pool.fetchrow(
        "SELECT * FROM installations WHERE license_key = $1 AND fingerprint = 'server-a'", key
    )
    assert back["deactivated_at"] is None
    assert back["last_seen_at"] == later


async def test_deactivation_in_the_same_batch_as_the_activation(
    resources: Resources, public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    key = await new_license(admin_client, admin_headers)
    start = datetime.now(UTC)
    await record(resources, key, "server-a", at=start)
    await record(resources, key, "server-a", op="d", at=start + timedelta(seconds=1))
    report = await make_ingest(resources).run_once()
    assert report.inserted == 2
    row = await resources.pool.fetchrow(
        "SELECT * FROM installations WHERE license_key = $1 AND fingerprint = 'server-a'", key
    )
    assert row["first_seen_at"] == start
    assert row["last_seen_at"] == start
    assert row["deactivated_at"] == start + timedelta(seconds=1)
    kinds = await resources.pool.fetch(
        "SELECT kind FROM activation_events WHERE license_key = $1 ORDER BY occurred_at", key
    )
    assert [k["kind"] for k in kinds] == ["activation", "deactivation"]


def test_activation_body_helper_is_what_the_tests_send() -> None:
    # Guards the hostname/version assertions above against a change of the shared helper.
    body = activation_body("K", "server-a")
    assert body["hostname"] == "server-a.example.com"
    assert body["version"] == "16.3.6989"


async def test_an_entry_delivered_many_times_is_stored_not_dead_lettered(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """SPEC §9: an outage raises every pending entry's delivery count (each reclaim is one);
    the count alone never makes an entry a dead letter."""
    key = await new_license(admin_client, admin_headers)
    event_id = await record(resources, key, "server-a")
    stream = resources.layout.for_license(key, 0).stream
    ingest = StreamIngest(resources.redis, resources.pool, [stream], "survivor", min_idle_ms=0)
    await ingest.ensure_groups()
    delivered = await resources.redis.xreadgroup(GROUP, "crashed", {stream: ">"}, count=10)
    entry = delivered[0][1][0][0]
    await resources.redis.xclaim(stream, GROUP, "crashed", 0, [entry], retrycount=50)
    report = await ingest.run_once()
    assert (report.dead, report.inserted) == (0, 1)
    assert await stored_event_ids(resources) == [event_id]
    assert await resources.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert (await resources.redis.xpending(stream, GROUP))["pending"] == 0


# --------------------------------------------------------------------------- transient errors

# A trigger raises the SQLSTATE under test on every insert into activation_events while the
# switch is on: PostgreSQL itself answers the batch with that error.
FAILING_SWITCH = """
CREATE TABLE IF NOT EXISTS test_ingest_failure (sqlstate text);
CREATE OR REPLACE FUNCTION test_ingest_fail() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE state text;
BEGIN
    SELECT sqlstate INTO state FROM test_ingest_failure LIMIT 1;
    IF state IS NOT NULL THEN
        RAISE EXCEPTION 'injected failure %', state USING ERRCODE = state;
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS test_ingest_fail ON activation_events;
CREATE TRIGGER test_ingest_fail BEFORE INSERT ON activation_events
    FOR EACH ROW EXECUTE FUNCTION test_ingest_fail();
"""
NO_SWITCH = """
DROP TRIGGER IF EXISTS test_ingest_fail ON activation_events;
DROP FUNCTION IF EXISTS test_ingest_fail();
DROP TABLE IF EXISTS test_ingest_failure;
"""


@pytest.mark.parametrize(
    "sqlstate",
    [
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "08006",  # connection_failure
        "53300",  # too_many_connections
        "57014",  # query_canceled (a statement timeout)
        "57P01",  # admin_shutdown
        "XX000",  # internal_error: not the row's fault either, so never a dead letter
    ],
)
async def test_errors_that_are_not_the_rows_are_retried_never_dead_lettered(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str], sqlstate: str
) -> None:
    """SPEC §9 "never turns valid events into dead letters": the batch fails, nothing is
    acknowledged or dead-lettered, and the same consumer stores everything at once (not after
    the reclaim idle) when PostgreSQL accepts again."""
    key = await new_license(admin_client, admin_headers, max_servers=3)
    ids = [await record(resources, key, f"server-{n}") for n in range(3)]
    await resources.pool.execute(FAILING_SWITCH)
    try:
        await resources.pool.execute("INSERT INTO test_ingest_failure VALUES ($1)", sqlstate)
        ingest = make_ingest(resources, min_idle_ms=3_600_000)
        for attempt in range(7):  # delivered again and again: the count alone never dead-letters
            with pytest.raises(asyncpg.PostgresError) as raised:
                await ingest.run_once()
            assert raised.value.sqlstate == sqlstate, attempt
        assert await pending_total(resources) == 3
        assert await resources.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
        await resources.pool.execute("DELETE FROM test_ingest_failure")
        report = await ingest.run_once()
    finally:
        await resources.pool.execute(NO_SWITCH)
    assert (report.inserted, report.dead) == (3, 0)
    assert sorted(await stored_event_ids(resources)) == sorted(ids)
    assert await pending_total(resources) == 0


def test_outage_errors_are_told_apart_from_row_refusals() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    assert is_transient(asyncpg.exceptions.CannotConnectNowError("starting"))
    assert is_transient(asyncpg.exceptions.DeadlockDetectedError("deadlock"))
    assert not is_transient(asyncpg.exceptions.ForeignKeyViolationError("no license"))
    assert not is_transient(asyncpg.exceptions.InvalidTextRepresentationError("bad"))


async def test_a_row_refused_on_its_own_is_the_only_dead_letter(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """A constraint one row violates: the batch is written row by row, and only that row is
    a dead letter; the rest of its batch is stored."""
    key = await new_license(admin_client, admin_headers, max_servers=3)
    good = [await record(resources, key, f"server-{n}") for n in range(3)]
    await resources.pool.execute(
        "ALTER TABLE activation_events ADD CONSTRAINT test_no_server_1"
        " CHECK (fingerprint <> 'server-1') NOT VALID"
    )
    try:
        report = await make_ingest(resources).run_once()
    finally:
        await resources.pool.execute(
            "ALTER TABLE activation_events DROP CONSTRAINT test_no_server_1"
        )
    assert (report.inserted, report.dead) == (2, 1)
    assert sorted(await stored_event_ids(resources)) == sorted([good[0], good[2]])
    error = await resources.pool.fetchval("SELECT error FROM dead_letters")
    assert "test_no_server_1" in error
    assert await pending_total(resources) == 0


async def test_replay_dead_letters_after_the_fix_is_idempotent(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    """`fraud-worker replay-dead-letters`: the entries refused for a license that did not
    exist yet are stored once it is imported, their rows removed; a second run finds nothing;
    a malformed entry stays."""
    key = await new_license(admin_client, admin_headers)
    stream = resources.layout.for_license(key, 0).stream
    late_key = "LATE0-LATE0-LATE0-LATE0-LATE0"
    fields = {"id": "late-1", "op": "a", "key": late_key, "fp": "server-x", "host": "x",
              "ver": "1.0", "ip": "198.51.100.1", "at": "1767225600.5", "active": "1",
              "allowed": "1", "recent": "1"}  # fmt: skip
    await resources.redis.xadd(stream, fields)
    await resources.redis.xadd(stream, {**fields, "id": "late-2", "fp": "server-y"})
    await resources.redis.xadd(stream, {"id": "broken", "op": "a"})
    assert (await drain(make_ingest(resources))).dead == 3

    await new_license(admin_client, admin_headers, key=late_key)  # the fix: import it
    first = await run_replay(resources, tmp_path)
    second = await run_replay(resources, tmp_path)
    assert "replayed 2 dead letters (2 new events, 0 stored already), 1 still refused" in first
    assert "replayed 0 dead letters (0 new events, 0 stored already), 1 still refused" in second
    assert sorted(await stored_event_ids(resources)) == ["late-1", "late-2"]
    left = await resources.pool.fetch("SELECT fields, error FROM dead_letters")
    assert len(left) == 1
    assert "broken" in left[0]["fields"]
    assert "malformed" in left[0]["error"]
    assert (
        await resources.pool.fetchval(
            "SELECT count(*) FROM installations WHERE license_key = $1", late_key
        )
        == 2
    )


async def run_replay(resources: Resources, workdir: Path) -> str:
    settings = resources.settings
    assert settings.database_url is not None and settings.redis_url is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
    }
    done = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "fraud-worker"), "replay-dead-letters",
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await done.communicate()
    assert done.returncode == 0, output.decode()
    return output.decode()


# --------------------------------------------------------------------------- Redis restarts


async def test_a_vanished_group_is_recreated_reported_and_ingestion_goes_on(
    resources: Resources,
    admin_client: Client,
    admin_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SPEC §9: Redis back without its data (here: the stream deleted, group and all) is
    detected at the next read (NOGROUP), the group created again, the reset counted and logged
    with the last entry ingested and the new stream's first one; the same ingest goes on."""
    key = await new_license(admin_client, admin_headers)
    stream = resources.layout.for_license(key, 0).stream
    ingest = make_ingest(resources)
    await record(resources, key, "server-a")
    assert (await ingest.run_once()).inserted == 1
    last = (await resources.redis.xrange(stream))[-1][0].decode()
    await resources.redis.delete(stream)
    after = await record(resources, key, "server-a")
    first = (await resources.redis.xrange(stream))[0][0].decode()

    with caplog.at_level(logging.ERROR, logger="fraud.ingest"):
        report = await ingest.run_once()
    assert (report.resets, report.inserted) == (1, 1)
    assert after in await stored_event_ids(resources)
    logged = [r.getMessage() for r in caplog.records if "stream_reset" in r.getMessage()]
    assert len(logged) == 1, logged
    assert stream in logged[0] and last in logged[0] and first in logged[0]
    # The streams that did not lose their group are not reported; nothing more to reset.
    assert (await ingest.run_once()).resets == 0
    assert (await ingest.lag()) == (0, 0)
    assert await ingest.trim() >= 0


async def test_idle_consumers_with_nothing_pending_are_forgotten(resources: Resources) -> None:
    stream = resources.layout.streams()[0]
    ingest = StreamIngest(resources.redis, resources.pool, [stream], "current")
    await ingest.ensure_groups()
    held = await resources.redis.xadd(stream, {"id": "x"})
    await resources.redis.xreadgroup(GROUP, "dead-with-pending", {stream: ">"})
    await resources.redis.xadd(stream, {"id": "y"})
    done = await resources.redis.xreadgroup(GROUP, "dead-and-done", {stream: ">"})
    await resources.redis.xack(stream, GROUP, done[0][1][0][0])
    await ingest.forget_idle_consumers(max_idle_ms=0)
    names = {c["name"] for c in await resources.redis.xinfo_consumers(stream, GROUP)}
    assert names == {b"dead-with-pending"}  # its entry still waits to be reclaimed
    assert (await resources.redis.xpending(stream, GROUP))["min"] == held


async def test_a_once_run_trims_the_streams_and_leaves_no_consumer_behind(
    resources: Resources, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """`fraud-worker --once` a day (cron) must not let the streams or the group grow: each
    run trims what it acknowledged and removes its own consumer (it joins under a new name)."""
    keys = [await new_license(admin_client, admin_headers) for _ in range(4)]
    for day in range(3):
        for key in keys:
            await record(resources, key, f"server-{day}")
        worker = Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics(), consumer=f"cron-{day}")
        report = await worker.run_alone()
        assert report.ingested == len(keys), report
        assert await stream_length(resources) == 0, f"day {day}: entries left in the streams"
        consumers = [
            consumer["name"]
            for stream in resources.layout.streams()
            for consumer in await resources.redis.xinfo_consumers(stream, GROUP)
        ]
        assert consumers == [], f"day {day}: consumers left behind: {consumers}"
    assert len(await stored_event_ids(resources)) == 3 * len(keys)


async def test_a_consumer_holding_entries_does_not_leave(resources: Resources) -> None:
    """What a failed pass read stays pending under its consumer, for another to reclaim."""
    stream = resources.layout.streams()[0]
    ingest = StreamIngest(resources.redis, resources.pool, [stream], "holder")
    await ingest.ensure_groups()
    held = await resources.redis.xadd(stream, {"id": "x"})
    await resources.redis.xreadgroup(GROUP, "holder", {stream: ">"})
    assert await ingest.leave() == 0
    names = {c["name"] for c in await resources.redis.xinfo_consumers(stream, GROUP)}
    assert names == {b"holder"}
    assert (await resources.redis.xpending(stream, GROUP))["min"] == held
