"""Which failures are an outage (503 with Retry-After) and which a bug (500): SPEC §5, a
dependency outage gets 503 and nothing a client sends gets a 5xx of its own making."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import make_mocked_request
from redis import exceptions as redis_errors

from activation.store.redis_store import StoreUnavailable
from activation.web.problems import RETRY_AFTER_SECONDS, problem_answer, retry_after


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StoreUnavailable("redis gone"), 503),
        (redis_errors.ConnectionError("refused"), 503),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), 503),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), 503),
        # PostgreSQL restarting under a request in flight (SQLSTATE 57P01), or overloaded:
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), 503),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), 503),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), 503),
        # Out of resources (class 53), or refusing writes (a standby, read-only by default):
        (asyncpg.exceptions.DiskFullError("could not extend file"), 503),
        (asyncpg.exceptions.OutOfMemoryError("out of memory"), 503),
        (asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"), 503),
        (ConnectionRefusedError(), 503),
        (asyncpg.exceptions.UniqueViolationError("duplicate"), 500),  # a bug: map it to 409 first
        (KeyError("x"), 500),
    ],
)
def test_outages_are_503_and_bugs_500(error: Exception, status: int) -> None:
    response = problem_answer(make_mocked_request("GET", "/admin/v1/audit"), error)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert ("Retry-After" in response.headers) is (status == 503)


def test_retry_after_of_a_503_is_jittered_within_its_bounds() -> None:
    """SPEC §5: a 503's Retry-After is jittered, so a fleet does not come back in step."""
    low, high = RETRY_AFTER_SECONDS
    drawn = [int(retry_after()) for _ in range(500)]
    assert all(low <= value <= high for value in drawn), sorted(set(drawn))
    assert len(set(drawn)) == high - low + 1, f"values drawn: {sorted(set(drawn))}"
