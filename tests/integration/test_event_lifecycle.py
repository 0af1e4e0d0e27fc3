"""The activation history's lifecycle: monthly partitions (created ahead, late rows moved into
their month), exactly-once ingestion across them, retention by whole partitions, and the
dashboard's daily roll-up."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from activation.runtime import Resources
from fraud import retention
from fraud.console.dashboard import figures
from fraud.ingest_sql import INSERT_EVENTS


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def insert(resources: Resources, *events: tuple[str, datetime, str]) -> int:
    """(event id, occurred at, kind) rows through the ingest's own statement; rows inserted."""
    n = len(events)
    status = await resources.pool.execute(
        INSERT_EVENTS,
        [event_id for event_id, _, _ in events],
        ["LIFEC-AAAAA-BBBBB-CCCCC-DDDDD"] * n,
        [kind for _, _, kind in events],
        ["server-a"] * n,
        ["a.example.com"] * n,
        ["127.0.0.1"] * n,
        ["16.3.6989"] * n,
        [moment.timestamp() for _, moment, _ in events],
    )
    return int(status.rsplit(" ", 1)[-1])


async def partitions(resources: Resources) -> dict[str, int]:
    """Partition name → its rows."""
    names = [row["relname"] for row in await resources.pool.fetch(retention.PARTITIONS)]
    return {name: await resources.pool.fetchval(f'SELECT count(*) FROM "{name}"') for name in names}


async def per_day(resources: Resources, now: datetime) -> dict[str, int]:
    async with resources.pool.acquire() as conn:
        bars = (await figures(conn, now))["bars"]
    return {str(bar.day): bar.count for bar in bars if bar.count}


async def test_partitions_ahead_and_late_rows_moved_into_their_month(resources: Resources) -> None:
    await resources.pool.execute("TRUNCATE activation_events")
    # A month without a partition yet (the test clock far ahead): the row waits in the default.
    assert await insert(resources, ("e1", at("2031-03-05T10:00:00"), "activation")) == 1
    assert (await partitions(resources))["activation_events_default"] == 1

    report = await retention.run(resources.pool, at("2031-03-05T12:00:00"), resources.settings)
    assert report.created >= 2
    found = await partitions(resources)
    assert found["activation_events_2031_03"] == 1, found
    assert found["activation_events_2031_04"] == 0, found  # the next month, ahead
    assert found["activation_events_default"] == 0, found
    again = await retention.run(resources.pool, at("2031-03-05T12:00:00"), resources.settings)
    assert again.created == 0

    # A redelivered entry (same id, same moment) is still one row, in its partition.
    assert await insert(resources, ("e1", at("2031-03-05T10:00:00"), "activation")) == 0
    assert await resources.pool.fetchval("SELECT count(*) FROM activation_events") == 1


async def test_retention_drops_whole_months_older_than_the_setting(resources: Resources) -> None:
    await resources.pool.execute("TRUNCATE activation_events")
    rows = [
        ("old-1", at("2032-01-10T08:00:00"), "activation"),
        ("old-2", at("2032-01-31T23:59:59"), "activation"),
        ("edge", at("2032-06-02T08:00:00"), "activation"),
        ("new", at("2033-06-20T08:00:00"), "activation"),
    ]
    for event_id, moment, kind in rows:
        await resources.pool.execute("SELECT activation_events_prepare($1)", moment)
        assert await insert(resources, (event_id, moment, kind)) == 1
    now = at("2033-07-01T00:00:00")  # 400 days back: 2032-05-27
    report = await retention.run(resources.pool, now, resources.settings)

    assert "activation_events_2032_01" in report.dropped
    found = await partitions(resources)
    cutoff = now - timedelta(days=400)
    ends = {name: retention.month_end(name) for name in found}
    assert all(end > cutoff for end in ends.values() if end is not None), found
    assert found["activation_events_2032_06"] == 1
    left = await resources.pool.fetch("SELECT event_id FROM activation_events ORDER BY event_id")
    assert [row["event_id"] for row in left] == ["edge", "new"]
    days = await resources.pool.fetch("SELECT DISTINCT day FROM activation_daily ORDER BY day")
    assert [str(row["day"]) for row in days] == ["2032-06-02", "2033-06-20"]

    shorter = dataclasses.replace(resources.settings, activation_events_retention_days=31)
    report = await retention.run(resources.pool, now, shorter)
    assert "activation_events_2032_06" in report.dropped
    assert "activation_events_2033_06" not in report.dropped


async def test_dashboard_counts_activations_per_day_from_the_roll_up(resources: Resources) -> None:
    await resources.pool.execute("TRUNCATE activation_events")
    now = at("2034-02-10T12:00:00")
    await retention.run(resources.pool, now, resources.settings)
    day = now - timedelta(days=1)
    batch = [(f"d{n}", day + timedelta(minutes=n), "activation") for n in range(5)]
    assert await insert(resources, *batch, ("gone", day, "deactivation")) == 6
    assert await insert(resources, *batch[:3], ("t1", now, "activation")) == 1  # 3 redelivered
    assert await per_day(resources, now) == {"2034-02-09": 5, "2034-02-10": 1}
    await resources.pool.execute("TRUNCATE activation_events")
    assert await per_day(resources, now) == {}
