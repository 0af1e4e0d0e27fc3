"""An installation's row is rewritten only when something shown changes, so a server phoning
home often does not leave a dead row version per call; its last_seen_at may lag an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from activation.runtime import Resources
from fraud.ingest_sql import UPSERT_INSTALLATIONS
from tests.integration.helpers import create_license

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def phone_home(
    resources: Resources, key: str, at: datetime, version: str = "16.3.6989"
) -> dict[str, Any]:
    """One batch holding one activation, as the ingest writes it; the row after it."""
    stamp = at.timestamp()
    await resources.pool.execute(
        UPSERT_INSTALLATIONS, [key], ["server-a"], ["a.example.com"], ["198.51.100.7"],
        [version], [stamp], [stamp], [None],
    )  # fmt: skip
    row = await resources.pool.fetchrow(
        "SELECT xmin::text AS version_of_row, * FROM installations WHERE license_key = $1", key
    )
    return dict(row)


async def test_a_call_that_changes_nothing_shown_rewrites_nothing(
    resources: Resources, admin_client: TestClient[Any, Any], admin_headers: dict[str, str]
) -> None:
    key = (await create_license(admin_client, admin_headers))["key"]
    first = await phone_home(resources, key, START)
    soon = await phone_home(resources, key, START + timedelta(minutes=50))
    assert soon == first, "a call 50 minutes later with the same details rewrote the row"

    changed = await phone_home(resources, key, START + timedelta(minutes=55), version="16.4.7001")
    assert changed["version_of_row"] != first["version_of_row"]
    assert (changed["version"], changed["last_seen_at"]) == (
        "16.4.7001",
        START + timedelta(minutes=55),
    )
    later = await phone_home(resources, key, START + timedelta(hours=2), version="16.4.7001")
    assert later["last_seen_at"] == START + timedelta(hours=2)
    assert later["first_seen_at"] == START
