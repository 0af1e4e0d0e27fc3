"""Fixtures of the fault tests: servers the test owns (tests/faults/owned.py) and the scale of
the run (FAULT_SCALE, default 1, multiplies sizes and durations for longer runs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _drop_prefix
from tests.faults.owned import OwnedPostgres, OwnedRedis
from tests.faults.system import scale


@pytest.fixture
def fault_scale() -> float:
    return scale()


@pytest.fixture
def owned_postgres() -> Iterator[OwnedPostgres]:
    """A PostgreSQL of this test alone (initdb'd, started; stopped and removed after)."""
    with OwnedPostgres.running() as server:
        yield server


@pytest.fixture
def owned_redis() -> Iterator[OwnedRedis]:
    """A redis-server of this test alone, AOF `everysec` (stopped and removed after)."""
    with OwnedRedis.running() as server:
        yield server


@pytest.fixture
def shared_redis(server_urls: tuple[str, str], redis_prefix: str) -> Iterator[tuple[str, str]]:
    """The suite's Redis and this test's key prefix, dropped after."""
    yield server_urls[1], redis_prefix
    _drop_prefix(server_urls[1], redis_prefix)
